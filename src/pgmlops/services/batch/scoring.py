"""Column-wise validation and scoring of one chunk, with /predict's engine and its messages.

/predict validates each record with a pydantic model built from the feature schema. Doing
that per row for a million rows costs seconds per hundred thousand, so a chunk is checked
column by column with numpy/pandas; only the rows found bad go through the very same pydantic
model, so a rejected row carries the message /predict would have given for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import ValidationError as PydanticValidationError

from pgmlops.config import ServingConfig
from pgmlops.domain.categories import FALSE_TEXT, TRUE_TEXT, canonical_series
from pgmlops.domain.dates import ISO, to_days
from pgmlops.domain.decision import answer_scale
from pgmlops.domain.registry.records import PredictionRecord
from pgmlops.domain.schema import FLOAT32_MAX, FeatureSpec, key_text
from pgmlops.domain.serving.served_fields import BOOLEAN_NOT_NUMBER, is_boolean
from pgmlops.errors import ValidationError
from pgmlops.services.serving.load import LoadedModel
from pgmlops.services.serving.prediction import prediction_ids
from pgmlops.services.serving.record_model import MAX_KEY_LENGTH


@dataclass(frozen=True)
class ChunkResult:
    """A scored chunk: the output table, the log records and the rows refused (by position)."""

    table: pa.Table
    records: list[PredictionRecord]
    rejected: dict[int, str]


def _numeric(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values with NaN for missing, mask of cells /predict would refuse)."""
    if pd.api.types.is_bool_dtype(col):
        return np.full(len(col), np.nan), col.notna().to_numpy()
    if pd.api.types.is_numeric_dtype(col):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.zeros(len(col), dtype=bool)
    else:
        raw = col.astype(object)
        # A text cell of blanks is a missing value, as an empty CSV cell is.
        text = raw.map(lambda v: v.strip() if isinstance(v, str) else v)
        present = text.notna() & (text != "")
        booleans = raw.map(is_boolean).to_numpy(dtype=bool)
        parsed = pd.to_numeric(text.mask(~present | booleans), errors="coerce")
        values = parsed.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = (present.to_numpy() & np.isnan(values)) | booleans
    with np.errstate(invalid="ignore"):
        bad |= np.isinf(values) | (np.abs(values) > FLOAT32_MAX)
    return np.where(bad, np.nan, values), bad


