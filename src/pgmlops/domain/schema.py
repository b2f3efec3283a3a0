"""Feature schema: what columns a model takes, of which type, in which range, inferred once."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field, model_validator

from pgmlops.domain.kinds import Kind, Task
from pgmlops.errors import DataError

MISSING_CATEGORY = "__missing__"
# A text column converts to numbers when at least this share of its non-blank cells parse.
_NUMERIC_TEXT_SHARE = 0.98
# A numeric target with at most this many distinct values is treated as classes.
_MAX_CLASSES = 20
_MAX_CATEGORIES = 200
# The largest finite float32: serving may compute in float32, so inputs must fit it.
FLOAT32_MAX = float(np.finfo(np.float32).max)


class FeatureSpec(BaseModel):
    """One input column as the model saw it at training time."""

    name: str
    kind: Kind
    categories: list[str] | None = None
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    missing_rate: float = 0.0


# Why training left a column out, for machines (`dropped` says it in words).
DropKind = Literal["requested", "empty", "constant", "identifier", "high_cardinality"]
_KIND_OF_REASON: tuple[tuple[str, DropKind], ...] = (
    ("dropped by request", "requested"),
    ("all values are empty", "empty"),
    ("constant", "constant"),
    ("identifier", "identifier"),
    ("high-cardinality", "high_cardinality"),
)


def _kind_of_reason(reason: str) -> DropKind:
    for prefix, kind in _KIND_OF_REASON:
        if reason.startswith(prefix):
            return kind
    return "requested"


class FeatureSchema(BaseModel):
    """The whole input contract of a model version."""

    task: Task
    target: str
    features: list[FeatureSpec]
    classes: list[str] | None = None
    dropped: dict[str, str] = Field(default_factory=dict)
    # Same keys and order as `dropped` (the dataset's column order).
    dropped_kinds: dict[str, DropKind] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _kinds_for_every_dropped_column(self) -> FeatureSchema:
        # Cards written before the kinds were recorded hold only the reasons, in words that
        # this module wrote; read the kind back from them.
        if set(self.dropped_kinds) != set(self.dropped):
            self.dropped_kinds = {
                name: self.dropped_kinds.get(name) or _kind_of_reason(why)
                for name, why in self.dropped.items()
            }
        return self

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def identifiers(self) -> list[str]:
        """Columns left out as identifiers, in the dataset's order."""
        return [name for name, kind in self.dropped_kinds.items() if kind == "identifier"]

    def keeping_left_out(self, earlier: FeatureSchema) -> FeatureSchema:
        """This schema plus the columns `earlier` left out that this data lacks, those first.

        A retrain's frame holds only the features: the base's identifier must stay known.
        """
        present = {*self.names, *self.dropped, self.target}
        carried = [name for name in earlier.dropped if name not in present]
        return self.model_copy(
            update={
                "dropped": {**{n: earlier.dropped[n] for n in carried}, **self.dropped},
                "dropped_kinds": {
                    **{n: earlier.dropped_kinds[n] for n in carried},
                    **self.dropped_kinds,
                },
            }
        )

    def key_column(self, configured: str | None = None) -> str | None:
        """The column that keys a logged prediction: the setting, else the first identifier."""
        if configured:
            return configured
        return next(iter(self.identifiers), None)

    @property
    def numeric(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "numeric"]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "categorical"]

    def feature(self, name: str) -> FeatureSpec:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)


