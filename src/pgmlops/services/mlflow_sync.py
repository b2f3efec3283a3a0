"""Optional MLflow interop: each version as an MLflow run and registered model version.

With `mlflow_tracking_uri` set, every version trained is logged as a run and registered as a
version of the MLflow registered model of the same name (tagged `pgmlops.version`), and every
alias move (promote, rollback, deploy, stop: whatever goes through the registry store) is
mirrored as an MLflow registered-model alias. pgmlops stays the source of truth: a mirror that
fails is logged and counted, never fails or undoes the move, and the next move (or
`pgmlops mlflow sync`) brings MLflow back in line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pgmlops.domain.redact import redact_secrets
from pgmlops.domain.registry.records import AliasEvent, ModelVersion
from pgmlops.domain.training.pipeline import serving_pipeline
from pgmlops.errors import ConfigError, StoreError
from pgmlops.store.artifacts import ArtifactStore
from pgmlops.store.registry.versions import RegistryStore

log = logging.getLogger(__name__)

VERSION_TAG = "pgmlops.version"
# MLflow's own defaults retry for minutes against a tracking server that is down; an alias
# move (a CLI command, an admin request, the worker's rollback) waits for the mirror, so it
# gives up quickly instead. A user's own MLFLOW_HTTP_REQUEST_* settings are kept.
_QUICK_CLIENT = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
_PROBE_SECONDS = 3.0

# We built and fitted this pipeline ourselves, so the types of these libraries in it are ours
# to vouch for; MLflow's skops format otherwise refuses to save them.
_TRUSTED_PREFIXES = ("numpy.", "sklearn.", "imblearn.", "builtins.")


def require_mlflow() -> None:
    """Fail before training, not after it, when MLflow is configured but missing."""
    try:
        import mlflow  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            "mlflow_tracking_uri is set but MLflow is not installed: pip install 'pgmlops[mlflow]'"
        ) from exc


def _requirements(libraries: dict[str, str]) -> list[str]:
    return [
        f"{name}=={libraries[name]}"
        for name in ("scikit-learn", "numpy", "pandas")
        if name in libraries
    ]


def _trusted_types(pipeline: Any) -> list[str]:
    import skops.io

    found = skops.io.get_untrusted_types(data=skops.io.dumps(pipeline))
    return [t for t in found if t.startswith(_TRUSTED_PREFIXES)]


@dataclass(frozen=True)
class MlflowRecord:
    """Where a version went in MLflow: its run and its registered model version."""

    run_id: str
    model_version: str


def log_version(tracking_uri: str, version: ModelVersion, pipeline: Any) -> MlflowRecord:
    """Log params, metrics and the pipeline as a run; register it as an MLflow model version."""
    require_mlflow()
    # MLflow prints "View run ... at: URL" on stdout, where `--json` output goes.
    with contextlib.redirect_stdout(sys.stderr):
        return _log_version(tracking_uri, version, pipeline)


def _log_version(tracking_uri: str, version: ModelVersion, pipeline: Any) -> MlflowRecord:
    import mlflow

    card = version.card
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(f"pgmlops/{version.model_name}")
    params = {"estimator": card.estimator, **{k: str(v)[:500] for k, v in card.params.items()}}
    metrics = {k: v for k, v in card.metrics.items() if v is not None}
    with mlflow.start_run(run_name=f"{version.model_name} v{version.version}") as run:
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        mlflow.set_tags(
            {
                "pgmlops.model_name": version.model_name,
                "pgmlops.version": str(version.version),
                "pgmlops.artifact_sha256": version.artifact.sha256,
                "pgmlops.data_sha256": card.data.sha256,
            }
        )
        model = serving_pipeline(pipeline)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            skops_trusted_types=_trusted_types(model),
            # Stated outright: MLflow would otherwise import the model in a subprocess to guess.
            pip_requirements=_requirements(card.libraries),
        )
    client = mlflow.MlflowClient(tracking_uri)
    _ensure_registered_model(client, version.model_name)
    registered = client.create_model_version(
        version.model_name,
        source=info.model_uri,
        run_id=run.info.run_id,
        tags={
            VERSION_TAG: str(version.version),
            "pgmlops.artifact_sha256": version.artifact.sha256,
        },
        model_id=info.model_id,
    )
    return MlflowRecord(run.info.run_id, str(registered.version))


def _ensure_registered_model(client: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(
            name, tags={"pgmlops.model_name": name}, description="Mirrored from pgmlops"
        )


def mlflow_versions(client: Any, name: str) -> dict[int, str]:
    """pgmlops version -> MLflow model version, from the `pgmlops.version` tags.

    A version registered twice (a re-sync after a half-finished one) maps to the newest.
    """
    found: dict[int, str] = {}
    token = None
    while True:
        # Model names (config.MODEL_NAME_PATTERN) hold no quote to escape.
        page = client.search_model_versions(f"name = '{name}'", page_token=token)
        for mv in page:
            tag = (mv.tags or {}).get(VERSION_TAG)
            if tag and tag.isdigit():
                number = int(tag)
                if number not in found or int(mv.version) > int(found[number]):
                    found[number] = str(mv.version)
        token = page.token
        if not token:
            return found


@contextlib.contextmanager
def _quick_client() -> Iterator[None]:
    """MLflow's HTTP retries and timeout cut short for the duration of one mirror."""
    added = [k for k in _QUICK_CLIENT if k not in os.environ]
    for k in added:
        os.environ[k] = _QUICK_CLIENT[k]
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def _probe(tracking_uri: str) -> None:
    """An HTTP tracking server that does not answer /health fails the mirror in seconds."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import httpx

    try:
        httpx.get(tracking_uri.rstrip("/") + "/health", timeout=_PROBE_SECONDS).raise_for_status()
    except httpx.HTTPError as exc:
        raise StoreError(
            f"MLflow tracking server {redact_secrets(tracking_uri)} does not answer: {exc}"
        ) from None


@dataclass
class MlflowMirror:
    """Keeps MLflow's registered-model aliases equal to pgmlops's, one model at a time.

    Registered as an alias listener of the registry store, so every move made in this
    process (CLI, API, worker, Python API) is mirrored once its transaction has committed.
    """

    tracking_uri: str
    registry: RegistryStore
    artifacts: ArtifactStore
    failures: int = 0
    last_error: str | None = None
    # Called with the model name after each failed mirror (the API counts it in /metrics).
    on_failure: list[Callable[[str], None]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __call__(self, event: AliasEvent) -> None:
        """Mirror a committed move; a failure is logged and counted, never raised."""
        try:
            self.sync(event.model_name)
        except Exception as exc:  # MLflow's own errors, the network's, a bad artifact
            self.failures += 1
            reason = redact_secrets(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
            self.last_error = f"{type(exc).__name__}: {reason}"
            log.warning(
                "MLflow mirror of %s alias %r (v%s) failed; pgmlops moved it anyway. The next "
                "move re-syncs, or run `pgmlops mlflow sync --model-name %s`: %s",
                event.model_name,
                event.alias,
                event.new_version if event.new_version is not None else "removed",
                event.model_name,
                self.last_error,
            )
            for hook in self.on_failure:
                with contextlib.suppress(Exception):
                    hook(event.model_name)

    def sync(self, name: str) -> dict[str, Any]:
        """Make MLflow's aliases of `name` what pgmlops says now; raises on any failure.

        Every alias pgmlops holds is set (its version registered in MLflow first if it was
        not); every alias pgmlops once held and no longer does is deleted. Aliases that only
        MLflow ever had are left alone.
        """
        require_mlflow()
        with self._lock, _quick_client():
            _probe(self.tracking_uri)
            return self._sync(name)

    def _sync(self, name: str) -> dict[str, Any]:
        import mlflow

        states = self.registry.alias_states(name)
        managed = {e.alias for e in self.registry.alias_history(name)} | set(states)
        client = mlflow.MlflowClient(self.tracking_uri)
        _ensure_registered_model(client, name)
        mapped = mlflow_versions(client, name)
        registered: list[int] = []
        for state in states.values():
            if state.version not in mapped:
                mapped[state.version] = self._register(name, state.version).model_version
                registered.append(state.version)
        current = dict(client.get_registered_model(name).aliases or {})
        set_now: dict[str, dict[str, Any]] = {}
        for alias, state in sorted(states.items()):
            target = mapped[state.version]
            if current.get(alias) != target:
                client.set_registered_model_alias(name, alias, target)
            set_now[alias] = {"version": state.version, "mlflow_version": target}
        removed = sorted(a for a in managed - set(states) if a in current)
        for alias in removed:
            client.delete_registered_model_alias(name, alias)
        return {
            "model_name": name,
            "tracking_uri": redact_secrets(self.tracking_uri),
            "aliases": set_now,
            "registered": registered,
            "removed": removed,
        }

    def _register(self, name: str, number: int) -> MlflowRecord:
        """A version trained before MLflow was configured (or whose logging failed)."""
        from pgmlops.services.inference import load_pipeline

        version = self.registry.get_version(name, number)
        pipeline = load_pipeline(self.artifacts.read(version, "model"))
        log.info("registering %s v%d in MLflow to mirror its alias", name, number)
        return log_version(self.tracking_uri, version, pipeline)


def mirror_of(mirror: MlflowMirror | None) -> MlflowMirror:
    """The context's mirror, or a one-line ConfigError when MLflow is not configured."""
    if mirror is None:
        raise ConfigError(
            "mlflow_tracking_uri is not set: nothing to sync to (set it in pgmlops.yaml or "
            "PGMLOPS_MLFLOW_TRACKING_URI)"
        )
    return mirror


def sync_command(mirror: MlflowMirror | None, name: str) -> dict[str, Any]:
    """`pgmlops mlflow sync`: MLflow's aliases of one model made pgmlops's, or one-line error."""
    mirror = mirror_of(mirror)
    mirror.registry.list_models(name)  # NotFoundError for a model that is not registered
    try:
        return mirror.sync(name)
    except (ConfigError, StoreError):
        raise
    except Exception as exc:  # MLflow's own errors carry no pgmlops exit code
        reason = redact_secrets(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        raise StoreError(f"MLflow sync of {name!r} failed: {type(exc).__name__}: {reason}") from exc
