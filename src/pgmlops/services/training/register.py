"""Register a fitted pipeline: threshold, holdout metrics, card, ONNX copy and references."""

from __future__ import annotations

import io
import logging
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from pgmlops.config import TrainingConfig
from pgmlops.domain.importance import IMPORTANCE_ROWS, permutation_importance
from pgmlops.domain.metrics import PRIMARY_METRIC, Scores, confusion, evaluate, metric_value
from pgmlops.domain.predict import Outputs, baseline_scores, predict_outputs, to_scores
from pgmlops.domain.promotion.paired_bootstrap import row_clusters
from pgmlops.domain.redact import redact_secrets
from pgmlops.domain.registry.card import DataFingerprint, ModelCard, OnnxInfo, SplitInfo
from pgmlops.domain.registry.records import ModelVersion, StoredFile
from pgmlops.domain.schema import FeatureSchema
from pgmlops.domain.training.threshold import tune_threshold
from pgmlops.services.context import Context
from pgmlops.services.inference import dump_pipeline
from pgmlops.services.training.onnx_export import export_onnx

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainResult:
    """The registered version and what training noticed on the way."""

    version: ModelVersion
    warnings: list[str]
    seconds: float
    mlflow_run_id: str | None = None
    mlflow_model_version: str | None = None