def key_text(value: object) -> str | None:
    """A key as the prediction log stores it: whole numbers as digits (7.0 is "7"), text stripped.

    None for no value or blank text.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float):
        if not value.is_integer():
            return repr(value)
        value = int(value)
    text = str(value).strip()
    return text or None


def _blank_to_nan(col: pd.Series) -> pd.Series:
    as_text = col.astype("string").str.strip()
    return as_text.mask(as_text == "", pd.NA)


def _as_numeric_text(col: pd.Series) -> pd.Series | None:
    """Return the column as floats when it is numbers stored as text (blanks allowed)."""
    stripped = _blank_to_nan(col).dropna()
    if stripped.empty:
        return None
    parsed = pd.to_numeric(stripped, errors="coerce")
    if parsed.notna().mean() < _NUMERIC_TEXT_SHARE:
        return None
    bad = stripped[parsed.isna()]
    if not bad.empty:
        # Nearly all numbers with a few words is a data error, not a categorical column.
        raise DataError(
            f"column {col.name!r} is numeric but {len(bad)} row(s) hold text, "
            f"e.g. {bad.iloc[0]!r} at row {bad.index[0]}; fix or blank those cells, or --drop it"
        )
    return pd.to_numeric(_blank_to_nan(col), errors="coerce").astype("float64")


def as_float32_grid(values: pd.Series) -> pd.Series:
    """Numbers rounded to float32 precision, stored as float64.

    Serving may run the ONNX copy, which computes in float32; rounding every numeric input at
    this boundary (training, promotion and serving alike) means the pipeline and the ONNX copy
    see the very same numbers, so tree splits cannot fall differently between them.
    """
    return values.astype("float64").astype("float32").astype("float64")


def _is_numeric(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def infer_task(y: pd.Series) -> Task:
    """Binary for two classes, multiclass for a few, regression for many numeric values."""
    values = y.dropna()
    n_unique = values.nunique()
    if n_unique < 2:
        raise DataError(
            f"target column {y.name!r} has {n_unique} distinct value(s); it needs at least 2"
        )
    if n_unique == 2:
        return "binary"
    if _is_numeric(values):
        integral = bool(np.all(np.mod(values.to_numpy(dtype=float), 1) == 0))
        if integral and n_unique <= _MAX_CLASSES:
            return "multiclass"
        return "regression"
    return "multiclass"


def prepare_training_frame(
    df: pd.DataFrame,
    target: str,
    task: Task | None = None,
    drop: list[str] | tuple[str, ...] = (),
) -> tuple[pd.DataFrame, pd.Series, FeatureSchema]:
    """Clean a raw frame into (features, target, schema); unusable columns are dropped."""
    if df.empty or len(df.columns) == 0:
        raise DataError("the dataset is empty: it has no rows")
    if target not in df.columns:
        shown = ", ".join(map(str, list(df.columns)[:12]))
        raise DataError(f"target column {target!r} is not in the dataset (columns: {shown})")
    unknown = [c for c in drop if c not in df.columns]
    if unknown:
        raise DataError(f"--drop names columns that are not in the dataset: {', '.join(unknown)}")
    df = df.copy()
    df.columns = [str(c) for c in df.columns]
    y_raw = df.pop(target)
    keep = y_raw.notna() & (y_raw.astype("string").str.strip() != "")
    if not keep.all():
        df, y_raw = df[keep.to_numpy()], y_raw[keep]
    if df.empty:
        raise DataError(f"the dataset has no rows with a value in target column {target!r}")
    numeric_target = _as_numeric_text(y_raw) if y_raw.dtype == object else None
    if numeric_target is not None:
        y_raw = numeric_target
    task = task or infer_task(y_raw)
    if task == "regression":
        if not _is_numeric(y_raw):
            raise DataError(f"target column {target!r} is not numeric; regression needs numbers")
        y = y_raw.astype("float64")
        classes = None
    else:
        y = _labels_as_text(y_raw)
        classes = sorted(y.unique().tolist())
        if len(classes) < 2:
            raise DataError(f"target column {target!r} has one class ({classes[0]!r}); need 2+")
        if task == "binary" and len(classes) != 2:
            raise DataError(f"task 'binary' needs 2 classes, target has {len(classes)}")
    dropped: dict[str, str] = {c: "dropped by request (--drop)" for c in drop}
    kinds: dict[str, DropKind] = dict.fromkeys(drop, "requested")

    def leave_out(name: str, kind: DropKind, why: str) -> None:
        dropped[name], kinds[name] = why, kind

    df = df.drop(columns=list(drop))
    features: list[FeatureSpec] = []
    out: dict[str, pd.Series] = {}
    n = len(df)
    for name in df.columns:
        col = df[name]
        if not _is_numeric(col):
            converted = _as_numeric_text(col)
            if converted is not None:
                col = converted
        if col.isna().all():
            leave_out(name, "empty", "all values are empty")
            continue
        if col.nunique(dropna=False) <= 1:
            leave_out(name, "constant", "constant: a single value in every row")
            continue
        if _is_numeric(col):
            raw = col.astype("float64")
            if n > 50 and raw.nunique() == n and _looks_like_identifier(raw):
                leave_out(name, "identifier", "identifier: a distinct integer in every row")
                continue
            values = as_float32_grid(raw)
            out[name] = values
            features.append(_numeric_spec(name, values))
        else:
            text = col.astype("string")
            if n > 50 and text.nunique() == n:
                leave_out(name, "identifier", "identifier: a distinct value in every row")
                continue
            cats = text.fillna(MISSING_CATEGORY).astype(object)
            uniques = sorted(str(v) for v in cats.unique())
            if len(uniques) > _MAX_CATEGORIES and len(uniques) > 0.5 * n:
                why = f"high-cardinality text ({len(uniques)} distinct values)"
                leave_out(name, "high_cardinality", why)
                continue
            out[name] = cats
            features.append(
                FeatureSpec(
                    name=name,
                    kind="categorical",
                    categories=uniques,
                    missing_rate=float(text.isna().mean()),
                )
            )
    if not features:
        raise DataError("no usable feature columns remain after dropping: " + _fmt(dropped))
    x = pd.DataFrame(out, index=df.index)
    schema = FeatureSchema(
        task=task,
        target=target,
        features=features,
        classes=classes,
        dropped=dropped,
        dropped_kinds=kinds,
    )
    return x.reset_index(drop=True), y.reset_index(drop=True), schema


def _fmt(dropped: dict[str, str]) -> str:
    return "; ".join(f"{k} ({v})" for k, v in dropped.items()) or "none"


def _looks_like_identifier(values: pd.Series) -> bool:
    arr = values.to_numpy()
    return bool(np.all(np.mod(arr, 1) == 0))


def _labels_as_text(y: pd.Series) -> pd.Series:
    if _is_numeric(y) and np.all(np.mod(y.to_numpy(dtype=float), 1) == 0):
        return y.astype("int64").astype(str)
    return y.astype(str).str.strip()


def _numeric_spec(name: str, values: pd.Series) -> FeatureSpec:
    finite = values.dropna()
    return FeatureSpec(
        name=name,
        kind="numeric",
        min=float(finite.min()),
        max=float(finite.max()),
        mean=float(finite.mean()),
        std=float(finite.std(ddof=0)),
        missing_rate=float(values.isna().mean()),
    )


def coerce_features(df: pd.DataFrame, schema: FeatureSchema) -> pd.DataFrame:
    """Shape new rows exactly as training saw them: same columns, order, types, missing tokens."""
    missing = [n for n in schema.names if n not in df.columns]
    if missing:
        raise DataError(f"missing feature column(s): {', '.join(missing)}")
    out: dict[str, pd.Series] = {}
    for spec in schema.features:
        col = df[spec.name]
        if spec.kind == "numeric":
            if not _is_numeric(col):
                parsed = pd.to_numeric(_blank_to_nan(col), errors="coerce")
                bad = parsed.isna() & _blank_to_nan(col).notna()
                if bad.any():
                    example = col[bad].iloc[0]
                    raise DataError(
                        f"column {spec.name!r} must be numeric; found text {example!r} "
                        f"in {int(bad.sum())} row(s)"
                    )
                col = parsed
            out[spec.name] = as_float32_grid(col)
        else:
            text = col.astype("string")
            out[spec.name] = text.fillna(MISSING_CATEGORY).astype(object)
    return pd.DataFrame(out, index=df.index)
