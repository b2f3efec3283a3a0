"""Fit a candidate in this process: read, split, build the pipeline, fit, then register."""

from __future__ import annotations

import logging
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

from pgmlops.config import TrainingConfig
from pgmlops.domain.metrics import evaluate
from pgmlops.domain.predict import predict_outputs, to_scores
from pgmlops.domain.registry.card import DataFingerprint
from pgmlops.domain.schema import FeatureSchema, ReadOptions
from pgmlops.domain.training.boosting import iteration_fit_params, library_fit_errors
from pgmlops.domain.training.frame import left_out_notes, prepare_training_frame
from pgmlops.domain.training.outliers import handle_outliers
from pgmlops.domain.training.pipeline import (
    build_pipeline,
    make_estimator,
    snap_thresholds_to_float32,
)
from pgmlops.domain.training.split import MIN_CLASS_ROWS, split_rows
from pgmlops.errors import DataError, TrainingError
from pgmlops.services.artifact_signing import signing_key_for_writing
from pgmlops.services.context import Context
from pgmlops.services.datasets import Dataset
from pgmlops.services.training.register import (
    Fitted,
    Progress,
    TrainResult,
    _ScoringCard,
    register_fitted,
)

log = logging.getLogger(__name__)


def order_classes(schema: FeatureSchema, positive: str | None) -> FeatureSchema:
    """Put the configured positive class last (binary), where scores read P(positive)."""
    if schema.task != "binary" or positive is None:
        return schema
    classes = schema.classes or []
    if positive not in classes:
        raise DataError(f"positive_class {positive!r} is not a class of the target ({classes})")
    negative = next(c for c in classes if c != positive)
    return schema.model_copy(update={"classes": [negative, positive]})


def _fit(pipeline: Any, x: pd.DataFrame, y: pd.Series, **fit_params: Any) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            pipeline.fit(x, y, **fit_params)
        snap_thresholds_to_float32(pipeline)
        return pipeline
    except MemoryError as exc:
        raise TrainingError("training ran out of memory") from exc
    except (ValueError, TypeError, *library_fit_errors()) as exc:
        # LightGBM and CatBoost raise their own types for bad parameter values.
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TrainingError(f"estimator failed to fit: {first}") from exc


def _advance(progress: Progress | None) -> Any:
    """The progress callback's optional `advance(done, total)` for counted sub-steps."""
    return getattr(progress, "advance", None)


def _cross_validate(
    cfg: TrainingConfig, x: pd.DataFrame, y: pd.Series, schema, est_factory
) -> dict:
    from sklearn.model_selection import KFold, StratifiedKFold

    splitter = (
        KFold(cfg.cv_folds, shuffle=True, random_state=cfg.seed)
        if schema.task == "regression"
        else StratifiedKFold(cfg.cv_folds, shuffle=True, random_state=cfg.seed)
    )
    folds: list[dict[str, float]] = []
    for train_idx, test_idx in splitter.split(x, y):
        pipe = build_pipeline(
            x,
            est_factory(),
            features=cfg.features,
            imbalance=cfg.imbalance,
            seed=cfg.seed,
            dates=schema.date_references,
        )
        _fit(pipe, x.iloc[train_idx], y.iloc[train_idx])
        card_like = _ScoringCard(schema, None)
        out = predict_outputs(pipe, card_like, x.iloc[test_idx])
        folds.append(evaluate(to_scores(card_like, out, y.iloc[test_idx].to_numpy())))
    return {k: float(np.nanmean([f[k] for f in folds])) for k in folds[0]}


def new_pipeline(
    x: pd.DataFrame, estimator: Any, cfg: TrainingConfig, schema: FeatureSchema
) -> Any:
    """The unfitted pipeline for these columns and settings, for either engine."""
    return build_pipeline(
        x,
        estimator,
        features=cfg.features,
        imbalance=cfg.imbalance,
        seed=cfg.seed,
        dates=schema.date_references,
    )


