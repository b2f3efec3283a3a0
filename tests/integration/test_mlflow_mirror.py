"""The MLflow mirror against a real `mlflow server` (SQLite backend, local artifact folder).

Every alias move pgmlops makes (promote, rollback, deploy, stop) shows up as an MLflow
registered-model alias on the MLflow version tagged with the same pgmlops version; a tracking
server that is down never fails or undoes a move, and `sync` catches MLflow up afterwards.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from typer.testing import CliRunner

from pgmlops import Client
from pgmlops.cli import app as cli_app
from pgmlops.config import Settings
from pgmlops.domain.registry.records import PRODUCTION
from pgmlops.services.mlflow_sync import VERSION_TAG, sync_command
from tests.integration.test_python_api import churn_version, register  # noqa: F401

mlflow = pytest.importorskip("mlflow", reason="the mirror needs pip install 'pgmlops[dev]'")
pytest.importorskip("mlflow.server", reason="the full mlflow package runs the tracking server")

ACTOR = "test"
# Starting the tracking server and logging each version's model take minutes on a busy
# two-core machine; the default 300 s covers neither.
pytestmark = pytest.mark.timeout(900)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real tracking server for this module; stopped at the end."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    exe = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            exe,
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--default-artifact-root",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited: {(root / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("mlflow server did not answer /health within 180 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _client(settings: Settings, tracking_uri: str) -> Client:
    return Client(settings=settings.model_copy(update={"mlflow_tracking_uri": tracking_uri}))


def _second_version(client: Client, trained, name: str) -> int:
    card, blobs = trained
    ctx = client.context
    files = {key: ctx.artifacts.put(data) for key, data in blobs.items()}
    card = card.model_copy(update={"model_name": name})
    sign = lambda number, fs: ctx.artifacts.sign_files(name, number, fs)  # noqa: E731
    return ctx.registry.create_version(name, files, card, ACTOR, sign=sign).version


def _aliases(tracking_uri: str, name: str) -> dict[str, int]:
    """MLflow's aliases of `name`, each as the pgmlops version its MLflow version is tagged with."""
    m = mlflow.MlflowClient(tracking_uri)
    out = {}
    for alias, number in m.get_registered_model(name).aliases.items():
        out[alias] = int(m.get_model_version(name, number).tags[VERSION_TAG])
    return out


def test_every_alias_move_is_mirrored_as_an_mlflow_alias(
    settings: Settings,
    tracking_server: str,
    churn_version,  # noqa: F811
) -> None:
    # One MLflow server serves both databases' runs: a name of its own per test.
    name = f"churn-{uuid.uuid4().hex[:8]}"
    with _client(settings, tracking_server) as client:
        mirror = client.context.mlflow_mirror
        assert mirror is not None
        # v1 was registered without MLflow logging: the first move registers it there.
        register(client, churn_version, name)
        assert _aliases(tracking_server, name) == {"production": 1}
        v2 = _second_version(client, churn_version, name)
        client.promote(name, v2, force=True, reason="same model, mirrored")
        assert _aliases(tracking_server, name) == {"production": v2}
        client.rollback(name, reason="back")
        assert _aliases(tracking_server, name) == {"production": 1}
        client.deploy(name, v2, shadow=True)
        assert _aliases(tracking_server, name) == {"production": 1, "challenger": v2}
        client.deploy(name, canary="20%")  # a new share on the same version: still v2
        client.deploy(name, v2, alias="staging")
        assert _aliases(tracking_server, name) == {
            "production": 1,
            "challenger": v2,
            "staging": v2,
        }
        client.deploy(name, stop=True)
        assert _aliases(tracking_server, name) == {"production": 1, "staging": v2}
        assert mirror.failures == 0
        m = mlflow.MlflowClient(tracking_server)
        versions = m.search_model_versions(f"name = '{name}'")
        # Each pgmlops version registered once, with its run's model as the source.
        assert sorted(int(v.tags[VERSION_TAG]) for v in versions) == [1, v2]
        assert all(v.run_id for v in versions)


def test_a_tracking_server_that_is_down_never_fails_a_move(
    settings: Settings,
    tracking_server: str,
    churn_version,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pgmlops.api.app import create_app

    name = f"churn-{uuid.uuid4().hex[:8]}"
    down = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    caplog.set_level(logging.WARNING, logger="pgmlops.services.mlflow_sync")
    with _client(settings, down) as client:
        mirror = client.context.mlflow_mirror
        started = time.monotonic()
        register(client, churn_version, name)
        v2 = _second_version(client, churn_version, name)
        client.promote(name, v2, force=True, reason="mirror down")
        client.deploy(name, 1, alias="staging")
        assert time.monotonic() - started < 60  # MLflow's own retries would take minutes
        assert client.context.registry.alias_version(name, PRODUCTION) == v2
        assert mirror.failures == 3
        assert "does not answer" in (mirror.last_error or "")
        warned = [r.getMessage() for r in caplog.records if "MLflow mirror" in r.getMessage()]
        assert len(warned) == 3
        assert f"pgmlops mlflow sync --model-name {name}" in warned[-1]
    # The admin route answers 200 and /metrics counts the failure.
    key = "k" * 32
    api = settings.model_copy(
        update={"mlflow_tracking_uri": down, "api_key": SecretStr(key), "model_name": name}
    )
    with TestClient(create_app(api)) as http:
        moved = http.post("/rollback", json={"model_name": name}, headers={"x-api-key": key})
        assert moved.status_code == 200, moved.text
        assert moved.json()["new_version"] == 1
        metrics = http.get("/metrics").text
        assert f'pgmlops_mlflow_mirror_failures_total{{model="{name}"}} 1.0' in metrics
    # Once MLflow is back, one sync makes it say what pgmlops says, registering the version
    # the aliases point at (v1; v2 holds no alias any more).
    env = {
        "PGMLOPS_DATABASE_URL": settings.database_url,
        "PGMLOPS_ARTIFACT_ROOT": settings.artifact_root,
        "PGMLOPS_MLFLOW_TRACKING_URI": tracking_server,
    }
    done = CliRunner().invoke(cli_app, ["mlflow", "sync", "--model-name", name, "--json"], env=env)
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert result["registered"] == [1]
    assert result["aliases"]["production"]["version"] == 1
    assert _aliases(tracking_server, name) == {"production": 1, "staging": 1}
    # Nothing left to do: the second sync registers nothing and says where each alias is.
    again = CliRunner().invoke(cli_app, ["mlflow", "sync", "--model-name", name], env=env)
    assert again.exit_code == 0, again.output
    assert "production -> v1" in again.stdout and "registered" not in again.stdout
    # `pgmlops models` says where the aliases are mirrored and how to re-sync.
    listed = CliRunner().invoke(cli_app, ["models", "--model-name", name], env=env)
    assert listed.exit_code == 0, listed.output
    assert f"pgmlops mlflow sync --model-name {name}" in listed.stdout


def test_sync_without_a_tracking_uri_is_a_one_line_error(settings: Settings) -> None:
    from pgmlops.errors import ConfigError

    with Client(settings=settings) as client:
        assert client.context.mlflow_mirror is None
        with pytest.raises(ConfigError, match="mlflow_tracking_uri is not set"):
            sync_command(client.context.mlflow_mirror, "churn")
