"""Nothing a database row can swap is ever executed: signed artifacts inside the root only."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import pickle
import stat
import threading
from pathlib import Path

import pytest
from pydantic import SecretStr

from pgmlops.config import Settings, load_settings
from pgmlops.domain.registry.records import PRODUCTION, StoredFile
from pgmlops.errors import ArtifactError, ConfigError
from pgmlops.services.artifact_signing import sign_artifacts_command
from pgmlops.services.commands import promote_command, train_command
from pgmlops.services.context import Context
from pgmlops.services.promotion import version_engine
from pgmlops.services.serving.load import load_version
from pgmlops.store.keys import SigningKey
from tests.tamper import set_file, strip_signatures

OTHER_KEY = "another-teams-key-" + "0" * 32


def _train(ctx, data: Path, **overrides) -> int:
    result = train_command(
        ctx,
        data=str(data),
        target="Exited",
        model_name="churn",
        actor="t",
        overrides={"params": {"max_iter": 40}, **overrides},
    )
    return result["version"]


def _promote(ctx, version: int, force: bool = True) -> None:
    promote_command(
        ctx,
        model_name="churn",
        version=version,
        force=force,
        reason="test" if force else None,
        actor="t",
    )


def _context(settings, **changes) -> Context:
    return Context(settings.model_copy(update=changes))


class Boom:
    """A pickle that creates a marker file the moment it is unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_data_uri_or_outside_pickle_with_a_correct_sha256_is_never_unpickled(
    ctx, churn_csv: Path, tmp_path: Path
) -> None:
    v = _train(ctx, churn_csv, onnx=False)  # the pipeline is what serving would unpickle
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Boom(marker))
    pickle.loads(payload)  # the payload works: unpickling it does create the marker
    assert marker.exists()
    marker.unlink()
    digest = hashlib.sha256(payload).hexdigest()
    outside = tmp_path / "elsewhere.pkl"
    outside.write_bytes(payload)
    inside = ctx.artifacts.put(payload)  # as if someone could drop a blob into the store
    original = ctx.registry.get_version("churn", v).artifact
    root = Path(ctx.settings.artifact_root)
    uris = {
        "data": "data:application/octet-stream;base64," + base64.b64encode(payload).decode(),
        "outside": str(outside),
        "traversal": str(root / "objects" / ".." / ".." / "elsewhere.pkl"),
        "file-scheme": f"file://{outside}",
    }
    trusting = _context(ctx.settings, trust_unsigned=True)
    for kind, uri in uris.items():
        set_file(ctx, "churn", v, "model", uri=uri, sha256=digest, size=len(payload))
        version = ctx.registry.get_version("churn", v)
        for load in (load_version, version_engine):
            for context in (ctx, trusting):
                with pytest.raises(ArtifactError, match="outside the artifact root"):
                    load(context, version)
        with pytest.raises(ArtifactError, match="outside the artifact root"):
            _promote(ctx, v)
        assert not marker.exists(), kind
    # Inside the root but not what was signed: unsigned, or carrying the real model's signature.
    for signature, words in ((None, "unsigned"), (original.signature, "signature check")):
        set_file(ctx, "churn", v, "model", uri=inside.uri, sha256=digest, size=len(payload))
        set_file(ctx, "churn", v, "model", signature=signature)
        with pytest.raises(ArtifactError, match=words):
            load_version(ctx, ctx.registry.get_version("churn", v))
    assert not marker.exists()
    assert ctx.registry.alias_version("churn", PRODUCTION) is None
    # Retention never deletes what the store did not write.
    with pytest.raises(ArtifactError, match="outside the artifact root"):
        ctx.artifacts.delete(StoredFile(str(outside), digest, len(payload)))
    assert outside.exists()


def test_a_damaged_onnx_copy_is_refused_by_forced_promotion(ctx, churn_csv: Path) -> None:
    import onnx

    v = _train(ctx, churn_csv)
    onnx_file = ctx.registry.get_version("churn", v).files["onnx"]
    assert ctx.registry.get_version("churn", v).card.onnx.present
    path = Path(onnx_file.uri)
    good = path.read_bytes()
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0xFF
    path.write_bytes(bytes(flipped))
    with pytest.raises(ArtifactError, match="integrity"):
        _promote(ctx, v)
    path.write_bytes(good)
    # A graph that still loads but predicts differently, registered with its own sha256:
    # the signature refuses it; trusted as unsigned, the check predictions still refuse it.
    model = onnx.load_from_string(good)
    weights = next(
        a
        for n in model.graph.node
        for a in n.attribute
        if a.name in ("class_weights", "coefficients")
    )  # leaf values of the trees (or a linear model's weights)
    weights.floats[:] = [w * 3.0 + 0.5 for w in weights.floats]
    altered = ctx.artifacts.put(model.SerializeToString())
    assert altered.sha256 != onnx_file.sha256
    set_file(ctx, "churn", v, "onnx", uri=altered.uri, sha256=altered.sha256, size=altered.size)
    with pytest.raises(ArtifactError, match="signature check"):
        _promote(ctx, v)
    set_file(ctx, "churn", v, "onnx", signature=None)
    with pytest.raises(ArtifactError, match="does not reproduce"):
        _promote(_context(ctx.settings, trust_unsigned=True), v)
    assert ctx.registry.alias_version("churn", PRODUCTION) is None


