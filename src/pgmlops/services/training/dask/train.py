"""`training.engine: dask`: the same version a local run registers, fitted on a Dask cluster."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pandas as pd

from pgmlops.config import TrainingConfig
from pgmlops.domain.registry.card import DataFingerprint
from pgmlops.domain.schema import FeatureSchema
from pgmlops.domain.training.boosting import library_of
from pgmlops.domain.training.frame import left_out_notes
from pgmlops.domain.training.pipeline import make_estimator
from pgmlops.errors import ConfigError
from pgmlops.services.artifact_signing import signing_key_for_writing
from pgmlops.services.context import Context
from pgmlops.services.training import (
    Fitted,
    Progress,
    TrainResult,
    new_pipeline,
    order_classes,
    register_fitted,
)
from pgmlops.services.training.dask.cluster import dask_client, require_dask
from pgmlops.services.training.dask.fit import dask_estimator_path, dask_interface


def check_dask_options(cfg: TrainingConfig) -> str:
    """ConfigError for options the Dask path does not offer; else the estimator path."""
    if cfg.cv_folds >= 2:
        raise ConfigError("training.engine dask does not cross-validate: set cv_folds to 0")
    if cfg.imbalance == "smote":
        raise ConfigError("training.engine dask cannot resample with SMOTE: use class_weight")
    if cfg.outliers != "none":
        raise ConfigError("training.engine dask does not handle outliers: set outliers to none")
    return dask_estimator_path(cfg.estimator, cfg.task, dict(cfg.params))


@contextmanager
def cluster_for(ctx: Context, cfg: TrainingConfig, step: Progress) -> Iterator[Any]:
    """Check the options, then a client of the configured cluster whose workers can fit."""
    path = check_dask_options(cfg)
    require_dask()
    signing_key_for_writing(
        ctx
    )  # no signing key: fail before the cluster starts, not after the fit
    where = cfg.dask_address or f"a LocalCluster of {cfg.dask_workers} workers"
    step(f"connecting to {where}")
    with dask_client(cfg.dask_address, cfg.dask_workers, library_of(path) or "") as client:
        yield client


@dataclass(frozen=True)
class Origin:
    """Where the rows came from, as the registry records it."""

    source: dict[str, Any]  # the version's recorded source
    description: str  # the card's data.source
    sha256: str | None = None  # already hashed (a retrain's combined rows); else hashed here
    left_out_before: FeatureSchema | None = None  # a retrain's base schema


def train_on_dask(
    ctx: Context,
    data: str,
    target: str,
    cfg: TrainingConfig,
    *,
    query: str | None,
    model_name: str,
    actor: str,
    progress: Progress | None = None,
) -> TrainResult:
    """Read partitions, fit through the library's Dask interface, register like a local run."""
    step = progress or (lambda _msg: None)
    started = time.perf_counter()
    check_dask_options(cfg)
    require_dask()
    from pgmlops.services.training.dask.source import read_partitions

    raw, source = read_partitions(data, query, cfg.dask_index_column)
    origin = Origin(source=source, description=describe_source(source))
    with cluster_for(ctx, cfg, step) as client:
        return train_partitions(
            ctx, client, raw, target, cfg, origin, model_name=model_name, actor=actor,
            step=step, started=started,
        )  # fmt: skip


