"""Date and datetime columns: detected at training, parsed alike everywhere, made into features.

A date crosses the model's boundary as text ("2024-03-01", "01/03/2024 12:00",
"2024-03-01T12:00:00+02:00") and is read into days since 1970-01-01 (UTC, with the time of
day as a fraction), a number every layer already stores, profiles and logs. The first step of
the fitted pipeline, DateFeatures, turns those days into year, month, day of week, day of year
and days since a reference date fixed at fit, so every engine that runs the pipeline derives
exactly the features training saw.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

# Defined with the kinds, which model cards read without scikit-learn; still importable here.
from pgmlops.domain.kinds import DateSpec as DateSpec

ISO = "ISO8601"
PARTS = ("year", "month", "day_of_week", "day_of_year", "days_since")
_ISO_SHAPE = re.compile(
    r"^\d{4}-\d{1,2}-\d{1,2}([ T]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$"
)
_TIMES = ("", " %H:%M", " %H:%M:%S")
# A column is a date column when at least this share of its non-blank cells parse.
_DATE_SHARE = 0.98
_EPOCH = pd.Timestamp("1970-01-01", tz="UTC")
_DAY = pd.Timedelta(days=1)


# Dates with an English month name ("Aug 18, 2024", "18 Aug 2024", "August 18, 2024",
# "18-Aug-2024"): never ambiguous, so they have no twin.
_MONTH_NAMES = tuple(
    f.replace("%b", month)
    for month in ("%b", "%B")
    for f in ("%b %d, %Y", "%b %d %Y", "%d %b %Y", "%d %b, %Y", "%d-%b-%Y")
)


def _formats(dayfirst: bool) -> list[tuple[str, str]]:
    """(format, its day/month-swapped twin or "") in the order ambiguity is resolved."""
    out: list[tuple[str, str]] = []
    for sep in "/.-":
        for time in _TIMES:
            dm, md = f"%d{sep}%m{sep}%Y{time}", f"%m{sep}%d{sep}%Y{time}"
            out.append((dm, md) if dayfirst else (md, dm))
            out.append((md, dm) if dayfirst else (dm, md))
            out.append((f"%Y{sep}%m{sep}%d{time}", ""))
    out.extend((f, "") for f in _MONTH_NAMES)
    return out


def to_days(values: pd.Series, fmt: str) -> pd.Series:
    """Days since 1970-01-01 UTC as floats; NaN where blank or not in the format."""
    text = values.astype("string").str.strip()
    text = text.mask(text == "", pd.NA)
    if fmt == ISO:
        # pandas reads any ISO 8601 shape; the pattern keeps "2024" or "12:00" from passing.
        text = text.where(text.str.match(_ISO_SHAPE.pattern).fillna(False), pd.NA)
    try:
        stamps = pd.to_datetime(text, format=fmt, errors="coerce", utc=True)
    except (ValueError, TypeError):
        return pd.Series(np.nan, index=values.index)
    return ((stamps - _EPOCH) / _DAY).astype("float64")


def datetime_days(values: pd.Series) -> pd.Series:
    """A datetime64 column (Parquet, SQL) as days since 1970-01-01 UTC."""
    stamps = values.dt.tz_localize("UTC") if values.dt.tz is None else values.dt.tz_convert("UTC")
    return ((stamps - _EPOCH) / _DAY).astype("float64")


def detect_format(col: pd.Series, *, dayfirst: bool) -> tuple[str, bool] | None:
    """The date format of a text column and whether day/month order was a guess; or None."""
    text = col.dropna().astype("string").str.strip()
    text = text[text != ""]
    if text.empty:
        return None
    sample = pd.Series(text.unique()[:500])
    if not sample.str.contains(r"\d", regex=True).all():
        return None

    def share(fmt: str) -> float:
        return float(to_days(sample, fmt).notna().mean())

    if share(ISO) >= _DATE_SHARE:
        return ISO, False
    for fmt, twin in _formats(dayfirst):
        if share(fmt) >= _DATE_SHARE:
            return fmt, bool(twin) and share(twin) >= _DATE_SHARE
    return None


def parse_date(value: Any, fmt: str) -> float:
    """One served value as days: the training format, else ISO 8601; ValueError otherwise."""
    if isinstance(value, str) and value.strip():
        for f in (fmt, ISO) if fmt != ISO else (ISO,):
            days = to_days(pd.Series([value]), f).iloc[0]
            if not np.isnan(days):
                return float(days)
    example = "2024-03-01" if fmt == ISO else pd.Timestamp("2024-03-01").strftime(fmt)
    raise ValueError(f"must be a date like {example!r} or ISO 8601 '2024-03-01T12:00:00Z'")


def as_days(col: pd.Series, fmt: str) -> pd.Series:
    """A column of dates (text, datetimes or days already) as days since 1970-01-01 UTC."""
    if pd.api.types.is_datetime64_any_dtype(col):
        return datetime_days(col)
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        return col.astype("float64")
    # Logged predictions hold days already; text is parsed.
    numbers = pd.to_numeric(col.map(lambda v: v if isinstance(v, int | float) else None))
    return to_days(col, fmt).fillna(numbers).astype("float64")


def days_as_text(days: pd.Series, fmt: str) -> pd.Series:
    """Day counts written back in a format, so a retraining reads the column as dates again."""
    stamps = _EPOCH + pd.to_timedelta(days.astype("float64"), unit="D")
    text = stamps.dt.strftime("%Y-%m-%dT%H:%M:%S") if fmt == ISO else stamps.dt.strftime(fmt)
    return text.astype(object).where(days.notna(), None)


def day_text(days: float) -> str:
    """A day count as an ISO date, for the card."""
    return str((_EPOCH + pd.Timedelta(days=float(days))).date())


def date_features(days: np.ndarray, reference: float) -> dict[str, np.ndarray]:
    """The five features of each day count (NaN where the day is missing)."""
    days = np.asarray(days, dtype=np.float64)
    ok = np.isfinite(days)
    whole = np.where(ok, np.floor(np.where(ok, days, 0.0)), 0.0).astype("int64")
    dt = whole.astype("datetime64[D]")
    year_start = dt.astype("datetime64[Y]")
    out = {
        "year": year_start.astype("int64") + 1970.0,
        "month": dt.astype("datetime64[M]").astype("int64") % 12 + 1.0,
        # 1970-01-01 was a Thursday: Monday is 0.
        "day_of_week": (whole + 3) % 7 + 0.0,
        "day_of_year": (dt - year_start.astype("datetime64[D]")).astype("int64") + 1.0,
        "days_since": days - reference,
    }
    return {k: np.where(ok, v.astype(np.float64), np.nan) for k, v in out.items()}


class DateFeatures(TransformerMixin, BaseEstimator):
    """Replace each date column (days since 1970) by its calendar features.

    `references`: each column's reference day, the earliest training date (the card's
    DateSpec), fixed when training read the data.
    """

    def __init__(self, references: dict[str, float] | None = None) -> None:
        self.references = references

    def fit(self, x: pd.DataFrame, y: Any = None) -> DateFeatures:
        return self

    def transform(self, x: pd.DataFrame) -> pd.DataFrame:
        refs = self.references or {}
        out = x.drop(columns=list(refs))
        for c, reference in refs.items():
            parts = date_features(x[c].to_numpy(dtype=np.float64), reference)
            for part in PARTS:
                out[f"{c}__{part}"] = parts[part]
        return out
