"""Someone who can write the database and the artifact root, but holds no signing key.

Both paths of issue 22: a row whose card names a feature function runs it in a retrain, and
`pgmlops artifacts sign` signs a planted pickle. Neither may run anything.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pgmlops.domain.registry.records import PRODUCTION
from pgmlops.errors import ArtifactError
from pgmlops.services.commands import promote_command, train_command
from pgmlops.services.retraining.runs import enqueue_retrain
from tests.tamper import rewrite_row, set_file, strip_signatures

pytestmark = pytest.mark.e2e


class Cli:
    """`pgmlops` in a subprocess against the test's database and artifact root."""

    def __init__(self, settings, cwd: Path) -> None:
        self.cwd = cwd
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PGMLOPS_")}
        self.env.update(
            PGMLOPS_DATABASE_URL=settings.database_url,
            PGMLOPS_ARTIFACT_ROOT=settings.artifact_root,
            PGMLOPS_MODEL_NAME="churn",
        )

    def __call__(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pgmlops.cli", *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )


def _error_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def _shell_named_columns(folder: Path, marker: Path) -> Path:
    """A data set whose three feature columns are named `sh`, `-c` and a shell command."""
    rng = np.random.default_rng(5)
    n = 600
    frame = pd.DataFrame(
        {
            "sh": rng.normal(size=n),
            "-c": rng.normal(size=n),
            f"touch {marker}": rng.normal(size=n),
        }
    )
    frame["Exited"] = (frame["sh"] + rng.normal(scale=0.5, size=n) > 0).astype(int)
    path = folder / "innocent.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def shell_row(ctx, tmp_path: Path) -> Path:
    """A production version whose row now says training.features = subprocess:call."""
    marker = tmp_path / "pwned"
    data = _shell_named_columns(tmp_path, marker)
    v = train_command(
        ctx, data=str(data), target="Exited", model_name="churn", actor="t", onnx=False
    )["version"]
    promote_command(ctx, model_name="churn", version=v, force=True, reason="t", actor="t")

    def features(card: dict) -> dict:
        card["training"]["features"] = "subprocess:call"
        return card

    rewrite_row(ctx, "churn", v, card=features)
    assert not marker.exists()
    return marker


def test_a_feature_function_written_into_a_row_never_runs_in_a_forced_retrain(
    ctx, shell_row: Path, tmp_path: Path
) -> None:
    result = Cli(ctx.settings, tmp_path)("retrain", "--force")
    assert not shell_row.exists(), "the command in the row ran"
    assert result.returncode != 0
    (line,) = _error_lines(result)
    assert "differs from its signed card at card.training.features" in line
    assert ctx.registry.alias_version("churn", PRODUCTION) == 1


def test_a_feature_function_written_into_a_row_never_runs_in_the_worker(
    ctx, shell_row: Path, tmp_path: Path
) -> None:
    enqueue_retrain(ctx, "churn", force=True, actor="t")
    Cli(ctx.settings, tmp_path)("worker", "--once")
    assert not shell_row.exists(), "the command in the row ran"
    assert [v.version for v in ctx.registry.list_models("churn")[0].versions] == [1]


def test_a_source_written_into_a_row_is_never_read(ctx, churn_csv: Path, tmp_path: Path) -> None:
    v = train_command(
        ctx, data=str(churn_csv), target="Exited", model_name="churn", actor="t", onnx=False
    )["version"]
    elsewhere = tmp_path / "elsewhere.csv"
    pd.read_csv(churn_csv).to_csv(elsewhere, index=False)
    rewrite_row(ctx, "churn", v, source=lambda s: {**s, "path": str(elsewhere)})
    result = Cli(ctx.settings, tmp_path)("retrain", "--force")
    assert result.returncode != 0
    (line,) = _error_lines(result)
    assert "at source.path" in line


class Boom:
    """A pickle that creates a marker file the moment it is unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_artifacts_sign_never_signs_a_planted_pickle_and_nothing_loads_it(
    ctx, churn_csv: Path, tmp_path: Path
) -> None:
    v = train_command(
        ctx, data=str(churn_csv), target="Exited", model_name="churn", actor="t", onnx=False
    )["version"]
    promote_command(ctx, model_name="churn", version=v, force=True, reason="t", actor="t")
    marker = tmp_path / "pwned"
    planted = ctx.artifacts.put(pickle.dumps(Boom(marker)))
    # The attacker's row: the pickle's own address, sha256 and size, no signature; the other
    # files of the version keep their good signatures.
    set_file(ctx, "churn", v, "model", uri=planted.uri, sha256=planted.sha256, size=planted.size)
    set_file(ctx, "churn", v, "model", signature=None)
    cli = Cli(ctx.settings, tmp_path)
    for args in (
        ("artifacts", "sign"),
        ("artifacts", "sign", "--model-name", "churn"),
        ("artifacts", "sign", "--model-name", "churn", "--version", str(v), "--digest", "0" * 64),
    ):
        result = cli(*args)
        assert result.returncode != 0, (args, result.stdout, result.stderr)
        (line,) = _error_lines(result)
        assert "model" in line and "already signed" in line
    # Even an operator who names the version and its digest cannot sign that file.
    listing = json.loads(cli("artifacts", "sign", "--json").stdout)
    assert listing["to_confirm"] == []
    assert ctx.registry.recorded_version("churn", v).files["model"].signature is None

    prediction = tmp_path / "in.csv"
    pd.read_csv(churn_csv).drop(columns=["Exited"]).head(20).to_csv(prediction, index=False)
    scored = cli("predict", "--model-name", "churn", "--data", str(prediction), "--out", "o.csv")
    assert scored.returncode != 0 and "unsigned" in _error_lines(scored)[0]
    from pgmlops.services.serving.load import load_version

    with pytest.raises(ArtifactError, match="unsigned"):
        load_version(ctx, ctx.registry.get_version("churn", v))
    import pgmlops

    with pytest.raises(ArtifactError, match="unsigned"):
        pgmlops.Client(settings=ctx.settings).load("churn@production")
    served = _serve_briefly(ctx, tmp_path)
    assert "unsigned" in served
    assert not marker.exists(), "the planted pickle was unpickled"


def test_a_fully_unsigned_version_is_listed_and_signed_only_with_its_digest(
    ctx, churn_csv: Path, tmp_path: Path
) -> None:
    v = train_command(
        ctx, data=str(churn_csv), target="Exited", model_name="churn", actor="t", onnx=False
    )["version"]
    strip_signatures(ctx, "churn", v)  # as a version registered before signing existed
    cli = Cli(ctx.settings, tmp_path)
    listed = cli("artifacts", "sign")
    assert listed.returncode != 0
    assert f"churn v{v}" in listed.stdout and "--digest" in listed.stdout
    (entry,) = json.loads(cli("artifacts", "sign", "--json").stdout)["to_confirm"]
    wrong = cli(
        "artifacts", "sign", "--model-name", "churn", "--version", str(v), "--digest", "0" * 64
    )
    assert wrong.returncode != 0 and "digest" in _error_lines(wrong)[0]
    assert ctx.registry.recorded_version("churn", v).files["model"].signature is None
    done = cli(
        "artifacts",
        "sign",
        "--model-name",
        "churn",
        "--version",
        str(v),
        "--digest",
        entry["digest"],
    )
    assert done.returncode == 0, done.stderr
    from pgmlops.services.serving.load import load_version

    assert load_version(ctx, ctx.registry.get_version("churn", v)).version == v


def _serve_briefly(ctx, tmp_path: Path) -> str:
    """What `pgmlops serve` says when production cannot be loaded (it must not serve it)."""
    from tests.e2e.serverproc import free_port, server_env

    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pgmlops.cli", "serve", "--port", str(port)],
            env=server_env(ctx.settings),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        import time

        import httpx

        deadline = time.monotonic() + 60
        text = ""
        try:
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1)
                    text = ready.text
                    if ready.status_code != 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.3)
        finally:
            process.terminate()
            process.wait(timeout=30)
    return text + log.read_text()