def train_partitions(
    ctx: Context,
    client: Any,
    raw: Any,
    target: str,
    cfg: TrainingConfig,
    origin: Origin,
    *,
    model_name: str,
    actor: str,
    step: Progress,
    started: float,
) -> TrainResult:
    """Schema, split, fit and register from a Dask DataFrame, on a connected client."""
    from pgmlops.domain.monitoring.profile_design import with_feature_design
    from pgmlops.services.training.dask import frames
    from pgmlops.services.training.dask.design import counted_feature_design
    from pgmlops.services.training.dask.fit import fit_on_cluster, force_categories
    from pgmlops.services.training.dask.profile import profile_partitions

    path = check_dask_options(cfg)
    step(f"reading {raw.npartitions} partitions and inferring the schema")
    schema, sha256, n_rows = frames.infer_schema(client, raw, target, cfg, origin.sha256)
    schema = order_classes(schema, cfg.positive_class)
    notes: list[str] = [*left_out_notes(schema)]
    if origin.left_out_before is not None:
        schema = schema.keeping_left_out(origin.left_out_before)
    prepared = frames.prepare_rows(client, raw, schema, cfg, n_rows)
    x_train, y_train = frames.side_of(prepared.sample, frames.TRAIN, schema)
    x_val, y_val = frames.side_of(prepared.sample, frames.VALIDATION, schema)
    x_hold, y_hold = frames.side_of(prepared.sample, frames.HOLDOUT, schema)
    counts = prepared.counts
    held = (
        len(x_val),
        counts.get(frames.VALIDATION, 0),
        len(x_hold),
        counts.get(frames.HOLDOUT, 0),
    )
    if held[0] < held[1] or held[2] < held[3]:
        notes.append(
            f"engine dask: gates and references use {held[0]:,} of {held[1]:,} validation "
            f"and {held[2]:,} of {held[3]:,} holdout rows (a seeded sample)"
        )
    if cfg.reference_folds >= 2:
        notes.append(
            "engine dask: the monitoring reference holds held-out rows only (no cross-fitting)"
        )
    estimator = make_estimator(path, dict(cfg.params), schema.task, cfg.seed)
    pipeline = new_pipeline(x_train, estimator, cfg, schema)
    force_categories(pipeline, schema)
    train_rows = prepared.rows[prepared.rows[frames.SIDE] == frames.TRAIN]
    n_train = counts.get(frames.TRAIN, 0)
    step(f"fitting {type(estimator).__name__} on {n_train:,} rows across the cluster")
    fit_on_cluster(
        client,
        pipeline,
        train_rows,
        prepared.sample[prepared.sample[frames.SIDE] == frames.TRAIN],
        schema,
        dask_interface(path, schema.task),
    )

    # Rows with a target: a local run's len(x), the whole the references are shares of.
    labelled = sum(counts.values())

    def profile(scores: Any, conf: Any, _rows: str) -> Any:
        """The profile and its designs (design_effect.py), as a local run records them.

        Features: every training row's cluster sizes, counted on the cluster. Outputs: the
        reference is the scores of the held-out samples and nothing else, so their design
        is that of exactly those rows, measured, not estimated; and as the samples are cut on
        the split's content keys, a sampled vector comes with every copy on its side, so its
        cluster sizes are the population's (a row sample would cut clusters into pieces and
        understate deff). Their share is the sample's rows of all labelled rows.
        """
        built = profile_partitions(train_rows, x_train, schema, scores, conf, seed=cfg.seed)
        design = counted_feature_design(train_rows[schema.names], labelled)
        held = pd.concat([x_val, x_hold], ignore_index=True)
        return with_feature_design(built, design, held, labelled, rows="held_out")

    fitted = Fitted(
        pipeline=pipeline,
        schema=schema,
        target=target,
        x_val=x_val,
        y_val=y_val.to_numpy(),
        x_hold=x_hold,
        y_hold=y_hold.to_numpy(),
        y_train=y_train,
        train_rows=n_train,
        data=DataFingerprint(
            sha256=sha256,
            rows=n_rows,
            columns=[str(c) for c in raw.columns],
            source=origin.description,
        ),
        notes=notes,
        cv_metrics=None,
        profile=profile,
        crossed=lambda held_out, _scoring: held_out,
    )
    return register_fitted(
        ctx, fitted, cfg, model_name=model_name, actor=actor, source=origin.source,
        progress=step, started=started,
    )  # fmt: skip


def describe_source(source: dict[str, Any]) -> str:
    if source["kind"] == "sql":
        return f"sql: {source['query']}"
    return str(source["path"])
