"""Assemble a retraining set: recorded source + labelled feedback + live rows, validated.

Every row is checked against the model's feature schema and label type; rows that fail are
counted per reason and reported, never used.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pgmlops.domain.categories import canonical_series
from pgmlops.domain.dates import as_days, days_as_text
from pgmlops.domain.registry.records import ModelVersion
from pgmlops.domain.schema import FeatureSchema
from pgmlops.errors import ConfigError, DataError
from pgmlops.services.context import Context
from pgmlops.services.datasets import Dataset, fingerprint, load_source
from pgmlops.services.retraining.live_source import LiveRead, LiveSource
from pgmlops.store.prediction_log.labels import LabelStore

Progress = Any


@dataclass
class PartReport:
    """How many rows one part offered, how many were usable, and why the others were not."""

    rows: int = 0
    used: int = 0
    bad: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "used": self.used, "bad": self.bad, "reasons": self.reasons}


@dataclass
class TrainingData:
    """The combined frame (schema features + target) and where each row came from."""

    frame: Any  # a pandas DataFrame; a Dask DataFrame under training.engine dask
    rows: int
    sha256: str
    parts: dict[str, PartReport]
    source: dict[str, Any]
    source_sha256: str | None
    source_problem: str | None
    live: LiveRead | None
    live_consumed: pd.DataFrame | None

    @property
    def bad_rows(self) -> int:
        return sum(p.bad for p in self.parts.values())

    def summary(self) -> dict[str, Any]:
        return {
            "training_rows": self.rows,
            "bad_rows": self.bad_rows,
            "parts": {k: v.to_dict() for k, v in self.parts.items()},
            "source_problem": self.source_problem,
            "sha256": self.sha256,
        }


def _label_checker(schema: FeatureSchema) -> Any:
    if schema.task == "regression":

        def as_number(value: Any) -> tuple[Any, str | None]:
            try:
                number = float(str(value).strip())
            except ValueError:
                return None, "label is not a number"
            return (number, None) if math.isfinite(number) else (None, "label is not finite")

        return as_number
    classes = set(schema.classes or [])

    def as_class(value: Any) -> tuple[Any, str | None]:
        text = str(value).strip()
        if text in classes:
            return text, None
        try:
            number = float(text)
        except ValueError:
            return None, "label is not one of the classes " + ", ".join(sorted(classes))
        if math.isfinite(number) and number.is_integer() and str(int(number)) in classes:
            return str(int(number)), None
        return None, "label is not one of the classes " + ", ".join(sorted(classes))

    return as_class


def _blank(series: pd.Series) -> pd.Series:
    text = series.astype("string").str.strip()
    return series.isna() | (text == "").fillna(True)


def _check_labels(
    labels: pd.Series, schema: FeatureSchema, reasons: Counter[str]
) -> tuple[list[Any], np.ndarray]:
    """Canonical labels and a mask of rows whose label is missing or of the wrong type."""
    check = _label_checker(schema)
    missing = _blank(labels).to_numpy()
    reasons["label is missing"] += int(missing.sum())
    verdicts: dict[Any, tuple[Any, str | None]] = {}
    clean: list[Any] = []
    bad = missing.copy()
    for i, value in enumerate(labels.to_numpy()):
        if missing[i]:
            clean.append(None)
            continue
        key = (type(value), value)
        if key not in verdicts:
            verdicts[key] = check(value)
        label, why = verdicts[key]
        if why:
            reasons[why] += 1
            bad[i] = True
        clean.append(label)
    return clean, bad


def validate_rows(
    frame: pd.DataFrame, schema: FeatureSchema, target: str
) -> tuple[pd.DataFrame, PartReport]:
    """Keep rows whose label has the model's type and whose numeric features parse."""
    report = PartReport(rows=len(frame))
    if frame.empty:
        return pd.DataFrame(columns=[*schema.names, target]), report
    frame = frame.reset_index(drop=True)
    n = len(frame)
    reasons: Counter[str] = Counter()
    labels = frame[target] if target in frame.columns else pd.Series([None] * n)
    clean_labels, bad = _check_labels(labels, schema, reasons)
    out: dict[str, Any] = {}
    for spec in schema.features:
        col = frame[spec.name] if spec.name in frame.columns else pd.Series([None] * n)
        if spec.date is not None:
            # Logged rows hold days since 1970, a recorded file holds the dates as text.
            days = as_days(col, spec.date.format)
            wrong = (days.isna() & ~_blank(col)).to_numpy()
            if wrong.any():
                reasons[f"feature {spec.name!r} is not a date"] += int((wrong & ~bad).sum())
                bad |= wrong
            # As text in the training format: the retrained version reads a date column again.
            out[spec.name] = days_as_text(days, spec.date.format)
        elif spec.kind == "numeric":
            if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
                number = col.astype("float64")
            else:
                parsed = pd.to_numeric(col.astype("string").str.strip(), errors="coerce")
                number = parsed.astype("float64")
            number = number.where(np.isfinite(number))
            wrong = (number.isna() & ~_blank(col)).to_numpy()
            if wrong.any():
                reasons[f"feature {spec.name!r} is not a finite number"] += int(
                    (wrong & ~bad).sum()
                )
                bad |= wrong
            out[spec.name] = number
        else:
            canonical = spec.canonical()
            if canonical is not None:
                col = canonical_series(col, canonical)
            text = col.astype("string").str.strip()
            present = (text.notna() & (text != "")).fillna(False).to_numpy(dtype=bool)
            out[spec.name] = text.astype(object).where(present, None)
    out[target] = clean_labels
    good = pd.DataFrame(out)[~bad].reset_index(drop=True)
    if schema.task == "regression":
        good[target] = good[target].astype("float64")
    report.used, report.bad = len(good), int(bad.sum())
    report.reasons = {k: v for k, v in reasons.items() if v}
    return good, report


