"""Schema, split and held-out samples of a partitioned dataset, without collecting its rows.

The schema's kinds and dropped columns are decided on a seeded sample (as a local run decides
them on all rows); its categories, classes and numeric summaries are then counted exactly over
every partition. Each row's side follows from the same content hash as a local split, so a row
lands on the same side either way. Validation and holdout rows are collected to the driver as
bounded samples (at most MAX_HELD_ROWS each): the gates, threshold and reference outputs are
computed on those, as on a local run's full held-out rows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from pgmlops.config import TrainingConfig
from pgmlops.domain.schema import MISSING_CATEGORY, FeatureSchema, ReadOptions, coerce_features
from pgmlops.domain.training.frame import prepare_training_frame as prepare_local
from pgmlops.domain.training.split import row_keys
from pgmlops.errors import DataError

SCHEMA_SAMPLE_ROWS = 50_000
MAX_HELD_ROWS = 100_000
# Training rows collected for the preprocessing fit and the profile's value samples.
MAX_TRAIN_SAMPLE_ROWS = 100_000
SIDE, SAMPLED = "__side__", "__sampled__"
TRAIN, VALIDATION, HOLDOUT = 0, 1, 2


@dataclass(frozen=True)
class Prepared:
    """Every row prepared (lazy, in partitions) and the bounded samples collected locally."""

    rows: dd.DataFrame  # features, target, SIDE; persisted on the cluster
    sample: pd.DataFrame  # the SAMPLED rows of every side
    counts: dict[int, int]  # rows per side


def _labels(y: pd.Series, task: str) -> pd.Series:
    if task == "regression":
        return pd.to_numeric(y, errors="coerce").astype("float64")
    numeric = pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y)
    if numeric and np.all(np.mod(y.to_numpy(dtype=float), 1) == 0):
        return y.astype("int64").astype(str)
    return y.astype(str).str.strip()


def _with_target(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    y = frame[target]
    keep = y.notna() & (y.astype("string").str.strip() != "")
    return frame[keep.to_numpy()]


def _summarise(frame: pd.DataFrame, schema: FeatureSchema) -> dict[str, Any]:
    """One partition's exact counts and sums; summaries of partitions add up."""
    frame = _with_target(frame, schema.target)
    x = coerce_features(frame, schema)
    out: dict[str, Any] = {"n": len(x)}
    for spec in schema.features:
        col = x[spec.name]
        if spec.kind == "numeric":
            v = col.to_numpy(dtype=np.float64)
            present = v[~np.isnan(v)]
            out[spec.name] = (
                len(present), float(present.sum()), float(np.square(present).sum()),
                float(present.min()) if len(present) else np.inf,
                float(present.max()) if len(present) else -np.inf,
            )  # fmt: skip
        else:
            out[spec.name] = col.value_counts(sort=False).to_dict()
    if schema.task != "regression":
        out[schema.target] = _labels(frame[schema.target], schema.task).value_counts().to_dict()
    return out


def _merge(parts: list[dict[str, Any]], schema: FeatureSchema) -> dict[str, Any]:
    total: dict[str, Any] = {"n": sum(p["n"] for p in parts)}
    names = [*schema.names, *([schema.target] if schema.task != "regression" else [])]
    for name in names:
        values = [p[name] for p in parts]
        if isinstance(values[0], tuple):
            count, s, sq = (sum(v[i] for v in values) for i in range(3))
            total[name] = (count, s, sq, min(v[3] for v in values), max(v[4] for v in values))
        else:
            merged: dict[Any, int] = {}
            for counts in values:
                for key, c in counts.items():
                    merged[key] = merged.get(key, 0) + int(c)
            total[name] = merged
    return total


def row_hashes(frame: pd.DataFrame) -> bytes:
    return pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()


def infer_schema(
    client: Any, raw: dd.DataFrame, target: str, cfg: TrainingConfig, sha256: str | None = None
) -> tuple[FeatureSchema, str, int]:
    """The schema over every row, the data's sha256 (as a local run computes it) and its rows.

    `sha256`: the data's fingerprint when the caller has already hashed it (a retrain).
    """
    if target not in raw.columns:
        shown = ", ".join(map(str, list(raw.columns)[:12]))
        raise DataError(f"target column {target!r} is not in the dataset (columns: {shown})")
    n_rows = int(raw.shape[0].compute())
    if n_rows == 0:
        raise DataError("the dataset is empty: it has no rows")
    frac = min(1.0, SCHEMA_SAMPLE_ROWS / n_rows)
    sample = raw.sample(frac=frac, random_state=cfg.seed) if frac < 1.0 else raw
    # The same reading rules as a local run (spellings, dates, booleans), decided on the sample.
    options = ReadOptions(**cfg.model_dump(include=set(ReadOptions.__dataclass_fields__)))
    _, _, draft = prepare_local(sample.compute(), target, cfg.task, cfg.drop, options=options)
    chunks = raw.to_delayed()
    parts = [dask.delayed(_summarise)(p, draft) for p in chunks]
    # Hashed while the summaries are counted.
    hashes = None if sha256 is not None else hash_partitions(client, chunks)
    total = _merge(list(dask.compute(*parts)), draft)
    if hashes is not None:
        sha256 = fingerprint(hashes, list(raw.columns))
    return _exact_schema(draft, total), str(sha256), n_rows


