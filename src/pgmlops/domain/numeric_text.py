"""Numbers written as text: read them, spot them written in another style, say where not."""

from __future__ import annotations

import re

import pandas as pd

from pgmlops.domain.schema import blank_to_nan
from pgmlops.errors import DataError

# A text column converts to numbers when at least this share of its non-blank cells parse.
_NUMERIC_TEXT_SHARE = 0.98
# A text column "looks numeric" (and is warned about) when this share of its cells are numbers
# once spaces and thousands separators are taken out.
_LOOKS_NUMERIC_SHARE = 0.5
_SPACES = re.compile(r"[\s\u00a0\u202f'’_€$£¥%]")
_GROUPED = re.compile(r"^[+-]?\d{1,3}([.,])\d{3}(\1\d{3})*$")


def _as_plain_number(text: str) -> str:
    """A cell with spaces, apostrophes or thousands separators as plain "1234.5" text."""
    text = _SPACES.sub("", text)
    if "," in text and "." in text:
        # Whichever comes last is the decimal mark: "1.234,5" and "1,234.5".
        thousands = "." if text.rfind(",") > text.rfind(".") else ","
        text = text.replace(thousands, "")
    elif _GROUPED.match(text):
        text = text.replace(",", "").replace(".", "")
    return text.replace(",", ".")


def numeric_looking_example(col: pd.Series) -> str | None:
    """An example value when a text column is mostly numbers written in another style."""
    text = blank_to_nan(col.astype("string")).dropna()
    if text.empty:
        return None
    sample = text.iloc[:2000]
    plain = sample.map(_as_plain_number)
    parsed = pd.to_numeric(plain, errors="coerce")
    if parsed.notna().mean() < _LOOKS_NUMERIC_SHARE:
        return None
    # Prefer a value that shows why plain parsing failed.
    odd = sample[parsed.notna() & pd.to_numeric(sample, errors="coerce").isna()]
    return str((odd if not odd.empty else sample).iloc[0])


def as_numeric_text(col: pd.Series, *, target: bool = False) -> pd.Series | None:
    """Return the column as floats when it is numbers stored as text (blanks allowed)."""
    stripped = blank_to_nan(col).dropna()
    if stripped.empty:
        return None
    parsed = pd.to_numeric(stripped, errors="coerce")
    if parsed.notna().mean() < _NUMERIC_TEXT_SHARE:
        return None
    bad = stripped[parsed.isna()]
    if not bad.empty:
        # Nearly all numbers with a few words is a data error, not a categorical column.
        what, fix = (
            ("target column", "blank ones are left out") if target else ("column", "or drop it")
        )
        raise DataError(
            f"{what} {col.name!r} is numeric but {len(bad)} row(s) hold text "
            f"({rows_and_values(bad)}); fix or blank those cells, {fix}",
            params=() if target else ("drop",),
        )
    return pd.to_numeric(blank_to_nan(col), errors="coerce").astype("float64")


def rows_and_values(cells: pd.Series, *, values: int = 3, rows: int = 5) -> str:
    """ "rows 12, 40: 'n/a'; row 7: '?'": where each offending value is (rows counted from 1).

    `cells` is indexed by row position from 0, as the table was read.
    """
    parts = []
    groups = pd.Series(cells.index, index=cells.to_numpy()).groupby(level=0, sort=False)
    ranked = sorted(groups, key=lambda g: -len(g[1]))
    for value, where in ranked[:values]:
        shown = ", ".join(str(int(i) + 1) for i in where.iloc[:rows])
        more = f" and {len(where) - rows} more" if len(where) > rows else ""
        parts.append(f"row{'s' if len(where) > 1 else ''} {shown}{more}: {value!r}")
    if len(ranked) > values:
        parts.append(f"{len(ranked) - values} other value(s)")
    return "; ".join(parts)