def test_another_key_is_refused_and_unsigned_versions_load_only_when_trusted(
    settings, churn_csv: Path, caplog: pytest.LogCaptureFixture
) -> None:
    theirs = _context(settings, signing_key=SecretStr(OTHER_KEY))
    ours = _context(settings)
    trusting = _context(settings, trust_unsigned=True)
    try:
        v = _train(theirs, churn_csv)
        # A read never creates a key: without one, the error names the key id to restore.
        with pytest.raises(ArtifactError, match=r"signing.key is missing.*key id .*restore"):
            load_version(ours, ours.registry.get_version("churn", v))
        ours.artifacts.key.create()  # as `pgmlops artifacts new-key` does
        assert load_version(theirs, theirs.registry.get_version("churn", v)).version == v
        for context in (ours, trusting):
            with pytest.raises(ArtifactError, match="signed with another key"):
                load_version(context, context.registry.get_version("churn", v))
        strip_signatures(ours, "churn", v)
        with pytest.raises(ArtifactError, match=r"unsigned.*pgmlops artifacts sign"):
            load_version(ours, ours.registry.get_version("churn", v))
        with caplog.at_level(logging.WARNING):
            assert load_version(trusting, trusting.registry.get_version("churn", v)).version == v
        assert "unsigned because trust_unsigned is set" in caplog.text
        (plan,) = sign_artifacts_command(ours, model_name="churn")["to_confirm"]
        result = sign_artifacts_command(ours, model_name="churn", version=v, digest=plan["digest"])
        n_files = len(ours.registry.get_version("churn", v).files)
        assert result["files_signed"] == n_files and result["refused"] == []
        assert load_version(ours, ours.registry.get_version("churn", v)).version == v
        _promote(ours, v, force=False)
    finally:
        for context in (theirs, ours, trusting):
            context.close()


def test_the_default_key_is_one_0600_file_beside_the_artifact_root(tmp_path: Path) -> None:
    path = tmp_path / "signing.key"
    keys = [SigningKey(None, path) for _ in range(8)]
    got: list[bytes] = []
    threads = [threading.Thread(target=lambda k=k: got.append(k.create())) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 1 and len(got[0]) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["signing.key"]


def test_a_remote_artifact_root_needs_a_configured_key(tmp_path: Path, churn_csv: Path) -> None:
    ctx = Context(
        Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", artifact_root="memory://a")
    )
    try:
        with pytest.raises(ConfigError, match="PGMLOPS_SIGNING_KEY"):
            _train(ctx, churn_csv)
        assert ctx.registry.model_names() == []
    finally:
        ctx.close()


def test_a_short_signing_key_is_refused_without_echoing_it(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PGMLOPS_SIGNING_KEY", "hunter2")
    with pytest.raises(ConfigError, match=r"signing_key: .*at least 32") as info:
        load_settings()
    assert "hunter2" not in str(info.value)


def test_rotate_key_resigns_only_what_the_old_key_signed(ctx, churn_csv: Path) -> None:
    from pgmlops.services.artifact_signing import new_key_command, rotate_key_command

    v = _train(ctx, churn_csv, onnx=False)
    key_file = ctx.artifacts.key.key_file
    with pytest.raises(ConfigError, match=r"already exists .* never overwritten"):
        new_key_command(ctx)
    old = key_file.with_name("old.key")
    key_file.rename(old)
    fresh = _context(ctx.settings)
    try:
        with pytest.raises(ArtifactError, match=r"is missing.*key id .*restore"):
            fresh.registry.get_version("churn", v)
        made = new_key_command(fresh)
        assert sum(made["files_signed_by_other_keys"].values()) > 0
        with pytest.raises(ArtifactError, match=r"signed with another key.*rotate-key"):
            fresh.registry.get_version("churn", v)
        result = rotate_key_command(fresh, old)
        n_files = len(fresh.registry.recorded_version("churn", v).files)
        assert (result["files_resigned"], result["left"]) == (n_files, [])
        assert load_version(fresh, fresh.registry.get_version("churn", v)).version == v
        again = rotate_key_command(fresh, old)
        assert (again["files_resigned"], again["already_signed"]) == (0, n_files)
    finally:
        fresh.close()