def hash_partitions(client: Any, chunks: list[Any]) -> list[Any]:
    """Futures of each delayed partition's row hashes (8 bytes a row), in order."""
    return client.compute([dask.delayed(row_hashes)(p) for p in chunks])


def fingerprint(hashes: list[Any], columns: list[Any]) -> str:
    """The same bytes, in the same order, as datasets.fingerprint over the whole frame.

    Each partition's hashes reach the driver one partition at a time.
    """
    digest = hashlib.sha256("\x1f".join(map(str, columns)).encode())
    for i, future in enumerate(hashes):
        digest.update(future.result())
        hashes[i] = None
        future.release()
    return digest.hexdigest()


def _exact_schema(draft: FeatureSchema, total: dict[str, Any]) -> FeatureSchema:
    n = total["n"]
    features = []
    for spec in draft.features:
        stats = total[spec.name]
        if spec.kind == "numeric":
            count, s, sq, lo, hi = stats
            mean = s / count
            std = float(np.sqrt(max(sq / count - mean * mean, 0.0)))
            update = {"min": lo, "max": hi, "mean": mean, "std": std}
            features.append(spec.model_copy(update={**update, "missing_rate": 1 - count / n}))
        else:
            cats = sorted(str(k) for k in stats)
            missing = stats.get(MISSING_CATEGORY, 0) / n
            features.append(spec.model_copy(update={"categories": cats, "missing_rate": missing}))
    classes = None
    if draft.task != "regression":
        classes = sorted(str(k) for k in total[draft.target])
        if draft.task == "binary" and len(classes) != 2:
            raise DataError(f"task 'binary' needs 2 classes, target has {len(classes)}")
    return draft.model_copy(update={"features": features, "classes": classes})


def _cuts(cfg: TrainingConfig, n_rows: int) -> tuple[float, float, float]:
    """Key bounds below which a row of each side is sampled (keys are uniform in [0, 1))."""
    t, v = cfg.test_size, cfg.validation_size
    train = max(1.0 - t - v, 1e-9)

    def share(width: float, cap: int) -> float:
        return width * min(1.0, cap / max(width * n_rows, 1.0))

    return (
        share(t, MAX_HELD_ROWS),
        t + share(v, MAX_HELD_ROWS),
        t + v + share(train, MAX_TRAIN_SAMPLE_ROWS),
    )


def _prepare(
    frame: pd.DataFrame, schema: FeatureSchema, cfg: TrainingConfig, cuts: tuple
) -> pd.DataFrame:
    frame = _with_target(frame, schema.target)
    x = coerce_features(frame, schema).reset_index(drop=True)
    keys = row_keys(x, cfg.seed)
    t, v = cfg.test_size, cfg.validation_size
    side = np.where(keys < t, HOLDOUT, np.where(keys < t + v, VALIDATION, TRAIN)).astype(np.int8)
    bound = np.choose(side, [cuts[2], cuts[1], cuts[0]])
    y = _labels(frame[schema.target], schema.task).reset_index(drop=True)
    return x.assign(**{schema.target: y, SIDE: side, SAMPLED: keys < bound})


def _side_counts(frame: pd.DataFrame) -> np.ndarray:
    return np.bincount(frame[SIDE].to_numpy(dtype=np.int64), minlength=3)


def prepare_rows(
    client: Any, raw: dd.DataFrame, schema: FeatureSchema, cfg: TrainingConfig, n_rows: int
) -> Prepared:
    """Coerce and split every partition on the cluster (kept there), and collect the samples."""
    cuts = _cuts(cfg, n_rows)
    rows = raw.map_partitions(
        _prepare, schema, cfg, cuts, meta=_prepare(raw._meta, schema, cfg, cuts)
    )
    rows = client.persist(rows)
    # Side counts summed per partition: a Dask value_counts would shuffle.
    sides = [dask.delayed(_side_counts)(part) for part in rows.to_delayed()]
    sample = rows[rows[SAMPLED]].compute()
    counts = np.sum(dask.compute(*sides), axis=0)
    by_side = {side: int(counts[side]) for side in (TRAIN, VALIDATION, HOLDOUT)}
    if by_side.get(TRAIN, 0) < 10:
        raise DataError(f"the dataset has {by_side.get(TRAIN, 0)} training rows; need at least 10")
    if schema.task != "regression":
        for side, name in ((TRAIN, "training"), (VALIDATION, "validation"), (HOLDOUT, "holdout")):
            seen = set(sample.loc[sample[SIDE] == side, schema.target])
            absent = [c for c in schema.classes or [] if c not in seen]
            if absent:
                raise DataError(
                    f"class {absent[0]!r} has no row in the {name} sample; every class needs "
                    "rows on each side (more rows of it, or the local engine)"
                )
    return Prepared(
        rows=rows.drop(columns=[SAMPLED]), sample=sample.reset_index(drop=True), counts=by_side
    )


def side_of(
    sample: pd.DataFrame, side: int, schema: FeatureSchema
) -> tuple[pd.DataFrame, pd.Series]:
    """The sampled rows of one side: features and target."""
    part = sample[sample[SIDE] == side].reset_index(drop=True)
    return part[schema.names], part[schema.target]