def _library_versions() -> dict[str, str]:
    from importlib.metadata import version

    import onnxruntime
    import sklearn

    versions = {
        "python": platform.python_version(),
        # From the installed distribution: importing the package root would point upward.
        "pgmlops": version("pgmlops"),
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    # A boosting library's version matters as much as scikit-learn's to reload its model.
    for name in ("xgboost", "lightgbm", "catboost"):
        if name in sys.modules:
            versions[name] = str(getattr(sys.modules[name], "__version__", "unknown"))
    return versions


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=2, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


class _ScoringCard:
    """The few card fields scoring needs, before the real card exists."""

    def __init__(self, schema: FeatureSchema, threshold: float | None) -> None:
        self.task = schema.task
        self.classes = schema.classes
        self.threshold = threshold
        self.feature_schema = schema


@dataclass(frozen=True)
class Fitted:
    """A fitted pipeline and the held-out rows that judge it, however it was trained.

    The single-process path holds every row; the Dask path (services/training/dask) holds
    bounded samples of the validation and holdout rows and profiles the training rows itself.
    """

    pipeline: Any
    schema: FeatureSchema
    target: str
    x_val: pd.DataFrame
    y_val: np.ndarray
    x_hold: pd.DataFrame
    y_hold: np.ndarray
    y_train: pd.Series  # the baseline's prior (or mean) comes from these labels
    train_rows: int
    data: DataFingerprint
    notes: list[str]
    cv_metrics: dict[str, float] | None
    # (output scores, their confidence, which rows they are: design_effect.OutputRows)
    profile: Callable[[np.ndarray, np.ndarray | None, str], Any]
    crossed: Callable[[Scores, Any], Scores]
    # pooled scores -> the same rows' scores as served (domain/training/crossfit.py)
    served: Callable[[Scores, Any], Scores] | None = None
    x_train: pd.DataFrame | None = None  # None where the training rows stay on a cluster


def register_fitted(
    ctx: Context,
    fitted: Fitted,
    cfg: TrainingConfig,
    *,
    model_name: str,
    actor: str,
    source: dict[str, Any],
    progress: Progress,
    started: float,
) -> TrainResult:
    """Tune, evaluate on the holdout, build the card, ONNX copy and profile, and register."""
    step = progress
    pipeline, schema, target, notes = fitted.pipeline, fitted.schema, fitted.target, fitted.notes
    x_val, y_val, x_hold, y_hold = fitted.x_val, fitted.y_val, fitted.x_hold, fitted.y_hold
    estimator = pipeline.steps[-1][1]
    threshold = None
    calibration = None
    scoring = _ScoringCard(schema, None)
    if schema.task != "regression":
        step("tuning threshold and calibration on the validation split")
        val_out = predict_outputs(pipeline, scoring, x_val)
        from pgmlops.domain.monitoring.performance import fit_calibration

        if schema.task == "binary":
            positive = (schema.classes or [])[1]
            threshold = tune_threshold(y_val == positive, val_out.proba, cfg.threshold)
        calibration = fit_calibration(y_val.astype(str), val_out.proba, schema.classes or [])
    scoring.threshold = threshold

    step(f"evaluating on {len(x_hold):,} holdout rows")
    hold_out = predict_outputs(pipeline, scoring, x_hold)
    hold_scores = to_scores(scoring, hold_out, y_hold)
    metrics = evaluate(hold_scores)
    baseline = _baseline_metrics(schema, fitted.y_train, y_hold, threshold)
    cv_metrics = fitted.cv_metrics

    step(f"permutation importance on up to {IMPORTANCE_ROWS:,} holdout rows")
    primary = ctx.settings.promotion.primary_for(schema.task)

    def score_blocks(frame: pd.DataFrame, truth: np.ndarray, n: int) -> list[float]:
        out = predict_outputs(pipeline, scoring, frame)
        return [
            metric_value(primary, to_scores(scoring, _rows(out, i * n, (i + 1) * n), truth))
            for i in range(len(frame) // n)
        ]

    importance = permutation_importance(score_blocks, x_hold, y_hold, primary, seed=cfg.seed)

    from pgmlops.domain.monitoring.performance import confidence

    hold_conf = (
        confidence(hold_out.proba, schema.task, threshold) if hold_out.proba is not None else None
    )
    card = ModelCard(
        model_name=model_name,
        task=schema.task,
        target=target,
        feature_schema=schema,
        classes=schema.classes,
        positive_class=(schema.classes or [None, None])[1] if schema.task == "binary" else None,
        threshold=threshold,
        estimator=f"{type(estimator).__module__}.{type(estimator).__name__}",
        params=_jsonable(estimator.get_params(deep=False)),
        training=cfg.model_dump(mode="json"),
        metrics=_clean(metrics),
        confusion_matrix=confusion(hold_scores) if schema.task != "regression" else None,
        feature_importance=importance,
        cv_metrics=_clean(cv_metrics) if cv_metrics else None,
        baseline_metrics=_clean(baseline),
        calibration=calibration.model_dump(mode="json") if calibration else None,
        reference_confidence=float(np.mean(hold_conf)) if hold_conf is not None else None,
        data=fitted.data,
        split=SplitInfo(
            method="content-hash, stratified",
            test_size=cfg.test_size,
            validation_size=cfg.validation_size,
            train_rows=fitted.train_rows,
            validation_rows=len(x_val),
            holdout_rows=len(x_hold),
        ),
        onnx=OnnxInfo(present=False, reason="not converted yet"),
        libraries=_library_versions(),
        git_commit=_git_commit(),
        warnings=notes,
        created_at=datetime.now(UTC),
    )
    files: dict[str, StoredFile] = {}
    if cfg.onnx:
        step("converting to ONNX and checking it against the pipeline")
        onnx_bytes, info = export_onnx(pipeline, card, x_hold)
        card = card.model_copy(update={"onnx": info})
        if onnx_bytes is not None:
            files["onnx"] = ctx.artifacts.put(onnx_bytes)
    else:
        card = card.model_copy(
            update={"onnx": OnnxInfo(present=False, reason="disabled in config")}
        )

    step("keeping reference outputs for monitoring")
    from pgmlops.domain.intervals import concat_scores

    val_out = predict_outputs(pipeline, scoring, x_val)
    # Validation and holdout rows together: neither trained the model, and twice the rows
    # halve the reference's own noise (a 4,000-row holdout AUC can be 0.01 off the truth);
    # then the training rows' out-of-fold outputs (domain/training/crossfit.py).
    held = concat_scores(to_scores(scoring, val_out, y_val), hold_scores)
    pooled = fitted.crossed(held, scoring)
    # The pooled rows' features, in the order crossed() pools them: training, then held.
    parts = None if fitted.x_train is None else [fitted.x_train, x_val, x_hold]
    files.update(
        _monitoring_references(ctx, schema, (x_val, y_val, val_out), held, pooled, cfg, parts)
    )
    step("profiling the reference data for drift monitoring")
    out, rows = _output_reference(fitted, cfg.output_reference, held, pooled, scoring)
    out_conf = confidence(out.proba, schema.task, threshold) if out.proba is not None else None
    profile = fitted.profile(_score_vector(out, schema.task), out_conf, rows)
    holdout_frame = x_hold.assign(**{target: y_hold}).reset_index(drop=True)
    step("storing artifacts and registering the version")
    files["model"] = ctx.artifacts.put(dump_pipeline(pipeline))
    files["holdout"] = ctx.artifacts.put(_parquet(holdout_frame))
    # Promotion judges a challenger on validation rows too (services/promotion.py).
    validation_frame = x_val.assign(**{target: y_val}).reset_index(drop=True)
    files["validation"] = ctx.artifacts.put(_parquet(validation_frame))
    files["reference"] = ctx.artifacts.put(profile.model_dump_json().encode())
    seconds = time.perf_counter() - started
    card = card.model_copy(update={"training_seconds": round(seconds, 3)})
    version = ctx.registry.create_version(
        model_name,
        files,
        card,
        actor,
        source,
        sign=lambda number, fs: ctx.artifacts.sign_files(model_name, number, fs),
    )
    mlflow_run = mlflow_version = None
    if ctx.settings.mlflow_tracking_uri:
        step("logging the run to MLflow")
        from pgmlops.services.mlflow_sync import log_version

        try:
            logged = log_version(ctx.settings.mlflow_tracking_uri, version, pipeline)
            mlflow_run, mlflow_version = logged.run_id, logged.model_version
        except Exception as exc:  # the version is registered; the MLflow mirror is extra
            # MLflow's message may carry the tracking URI, credentials included.
            reason = redact_secrets(str(exc))
            notes.append(f"MLflow logging failed, the version is registered anyway: {reason}")
            log.warning(notes[-1])
    return TrainResult(
        version=version,
        warnings=notes,
        seconds=seconds,
        mlflow_run_id=mlflow_run,
        mlflow_model_version=mlflow_version,
    )


def _monitoring_references(
    ctx: Context,
    schema: FeatureSchema,
    validation: tuple[pd.DataFrame, np.ndarray, Any],
    held: Scores,
    pooled: Scores,
    cfg: TrainingConfig,
    pooled_rows: list[pd.DataFrame] | None = None,
) -> dict[str, StoredFile]:
    """Out-of-sample outputs for monitoring's intervals, and the regression loss models (DLE).

    ``held`` are the validation and holdout rows' scores, ``pooled`` those joined by the
    training rows' out-of-fold scores (or ``held`` itself when there are none).
    """
    from pgmlops.domain.intervals import reference_outputs
    from pgmlops.domain.monitoring.performance import fit_loss_models

    x_val, y_val, val_out = validation
    ref = reference_outputs(pooled, seed=cfg.seed)
    files = {"reference_outputs": ctx.artifacts.put(ref.model_dump_json().encode())}
    if len(pooled) > len(held):
        # Every labelled row scored by a model that did not fit it: a first version is
        # judged on these (services/promotion.py), not on the holdout alone.
        frame = scores_frame(pooled)
        if pooled_rows is not None and sum(map(len, pooled_rows)) == len(pooled):
            # Which rows repeat a feature vector: the gate resamples those together.
            frame["vector"] = row_clusters(pd.concat(pooled_rows, ignore_index=True))
        files["crossfit"] = ctx.artifacts.put(_parquet(frame))
    if schema.task == "regression":
        # The loss models learn on validation rows only, so the holdout is fresh to them.
        models = fit_loss_models(
            x_val, np.asarray(val_out.predicted, dtype=float), y_val, schema, seed=cfg.seed
        )
        files["loss_model"] = ctx.artifacts.put(dump_pipeline(models))
    return files


def _output_reference(
    fitted: Fitted, choice: str, held: Scores, pooled: Scores, scoring: Any
) -> tuple[Scores, str]:
    """Prediction drift's reference scores and which rows they are (docs/monitoring.md).

    The split keeps copies of a feature vector together, so held-out rows alone are a few
    clusters on repeated data; every labelled row's output is the whole mix. Without
    out-of-fold scores (reference_folds < 2, or a Dask fit) the held-out ones are all there is.
    """
    if choice == "held_out" or len(pooled) == len(held):
        return held, "held_out"
    if choice == "out_of_fold" or fitted.served is None:
        return pooled, "out_of_fold"
    return fitted.served(pooled, scoring), "served"


def scores_frame(scores: Scores) -> pd.DataFrame:
    """Scores as a table (y_true, predicted, proba_0..k) for the `crossfit` artifact."""
    frame = pd.DataFrame({"y_true": scores.y_true, "predicted": scores.predicted})
    if scores.proba is not None:
        proba = np.asarray(scores.proba, dtype=float).reshape(len(scores), -1)
        for k in range(proba.shape[1]):
            frame[f"proba_{k}"] = proba[:, k]
    return frame


def _score_vector(out: Any, task: str) -> np.ndarray:
    if task == "binary" or task == "regression":
        return np.asarray(out.proba if task == "binary" else out.predicted, dtype=float)
    return np.asarray(out.predicted)


def _baseline_metrics(
    schema: FeatureSchema, y_train: pd.Series, y_hold: np.ndarray, threshold: float | None
) -> dict[str, float]:
    """What a model that ignores the features scores on the same holdout."""
    return evaluate(baseline_scores(schema.task, y_train.to_numpy(), y_hold, schema.classes))


def _rows(out: Outputs, start: int, stop: int) -> Outputs:
    proba = None if out.proba is None else out.proba[start:stop]
    return Outputs(predicted=out.predicted[start:stop], proba=proba)


def _parquet(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    return buf.getvalue()


def _clean(metrics: dict[str, float] | None) -> dict[str, float | None]:
    return {
        k: (None if v is None or not np.isfinite(v) else float(v))
        for k, v in (metrics or {}).items()
    }


def _jsonable(params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in params.items():
        out[k] = v if isinstance(v, str | int | float | bool | type(None)) else repr(v)
    return out


def primary_metric(task: str, configured: str | None) -> str:
    return configured or PRIMARY_METRIC[task]  # type: ignore[index]
