"""Read a raw training table into features, target and the feature schema, once."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pgmlops.domain import categories as cat
from pgmlops.domain.dates import ISO, DateSpec, as_days, day_text, detect_format
from pgmlops.domain.numeric_text import as_numeric_text, numeric_looking_example, rows_and_values
from pgmlops.domain.schema import (
    MISSING_CATEGORY,
    DropKind,
    FeatureSchema,
    FeatureSpec,
    ReadOptions,
    Task,
    as_float32_grid,
    blank_to_nan,
)
from pgmlops.domain.schema import is_number_column as _is_numeric
from pgmlops.errors import DataError, Note

# A numeric target with at most this many distinct values is treated as classes.
_MAX_CLASSES = 20
# More distinct values than this, in more than half the rows: free text, left out.
_MAX_CATEGORIES = 200
# The parameters a left-out column's reason may name ("dropped by request (drop=)").
LEFT_OUT_PARAMS = ("drop", "decimal")


def left_out_notes(schema: FeatureSchema) -> list[Note]:
    """One note for each column training left out, with its reason."""
    return [
        Note(f"column {c!r} left out: {why}", params=LEFT_OUT_PARAMS)
        for c, why in schema.dropped.items()
    ]


def _is_count(y: pd.Series) -> bool:
    """Whole numbers: the target may be a count or an amount rather than classes."""
    return _is_numeric(y) and bool(np.all(np.mod(y.dropna().to_numpy(dtype=float), 1) == 0))


def check_class_rows(target: str, y: pd.Series, y_raw: pd.Series, least: int) -> None:
    """Refuse a class with fewer than `least` rows, naming its rows; hint at regression."""
    counts = y.value_counts()
    rare = counts[counts < least]
    if rare.empty:
        return
    cells = y[y.isin(rare.index).to_numpy()]
    hint = (
        "; the target holds whole numbers: if they are counts or amounts, train with "
        "task='regression'"
        if _is_count(y_raw)
        else "; fix those labels, group rare classes together, or leave those rows out"
    )
    raise DataError(
        f"target column {target!r} has {len(rare)} class(es) with fewer than {least} rows "
        f"(one each for training, validation and holdout): {rows_and_values(cells)}{hint}",
        params=("task",),
    )


# A whole-number target with this many values, a third of them rare, may be a count.
_COUNT_VALUES = 5
_RARE_ROWS = 10


def _hint_counts(target: str, y: pd.Series, y_raw: pd.Series, notes: list[str]) -> None:
    """A note suggesting regression when whole-number classes are many and mostly rare."""
    counts = y.value_counts()
    if len(counts) < _COUNT_VALUES or not _is_count(y_raw):
        return
    rare = int((counts < max(_RARE_ROWS, 0.01 * len(y))).sum())
    if rare * 3 < len(counts):
        return
    low, high = int(y_raw.min()), int(y_raw.max())
    notes.append(
        Note(
            f"target column {target!r} holds whole numbers ({low} to {high}), {rare} of its "
            f"{len(counts)} values in few rows: trained as classes; if they are counts or "
            "amounts, train with task='regression'",
            params=("task",),
        )
    )


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
    options: ReadOptions | None = None,
    notes: list[str] | None = None,
    min_class_rows: int = 0,
) -> tuple[pd.DataFrame, pd.Series, FeatureSchema]:
    """Clean a raw frame into (features, target, schema); unusable columns are dropped.

    `min_class_rows`: the fewest rows a class may have (the split's need; 0 when the frame
    is only a sample, as under training.engine dask).

    What the user should know (rows without a target, merged spellings, pooled values, a
    guessed date order) is appended to `notes`.
    """
    opts = options or ReadOptions()
    notes = notes if notes is not None else []
    if df.empty or len(df.columns) == 0:
        raise DataError("the dataset is empty: it has no rows")
    if target not in df.columns:
        shown = ", ".join(map(str, list(df.columns)[:12]))
        hint = ""
        if len(df.columns) == 1 and any(c in str(df.columns[0]) for c in ";\t|,"):
            hint = "; the file's columns were not split: give sep, e.g. ';'"
        raise DataError(
            f"target column {target!r} is not in the dataset (columns: {shown}){hint}",
            params=("sep",),
        )
    unknown = [c for c in drop if c not in df.columns]
    if unknown:
        raise DataError(
            f"drop names columns that are not in the dataset: {', '.join(unknown)}",
            params=("drop",),
        )
    # Row positions from 0 as the table was read, so errors can name rows.
    df = df.reset_index(drop=True)
    df.columns = [str(c) for c in df.columns]
    y_raw = df.pop(target)
    keep = y_raw.notna() & (y_raw.astype("string").str.strip() != "")
    if not keep.all():
        df, y_raw = df[keep.to_numpy()], y_raw[keep]
        if not df.empty:
            notes.append(
                f"{int((~keep).sum()):,} row(s) dropped: target column {target!r} is empty there"
            )
    if df.empty:
        raise DataError(f"the dataset has no rows with a value in target column {target!r}")
    numeric_target = None if _is_numeric(y_raw) else as_numeric_text(y_raw, target=True)
    if numeric_target is not None:
        y_raw = numeric_target
    inferred = task is None
    task = task or infer_task(y_raw)
    if task == "regression":
        if not _is_numeric(y_raw):
            parsed = pd.to_numeric(blank_to_nan(y_raw), errors="coerce")
            bad = y_raw[parsed.isna().to_numpy()]
            raise DataError(
                f"target column {target!r} is not numeric; regression needs numbers, "
                f"{len(bad)} row(s) are not: {rows_and_values(bad.astype(str))}"
            )
        y = y_raw.astype("float64")
        classes = None
    else:
        y = _labels_as_text(y_raw)
        classes = sorted(y.unique().tolist())
        if len(classes) < 2:
            raise DataError(f"target column {target!r} has one class ({classes[0]!r}); need 2+")
        if task == "binary" and len(classes) != 2:
            raise DataError(f"task 'binary' needs 2 classes, target has {len(classes)}")
        _check_class_count(target, y_raw, len(classes), opts.max_classes)
        if min_class_rows:
            check_class_rows(target, y, y_raw, min_class_rows)
        if inferred:
            _hint_counts(target, y, y_raw, notes)
    dropped: dict[str, str] = {c: "dropped by request (drop=)" for c in drop}
    kinds: dict[str, DropKind] = dict.fromkeys(drop, "requested")

    def leave_out(name: str, kind: DropKind, why: str) -> None:
        dropped[name], kinds[name] = why, kind

    df = df.drop(columns=list(drop))
    features: list[FeatureSpec] = []
    out: dict[str, pd.Series] = {}
    n = len(df)
    for name in df.columns:
        col = df[name]
        boolean = not _is_numeric(col) and cat.looks_boolean(col)
        if boolean:
            col = cat.as_boolean_text(col)
        elif not _is_numeric(col):
            converted = as_numeric_text(col)
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
            continue
        found = None if boolean else _date_format(col, opts.dayfirst)
        if found is not None:
            if opts.dates == "drop":
                leave_out(name, "date", "date: left out by training.dates: drop")
                continue
            spec, values = _date_spec(name, col, *found, notes)
            out[name] = values
            features.append(spec)
            continue
        example = None if boolean else numeric_looking_example(col)
        # Said again in a left-out column's reason: an error may be all the user sees.
        looks = "" if example is None else f"; it looks numeric (e.g. {example!r}): decimal=?"
        if example is not None:
            notes.append(
                Note(
                    f"column {name!r} looks numeric (e.g. {example!r}) but is read as text: "
                    "check decimal= and sep=, or clean the values",
                    params=("decimal", "sep"),
                )
            )
        text = col.astype("string")
        text, folded = (
            (text, False)
            if boolean
            else cat.tidy_text(
                name,
                text,
                normalize=opts.normalize_categories,
                max_categories=opts.max_categories,
                notes=notes,
            )
        )
        if n > 50 and text.nunique() == n:
            leave_out(name, "identifier", "identifier: a distinct value in every row" + looks)
            continue
        distinct = text.nunique(dropna=True)
        if distinct > _MAX_CATEGORIES and distinct > 0.5 * n:
            why = f"high-cardinality text ({distinct} distinct values){looks}"
            leave_out(name, "high_cardinality", why)
            continue
        text, pooled = cat.cap_categories(
            name, text, max_categories=opts.max_categories, notes=notes
        )
        cats = text.fillna(MISSING_CATEGORY).astype(object)
        out[name] = cats
        features.append(
            FeatureSpec(
                name=name,
                kind="categorical",
                categories=sorted(str(v) for v in cats.unique()),
                missing_rate=float(text.isna().mean()),
                folded=folded,
                boolean=boolean,
                pooled=pooled,
            )
        )
    if not features:
        raise DataError(
            "no usable feature columns remain after dropping: " + _fmt(dropped),
            params=LEFT_OUT_PARAMS,
        )
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


def _check_class_count(target: str, y_raw: pd.Series, count: int, limit: int) -> None:
    """Refuse a target with more classes than a classifier can learn from the rows at hand."""
    if count <= limit:
        return
    hint = (
        "it holds numbers: train with task='regression'"
        if _is_numeric(y_raw)
        else "group rare classes together, or pick another target"
    )
    raise DataError(
        f"target column {target!r} has {count} classes, more than training.max_classes "
        f"({limit}); {hint} (or raise training.max_classes)",
        params=("task",),
    )


def _date_format(col: pd.Series, dayfirst: bool) -> tuple[str, bool] | None:
    if pd.api.types.is_datetime64_any_dtype(col):
        return ISO, False
    return detect_format(col, dayfirst=dayfirst)


def _date_spec(
    name: str, col: pd.Series, fmt: str, ambiguous: bool, notes: list[str]
) -> tuple[FeatureSpec, pd.Series]:
    """A date column as days since 1970 (float32 grid) and its spec."""
    days = as_days(col, fmt)
    unread = int((days.isna() & blank_to_nan(col.astype("string")).notna()).sum())
    if unread:
        notes.append(f"column {name!r}: {unread} value(s) are not dates in {fmt}; read as missing")
    if ambiguous:
        order = "day/month" if fmt.startswith("%d") else "month/day"
        notes.append(
            f"column {name!r}: every date fits both day/month and month/day; read as {order} "
            "(training.dayfirst); write dates as 2024-03-01 to be sure"
        )
    values = as_float32_grid(days)
    reference = float(np.floor(values.min()))
    date = DateSpec(
        format=fmt, reference=day_text(reference), reference_days=reference, ambiguous=ambiguous
    )
    return _numeric_spec(name, values).model_copy(update={"date": date}), values


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