def _dates(col: pd.Series, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """(days since 1970 with NaN for missing, mask of cells that are not dates)."""
    text = col.astype("string").str.strip()
    present = (text.notna() & (text != "")).to_numpy(dtype=bool)
    values = to_days(text, fmt)
    if fmt != ISO:
        # /predict takes ISO 8601 as well as the training format.
        values = values.fillna(to_days(text, ISO))
    days = values.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = present & np.isnan(days)
    return days, bad


def _categorical(
    col: pd.Series, spec: FeatureSpec, serving: ServingConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(object values with None for missing, mask of cells /predict would refuse)."""
    canonical = spec.canonical()
    if canonical is not None:
        # Booleans and other spellings mapped to training's, as /predict's validators do.
        mapped = canonical_series(col, canonical)
        if spec.boolean:
            ok = mapped.isna() | mapped.isin([TRUE_TEXT, FALSE_TEXT])
            return np.where(ok, mapped, None).astype(object), ~ok.to_numpy(dtype=bool)
        # A string column stays one, for the vectorised checks below.
        text_dtype = pd.api.types.is_string_dtype(col.dtype) and col.dtype != object
        col = mapped.astype(col.dtype) if text_dtype else mapped
    raw = col.astype(object).to_numpy()
    missing = pd.isna(raw)
    cats = [c for c in spec.categories or [] if c != "__missing__"]
    if pd.api.types.is_string_dtype(col.dtype) and col.dtype != object:
        # A string column (CSV text, Arrow strings) holds only text: checked in Arrow, not
        # cell by cell in Python.
        is_text = ~missing
        text = col
    else:
        is_text = np.fromiter((isinstance(v, str) for v in raw), dtype=bool, count=len(raw))
        text = pd.Series(np.where(is_text, raw, ""), dtype=object)
    bad = ~missing & ~is_text
    bad |= text.str.contains("\x00", regex=False).fillna(False).to_numpy(dtype=bool)
    if serving.unknown_categories == "reject" and cats and not spec.pooled:
        bad |= is_text & ~text.isin(cats).to_numpy()
    values = np.where(missing | bad, None, raw).astype(object)
    return values, bad


def _reason(model: LoadedModel, row: dict[str, Any], fallback: str) -> str:
    """The message /predict gives for this record: pydantic's, from the same record model."""
    numeric = set(model.card.feature_schema.numeric)
    for name, value in row.items():
        if name in numeric and is_boolean(value):
            return f"column {name!r}: {BOOLEAN_NOT_NUMBER}"
    try:
        model.single.validate_python(row)
    except PydanticValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "record"
        return f"column {where!r}: {first.get('msg', 'invalid value')}"
    return fallback


def _plain(value: Any) -> Any:
    """A cell as pydantic would receive it from JSON: None for missing, Python scalars."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value.item() if isinstance(value, np.generic) else value


def validate_chunk(
    model: LoadedModel, chunk: pd.DataFrame, serving: ServingConfig
) -> tuple[dict[str, np.ndarray], dict[int, str]]:
    """Feature columns ready for the engine, and the reason for each refused row (by position)."""
    columns: dict[str, np.ndarray] = {}
    bad_any = np.zeros(len(chunk), dtype=bool)
    first_bad: dict[int, str] = {}
    for spec in model.card.feature_schema.features:
        if spec.date is not None:
            values, bad = _dates(chunk[spec.name], spec.date.format)
        elif spec.kind == "numeric":
            values, bad = _numeric(chunk[spec.name])
        else:
            values, bad = _categorical(chunk[spec.name], spec, serving)
        columns[spec.name] = values
        for pos in np.flatnonzero(bad & ~bad_any):
            first_bad[int(pos)] = spec.name
        bad_any |= bad
    rejected: dict[int, str] = {}
    if first_bad:
        names = model.card.feature_schema.names
        for pos in sorted(first_bad):
            row = {n: _plain(chunk[n].iat[pos]) for n in names}
            rejected[pos] = _reason(model, row, f"column {first_bad[pos]!r}: invalid value")
    return columns, rejected


def _features(columns: dict[str, np.ndarray], names: list[str]) -> list[dict[str, Any]]:
    """One dict per row, as /predict logs a validated record (None for missing)."""
    lists = []
    for name in names:
        values = columns[name]
        if values.dtype == np.float64:
            obj = values.astype(object)
            obj[np.isnan(values)] = None
            lists.append(obj.tolist())
        else:
            lists.append(values.tolist())
    # map() over zip keeps the per-row work in C: this runs for every row of the input.
    return list(map(dict, map(zip, repeat(names), zip(*lists, strict=True))))


def _unknown(model: LoadedModel, columns: dict[str, np.ndarray], n: int) -> list[list[str]]:
    """Per row, the categorical fields holding a category training never saw."""
    found: list[list[str]] = [[] for _ in range(n)]
    for name, cats in model.categories.items():
        values = pd.Series(columns[name], dtype=object)
        mask = values.notna().to_numpy() & ~values.isin(list(cats)).to_numpy()
        for pos in np.flatnonzero(mask):
            found[pos].append(name)
    return found


def score_chunk(
    model: LoadedModel,
    chunk: pd.DataFrame,
    serving: ServingConfig,
    *,
    id_column: str | None,
    request_id: str,
    log: bool,
) -> ChunkResult:
    """Validate and predict one chunk; refused rows are left out of the table and the log."""
    started = time.perf_counter()
    columns, rejected = validate_chunk(model, chunk, serving)
    masks = model.ranges.masks(columns) if model.ranges is not None else {}
    if masks and serving.out_of_range == "reject":
        names = model.card.feature_schema.names
        for pos in np.flatnonzero(np.logical_or.reduce(list(masks.values()))):
            if int(pos) not in rejected:
                fields = [name for name, mask in masks.items() if mask[pos]]
                row = {n: _plain(columns[n][pos]) for n in names}
                rejected[int(pos)] = (
                    f"outside what training saw: {model.ranges.describe(row, fields)} "  # type: ignore[union-attr]
                    "(serving.out_of_range is reject)"
                )
    keep = np.ones(len(chunk), dtype=bool)
    if rejected:
        keep[list(rejected)] = False
        columns = {k: v[keep] for k, v in columns.items()}
    n = int(keep.sum())
    task = model.card.task
    if n:
        out = model.engine.predict_columns(columns)
        predicted = np.asarray(out.predicted)
        proba = out.proba
    else:
        predicted = np.array([], dtype=object)
        proba = None
    ids = prediction_ids(n) if n else []
    table: dict[str, Any] = {"prediction_id": pa.array(ids, pa.string())}
    if task == "regression":
        table["prediction"] = pa.array(predicted.astype(np.float64), pa.float64())
    else:
        table["prediction"] = pa.array(predicted.astype(str).tolist(), pa.string())
    classes = model.card.classes or []
    confidence: list[float] = []
    if task == "binary":
        table["probability"] = pa.array(
            np.asarray(proba if proba is not None else [], np.float64), pa.float64()
        )
    elif task == "multiclass":
        matrix = np.asarray(proba if proba is not None else np.empty((0, len(classes))))
        for k, cls in enumerate(classes):
            table[f"probability_{cls}"] = pa.array(matrix[:, k], pa.float64())
    if task != "regression":
        # The decision scale /predict answers with (domain/decision.py).
        confidence, risks = (
            answer_scale(proba, task, model.card.threshold, serving.risk_levels)
            if proba is not None and n
            else ([], [])
        )
        table["confidence"] = pa.array(confidence, pa.float64())
        table["risk_level"] = pa.array(risks, pa.string())
    outside = [[] for _ in range(n)] if model.ranges is None else model.ranges.columns(columns, n)
    table["out_of_range"] = pa.array([",".join(f) for f in outside], pa.string())
    if id_column is not None:
        ids_col = chunk[id_column][keep]
        table[id_column] = pa.Array.from_pandas(ids_col.astype(object).where(ids_col.notna(), None))
    records: list[PredictionRecord] = []
    if log and n:
        # Logged with each row's key (--id-column, else the key column /predict logs), so
        # `pgmlops feedback --key` can join labels to batch predictions too.
        key_col = id_column or model.card.feature_schema.key_column(serving.key_column)
        keys = None
        if key_col is not None and key_col in chunk.columns:
            keys = [None if pd.isna(v) else key_text(v) for v in chunk[key_col][keep].tolist()]
            too_long = next((k for k in keys if k is not None and len(k) > MAX_KEY_LENGTH), None)
            if too_long is not None:
                raise ValidationError(
                    f"column {key_col!r}: key {too_long[:40]!r}... is longer than the "
                    f"{MAX_KEY_LENGTH} characters the prediction log keeps"
                )
        records = _records(
            model, serving, columns, predicted, proba, confidence, ids, request_id, started, keys
        )
        for record, fields in zip(records, outside, strict=True):
            if fields:
                record.output = {**(record.output or {}), "out_of_range": fields}
    return ChunkResult(pa.table(table), records, rejected)


def _records(
    model: LoadedModel,
    serving: ServingConfig,
    columns: dict[str, np.ndarray],
    predicted: np.ndarray,
    proba: np.ndarray | None,
    confidence: list[float],
    ids: list[str],
    request_id: str,
    started: float,
    keys: list[str | None] | None = None,
) -> list[PredictionRecord]:
    """The prediction-log rows /predict would write for these records."""
    n = len(ids)
    task = model.card.task
    features = _features(columns, model.card.feature_schema.names)
    # As /predict logs them: the label's text, or str() of the regression value.
    labels = (
        predicted.astype(str).tolist()
        if task != "regression"
        else [str(v) for v in predicted.tolist()]
    )
    probability: list[Any] = [None] * n
    logged: list[Any] = confidence or [None] * n
    outputs: list[Any] = [None] * n
    if task == "binary" and proba is not None:
        probability = proba.tolist()
    elif task == "multiclass" and proba is not None:
        classes = model.card.classes or []
        outputs = [{"probabilities": dict(zip(classes, p, strict=True))} for p in proba.tolist()]
    if serving.unknown_categories == "flag":
        for k, unknown in enumerate(_unknown(model, columns, n)):
            if unknown:
                outputs[k] = {**(outputs[k] or {}), "unknown_categories": unknown}
    # Each row carries its share of the chunk's time: a batch has no per-request latency.
    latency_ms = (time.perf_counter() - started) * 1000.0 / max(n, 1)
    now = datetime.now(UTC)
    return list(
        map(
            PredictionRecord,
            ids,
            repeat(model.name, n),
            repeat(model.version, n),
            repeat(now, n),
            features,
            labels,
            probability,
            logged,
            outputs,
            repeat(latency_ms, n),
            repeat(request_id, n),
            keys if keys is not None else repeat(None, n),
        )
    )
