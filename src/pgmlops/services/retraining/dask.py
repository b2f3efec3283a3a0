"""Retraining under `training.engine: dask`: the recorded source read in partitions again.

A retrain assembles the same parts as a local one (services/training_data.assemble): the
recorded source, labelled feedback and live rows, each validated against the base version's
schema. Here the source is validated partition by partition on the cluster (one pass that also
hashes it); feedback and live rows, already in this process, become one more partition.

A base the Dask engine cannot retrain (a CSV file or a SQL statement as its source, no
`training.dask_index_column` for its table, an estimator or option without a Dask path) is
retrained in this process, with a warning that says why (`dask_blocker`).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from contextlib import ExitStack
from typing import Any

import dask
import dask.dataframe as dd
import pandas as pd

from pgmlops.config import TrainingConfig
from pgmlops.domain.registry.records import ModelVersion
from pgmlops.domain.schema import FeatureSchema
from pgmlops.errors import ConfigError, DataError
from pgmlops.services.context import Context
from pgmlops.services.datasets import source_url
from pgmlops.services.retraining.data import (
    PartReport,
    SourcePart,
    TrainingData,
    check_columns,
    combine_frames,
    unreadable,
    validate_rows,
)
from pgmlops.services.training import Progress, TrainResult
from pgmlops.services.training.dask.frames import row_hashes
from pgmlops.services.training.dask.train import (
    Origin,
    check_dask_options,
    cluster_for,
    describe_source,
    train_partitions,
)

_PARQUET = (".parquet", ".pq")
_TABLE_QUERY = re.compile(
    r"SELECT \* FROM ([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)", re.IGNORECASE
)


def partition_location(source: dict[str, Any] | None, cfg: TrainingConfig) -> tuple | str:
    """(data, table) the Dask reader reads a recorded source from, or why it cannot."""
    kind = (source or {}).get("kind")
    if source and kind == "parquet":
        return str(source["path"]), None
    if source and kind == "file":
        path = str(source["path"])
        if path.lower().endswith(_PARQUET):
            return path, None
        return f"its source {path} is not Parquet, which the Dask reader reads"
    if source and kind == "sql":
        match = _TABLE_QUERY.fullmatch(str(source["query"]).strip())
        if match is None:
            return "its source is a SQL statement; the Dask reader reads a table by name"
        if not cfg.dask_index_column:
            return (
                f"its source is the table {match.group(1)}: set training.dask_index_column "
                "to read it in partitions"
            )
        return str(source["url"]), match.group(1)
    return "it records no Parquet file or table to read in partitions"


def dask_blocker(base: ModelVersion, cfg: TrainingConfig) -> str | None:
    """Why the Dask engine cannot retrain `base` with `cfg`, or None when it can."""
    where = partition_location(base.source, cfg)
    if isinstance(where, str):
        return where
    try:
        check_dask_options(cfg)
    except ConfigError as exc:
        return exc.message
    return None


def _meta(schema: FeatureSchema, target: str) -> pd.DataFrame:
    """Validated rows' columns and dtypes (services/training_data.validate_rows)."""
    dtypes = {
        spec.name: "float64" if spec.kind == "numeric" and spec.date is None else "object"
        for spec in schema.features
    }
    dtypes[target] = "float64" if schema.task == "regression" else "object"
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in dtypes.items()})


def _validated(frame: pd.DataFrame, schema: FeatureSchema, target: str) -> tuple:
    good, report = validate_rows(frame, schema, target)
    meta = _meta(schema, target)
    return good[list(meta.columns)].astype(meta.dtypes.to_dict()), report


def _good_rows(frame: pd.DataFrame, schema: FeatureSchema, target: str) -> pd.DataFrame:
    return _validated(frame, schema, target)[0]


def _checked(frame: pd.DataFrame, schema: FeatureSchema, target: str) -> tuple:
    """One partition: its raw rows' hashes, its good rows' hashes, its report."""
    good, report = _validated(frame, schema, target)
    return row_hashes(frame), row_hashes(good), report


def _add(total: PartReport, part: PartReport) -> None:
    total.rows += part.rows
    total.used += part.used
    total.bad += part.bad
    total.reasons = dict(Counter(total.reasons) + Counter(part.reasons))