@dataclass(frozen=True)
class SourcePart:
    """The recorded source's rows that passed validation, and the source's own sha256."""

    good: Any  # a pandas DataFrame, or a Dask DataFrame read in partitions
    report: PartReport
    sha256: str


def check_columns(columns: list[Any], base: ModelVersion) -> None:
    """DataError when the source lost a column the version was trained on."""
    wanted = [*base.card.feature_schema.names, base.card.target]
    absent = [c for c in wanted if c not in columns]
    if absent:
        raise DataError(
            f"training source of {base.model_name} v{base.version} no longer has "
            f"column(s) {', '.join(absent)}"
        )


def unreadable(base: ModelVersion, exc: Exception) -> str:
    return f"training source of {base.model_name} v{base.version} cannot be read: {exc}"


class LocalRows:
    """Training rows held in this process (the default engine)."""

    def read(self, base: ModelVersion) -> tuple[SourcePart | None, str | None]:
        """The recorded source read again and validated, or why it cannot be read."""
        try:
            raw = load_source(base.source)
        except (DataError, ConfigError, KeyError) as exc:
            return None, unreadable(base, exc)
        check_columns(list(raw.frame.columns), base)
        card = base.card
        good, report = validate_rows(raw.frame, card.feature_schema, card.target)
        return SourcePart(good, report, raw.sha256), None

    def combine(self, source: Any, pieces: list[pd.DataFrame], columns: list[str]) -> tuple:
        """(frame, sha256, rows) of the source's rows followed by the other parts'."""
        frame = combine_frames([source, *pieces], columns)
        return frame, fingerprint(frame), len(frame)


def _read_source(version: ModelVersion, rows: Any) -> tuple[SourcePart | None, str | None]:
    source = version.source
    if not source or source.get("kind") == "feedback":
        return None, f"{version.model_name} v{version.version} records no training file or query"
    return rows.read(version)


def _feedback_frame(ctx: Context, model_name: str, target: str) -> pd.DataFrame:
    rows = LabelStore(ctx.db).labelled_rows(model_name)
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame.from_records([r.features for r in rows])
    frame[target] = [r.label for r in rows]
    return frame


def combine_frames(parts: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    present = [p[columns] for p in parts if not p.empty]
    if not present:
        return pd.DataFrame(columns=columns)
    return pd.concat(present, ignore_index=True)


def assemble(
    ctx: Context,
    base: ModelVersion,
    *,
    allow_feedback_only: bool,
    progress: Progress | None = None,
    rows: Any = None,
) -> TrainingData:
    """Read, validate and combine every part; raise if the source is gone and not allowed.

    `rows`: where the source is read and the parts combined: LocalRows (the default), or
    services/training/dask's partitions (training.engine dask).
    """
    step = progress or (lambda _msg: None)
    rows = rows or LocalRows()
    card = base.card
    schema, target = card.feature_schema, card.target
    columns = [*schema.names, target]
    parts: dict[str, PartReport] = {}
    step("reading the recorded training source")
    raw, problem = _read_source(base, rows)
    if problem and not allow_feedback_only:
        raise DataError(
            f"{problem}; allow feedback-only retraining to retrain from feedback and live rows"
        )
    source_good = pd.DataFrame(columns=columns)
    if raw is not None:
        source_good, parts["source"] = raw.good, raw.report
    step("joining labelled feedback from the prediction log")
    feedback_good, parts["feedback"] = validate_rows(
        _feedback_frame(ctx, base.model_name, target), schema, target
    )
    live_read: LiveRead | None = None
    live_consumed: pd.DataFrame | None = None
    pieces = [feedback_good]
    live_cfg = ctx.settings.retraining.live_source
    if live_cfg is not None:
        step("reading new rows from the live source")
        live_read = LiveSource(ctx, base.model_name, live_cfg).read()
        new = live_read.new.rename(columns={(live_cfg.label_column or target): target})
        new_good, parts["live_new"] = validate_rows(new, schema, target)
        previous = len(live_read.previous)
        parts["live_previous"] = PartReport(rows=previous, used=previous)
        live_consumed = combine_frames([live_read.previous, new_good], columns)
        pieces.append(live_consumed)
    frame, sha256, n_rows = rows.combine(source_good, pieces, columns)
    if n_rows == 0:
        raise DataError(
            f"no usable training rows for {base.model_name}: "
            + ", ".join(f"{k} {v.used} of {v.rows}" for k, v in parts.items())
        )
    recorded = dict(base.source or {"kind": "feedback", "path": "(labelled feedback)"})
    recorded.pop("retrain", None)
    return TrainingData(
        frame=frame,
        rows=n_rows,
        sha256=sha256,
        parts=parts,
        source=recorded,
        source_sha256=raw.sha256 if raw is not None else None,
        source_problem=problem,
        live=live_read,
        live_consumed=live_consumed,
    )


def as_dataset(data: TrainingData, lineage: dict[str, Any]) -> Dataset:
    """The frame as a Dataset whose recorded source points at the original source again."""
    return Dataset(data.frame, {**data.source, "retrain": lineage}, data.sha256)


def nothing_new(data: TrainingData, base: ModelVersion) -> bool:
    """True when these rows are exactly what the base version was trained on.

    A retrained base recorded the combined rows' fingerprint; a base trained by `pgmlops
    train` recorded its file's, which matches when no feedback or live rows were added.
    """
    trained_on = base.card.data.sha256
    if data.sha256 == trained_on:
        return True
    extra = sum(p.used for name, p in data.parts.items() if name != "source")
    return extra == 0 and data.source_sha256 == trained_on
