"""Optional MLflow interop: mirror each registered version as an MLflow run."""

from __future__ import annotations

import logging
from typing import Any

from pgmlops.domain.pipeline import serving_pipeline
from pgmlops.domain.records import ModelVersion
from pgmlops.errors import ConfigError

log = logging.getLogger(__name__)

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


def log_version(tracking_uri: str, version: ModelVersion, pipeline: Any) -> str:
    """Log params, metrics, the pipeline and the pgmlops version id; returns the run id."""
    require_mlflow()
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
        mlflow.sklearn.log_model(
            model,
            name="model",
            skops_trusted_types=_trusted_types(model),
            # Stated outright: MLflow would otherwise import the model in a subprocess to guess.
            pip_requirements=_requirements(card.libraries),
        )
    return run.info.run_id