def train_model(
    ctx: Context,
    dataset: Dataset,
    target: str,
    cfg: TrainingConfig,
    *,
    model_name: str,
    actor: str,
    progress: Progress | None = None,
    left_out_before: FeatureSchema | None = None,
) -> TrainResult:
    """Fit a pipeline, tune, evaluate on the holdout, store artifacts and register a candidate.

    `left_out_before`: a retrain's base schema, whose left-out columns (the identifier that
    keys the prediction log among them) stay accepted and ignored by the new version.
    """
    step = progress or (lambda _msg: None)
    started = time.perf_counter()
    if ctx.settings.mlflow_tracking_uri:
        from pgmlops.services.mlflow_sync import require_mlflow

        require_mlflow()
    signing_key_for_writing(ctx)  # no signing key: fail before the fit, not after it
    step("preparing data")
    read_notes: list[str] = []
    options = ReadOptions(**cfg.model_dump(include=set(ReadOptions.__dataclass_fields__)))
    x, y, schema = prepare_training_frame(
        dataset.frame,
        target,
        cfg.task,
        cfg.drop,
        options=options,
        notes=read_notes,
        min_class_rows=MIN_CLASS_ROWS,
    )
    schema = order_classes(schema, cfg.positive_class)
    notes: list[str] = [*left_out_notes(schema)]
    notes += dataset.notes + read_notes
    for note in notes:
        log.warning(note)
    if left_out_before is not None:
        schema = schema.keeping_left_out(left_out_before)
    split = split_rows(
        x,
        y,
        schema.task,
        test_size=cfg.test_size,
        validation_size=cfg.validation_size,
        seed=cfg.seed,
    )
    x_train, y_train = (
        x.iloc[split.train].reset_index(drop=True),
        y.iloc[split.train].reset_index(drop=True),
    )
    x_val, y_val = x.iloc[split.validation], y.iloc[split.validation].to_numpy()
    x_hold, y_hold = x.iloc[split.holdout], y.iloc[split.holdout].to_numpy()
    x_train, y_train, outlier_note = handle_outliers(
        x_train, y_train, schema.numeric, cfg.outliers, cfg.iqr_factor
    )
    if outlier_note:
        notes.append(outlier_note)

    def new_estimator() -> Any:
        return make_estimator(cfg.estimator, dict(cfg.params), schema.task, cfg.seed)

    estimator = new_estimator()
    pipeline = new_pipeline(x_train, estimator, cfg, schema)
    step(f"fitting {type(estimator).__name__} on {len(x_train):,} rows")
    # Boosting libraries with a per-fit callback report iterations (`advance` on a terminal).
    _fit(pipeline, x_train, y_train, **iteration_fit_params(estimator, _advance(progress)))

    cv_metrics = None
    if cfg.cv_folds >= 2:
        step(f"{cfg.cv_folds}-fold cross-validation")
        x_cv = pd.concat([x_train, x.iloc[split.validation]], ignore_index=True)
        y_cv = pd.concat([y_train, y.iloc[split.validation]], ignore_index=True)
        cv_metrics = _cross_validate(cfg, x_cv, y_cv, schema, new_estimator)

    from pgmlops.domain.monitoring.profile import build_profile
    from pgmlops.domain.monitoring.profile_design import with_designs
    from pgmlops.domain.training.crossfit import served_scores, with_cross_fitted

    fitted = Fitted(
        pipeline=pipeline,
        schema=schema,
        target=target,
        x_val=x_val,
        y_val=y_val,
        x_hold=x_hold,
        y_hold=y_hold,
        y_train=y_train,
        train_rows=len(x_train),
        data=DataFingerprint(
            sha256=dataset.sha256,
            rows=len(dataset.frame),
            columns=[str(c) for c in dataset.frame.columns],
            source=dataset.description,
            rows_without_target=len(dataset.frame) - len(x),
        ),
        notes=notes,
        cv_metrics=cv_metrics,
        profile=lambda scores, conf, rows: with_designs(
            build_profile(x_train, schema, scores=scores, confidence=conf, seed=cfg.seed),
            x_train,
            # The rows of the scores, in the order register_fitted pools them.
            pd.concat([x_val, x_hold] if rows == "held_out" else [x_train, x_val, x_hold]),
            len(x),
            rows=rows,
        ),
        crossed=lambda held, scoring: with_cross_fitted(
            held, pipeline, scoring, x_train, y_train, folds=cfg.reference_folds, seed=cfg.seed
        ),
        served=lambda pooled, scoring: served_scores(pipeline, scoring, x_train, pooled),
        x_train=x_train,
    )
    return register_fitted(
        ctx, fitted, cfg, model_name=model_name, actor=actor, source=dataset.source,
        progress=step, started=started,
    )  # fmt: skip