class DaskRows:
    """services/training_data.assemble's rows, read and combined in partitions."""

    def __init__(
        self, client: Any, cfg: TrainingConfig, location: tuple, base: ModelVersion
    ) -> None:
        self.client, self.cfg, self.location = client, cfg, location
        self.meta = _meta(base.card.feature_schema, base.card.target)
        self.source_rows = 0
        # sha256 of the good rows, the source's first, continued by combine with the others'.
        self.digest = hashlib.sha256("\x1f".join(map(str, self.meta.columns)).encode())

    def read(self, base: ModelVersion) -> tuple[SourcePart | None, str | None]:
        from pgmlops.services.training.dask.source import read_partitions

        data, table = self.location
        try:
            url = source_url(base.source) if table else data
            raw, _ = read_partitions(url, table, self.cfg.dask_index_column)
        except (DataError, ConfigError) as exc:
            return None, unreadable(base, exc)
        check_columns(list(raw.columns), base)
        schema, target = base.card.feature_schema, base.card.target
        chunks = raw.to_delayed()
        futures = self.client.compute([dask.delayed(_checked)(c, schema, target) for c in chunks])
        # The same bytes as frames.fingerprint (the source's sha256 a Dask train recorded),
        # and the good rows' as datasets.fingerprint over the combined frame.
        source = hashlib.sha256("\x1f".join(map(str, raw.columns)).encode())
        report = PartReport()
        for i, future in enumerate(futures):
            raw_hashes, good_hashes, part = future.result()
            source.update(raw_hashes)
            self.digest.update(good_hashes)
            _add(report, part)
            futures[i] = None
            future.release()
        self.source_rows = report.used
        good = raw.map_partitions(_good_rows, schema, target, meta=self.meta)
        return SourcePart(good, report, source.hexdigest()), None

    def combine(self, source: Any, pieces: list[pd.DataFrame], columns: list[str]) -> tuple:
        """(Dask frame, sha256, rows): the source's partitions, then one of the other rows."""
        local = combine_frames(pieces, columns).astype(self.meta.dtypes.to_dict())
        digest = self.digest.copy()
        if len(local):
            digest.update(row_hashes(local))
        parts = [source] if isinstance(source, dd.DataFrame) else []
        if len(local) or not parts:
            parts.append(dd.from_delayed([dask.delayed(local)], meta=self.meta))
        frame = parts[0] if len(parts) == 1 else dd.concat(parts, ignore_index=True)
        return frame, digest.hexdigest(), self.source_rows + len(local)


def dask_rows(
    ctx: Context, base: ModelVersion, cfg: TrainingConfig, cluster: ExitStack, step: Progress
) -> tuple[TrainingConfig, DaskRows | None, str | None]:
    """(spec, rows read in partitions on a cluster entered into `cluster`, None), or, for a
    base the Dask engine cannot retrain, (the spec set to local, None, the warning to log)."""
    blocker = dask_blocker(base, cfg)
    if blocker is not None:
        warning = (
            f"training.engine dask: v{base.version} is retrained in this process, because {blocker}"
        )
        return cfg.model_copy(update={"engine": "local"}), None, warning
    client = cluster.enter_context(cluster_for(ctx, cfg, step))
    location = partition_location(base.source, cfg)
    assert isinstance(location, tuple)
    return cfg, DaskRows(client, cfg, location, base), None


def retrain_on_dask(
    ctx: Context,
    client: Any,
    data: TrainingData,
    base: ModelVersion,
    cfg: TrainingConfig,
    lineage: dict[str, Any],
    *,
    actor: str,
    step: Progress,
    started: float,
) -> TrainResult:
    """Train the retrain's combined partitions and register the candidate like `train`."""
    origin = Origin(
        source={**data.source, "retrain": lineage},
        description=describe_source(data.source),
        sha256=data.sha256,
        left_out_before=base.card.feature_schema,
    )
    return train_partitions(
        ctx, client, data.frame, base.card.target, cfg, origin, model_name=base.model_name,
        actor=actor, step=step, started=started,
    )  # fmt: skip
