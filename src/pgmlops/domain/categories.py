"""Category values made consistent: case and whitespace folded, booleans, rare values pooled.

Training decides (and records in the feature spec) how a text column's values are spelled;
serving, batch scoring and retraining map every incoming value through the same rules, so
"north " and "NORTH" reach the model as the "North" it was trained on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

# pandas is imported by the functions that call it: the feature spec (and so every model card a
# registry command reads) uses this module's canonicaliser, which needs no pandas.
if TYPE_CHECKING:
    import pandas as pd

TRUE_WORDS = frozenset({"true", "yes", "y", "t", "1"})
FALSE_WORDS = frozenset({"false", "no", "n", "f", "0"})
# The spellings a boolean feature is trained and served with: str(True) and str(False), so a
# Python bool anywhere on the way becomes the same text.
TRUE_TEXT, FALSE_TEXT = "True", "False"
OTHER = "other"
_SHOWN = 5


def fold(value: str) -> str:
    """The key two spellings of one category share: surrounding blanks and case ignored."""
    return value.strip().casefold()


def boolean_text(value: Any) -> str | None:
    """ "True"/"False" for a boolean-like value (yes/no, 1/0, t/f…), None if it is not one."""
    if isinstance(value, bool):
        return TRUE_TEXT if value else FALSE_TEXT
    if isinstance(value, int | float) and value in (0, 1):
        return TRUE_TEXT if value == 1 else FALSE_TEXT
    if isinstance(value, str):
        key = fold(value)
        if key in TRUE_WORDS:
            return TRUE_TEXT
        if key in FALSE_WORDS:
            return FALSE_TEXT
    return None


def looks_boolean(col: pd.Series) -> bool:
    """A bool column, or text whose values are two of one yes/no vocabulary (True/False, 0/1)."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(col):
        return True
    if pd.api.types.is_numeric_dtype(col):
        return False
    present = col.dropna()
    texts = {str(v) for v in present.unique()[:50]}
    if (
        not texts
        or len(texts) > 10
        or not all(isinstance(v, str | bool) for v in present.iloc[:50])
    ):
        return False
    keys = {fold(t) for t in texts if t.strip()}
    return len(keys) == 2 and len(keys & TRUE_WORDS) == 1 and len(keys & FALSE_WORDS) == 1


def as_boolean_text(col: pd.Series) -> pd.Series:
    """The column as "True"/"False" text, missing where blank."""
    return canonical_series(col, boolean_text).astype("string")


def merge_spellings(text: pd.Series) -> tuple[pd.Series, list[str]]:
    """Values stripped and case-folded to their most frequent spelling; and what merged."""
    import pandas as pd

    stripped = text.str.strip()
    stripped = stripped.mask(stripped == "", pd.NA)
    counts = stripped.value_counts(dropna=True)
    canonical: dict[str, str] = {}
    groups: dict[str, list[str]] = {}
    # Most frequent first, ties by name: the first spelling of each folded key wins.
    for value in sorted(counts.index, key=lambda v: (-int(counts[v]), v)):
        key = fold(value)
        canonical.setdefault(key, value)
        groups.setdefault(key, []).append(value)
    merged = [
        f"{'/'.join(spellings)} → {canonical[key]}"
        for key, spellings in groups.items()
        if len(spellings) > 1
    ]
    # A dict lookup per row, a Python call per distinct value only.
    mapped = stripped.map({v: canonical[fold(v)] for v in counts.index})
    return mapped.astype("string"), merged


def letter_edit_apart(a: str, b: str) -> bool:
    """True when one letter inserted, deleted or replaced turns a into b (case ignored).

    An edit of a digit or a sign ("c10"/"c102", "A-1"/"A-2") names a different code on
    purpose, so it does not count.
    """
    a, b = a.casefold(), b.casefold()
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        return a[i + 1 :] == b[i + 1 :] and (a[i].isalpha() or b[i].isalpha())
    return a[i:] == b[i + 1 :] and b[i].isalpha()


def near_duplicates(values: Iterable[str], limit: int = 300) -> list[tuple[str, str]]:
    """Pairs of distinct values one letter apart ("Sout"/"South"), not merged automatically."""
    ordered = sorted(set(values))[:limit]
    pairs = []
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            # Words, not short codes: "AB"/"AC" are usually distinct on purpose.
            if min(len(a), len(b)) >= 3 and letter_edit_apart(a, b):
                pairs.append((a, b))
    return pairs


def describe_pairs(pairs: list[tuple[str, str]]) -> str:
    """ "'Nort'/'North', … (+N more)" for a warning."""
    shown = ", ".join(f"{a!r}/{b!r}" for a, b in pairs[:_SHOWN])
    more = len(pairs) - _SHOWN
    return shown + (f" (+{more} more)" if more > 0 else "")


def pool_rare(text: pd.Series, keep: int) -> tuple[pd.Series, int, int]:
    """The `keep - 1` most frequent values kept, the rest pooled as OTHER.

    Returns the pooled column, how many distinct values were pooled and in how many rows.
    """
    counts = text.value_counts(dropna=True)
    ranked = sorted(counts.index, key=lambda v: (-int(counts[v]), v))
    kept = set(ranked[: max(1, keep - 1)])
    rare = text.notna() & ~text.isin(kept)
    return text.mask(rare, OTHER), len(ranked) - len(kept), int(rare.sum())


def canonicaliser(
    categories: list[str], *, folded: bool, boolean: bool, pooled: bool
) -> Callable[[Any], Any]:
    """Map one incoming value to the spelling training used (None stays None).

    Values that match nothing are returned as they came (stripped), except in a pooled column,
    where every value training did not keep is OTHER, as rare values were at training.
    """
    if boolean:
        return lambda v: v if v is None else (boolean_text(v) or v)
    known = {fold(c) if folded else c: c for c in categories}

    def canonical(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip() if folded else value
        hit = known.get(fold(text) if folded else text)
        if hit is not None:
            return hit
        return OTHER if pooled and text else text

    return canonical


def canonical_series(col: pd.Series, mapper: Callable[[Any], Any]) -> pd.Series:
    """A column mapped value by value, through each distinct value once."""
    uniques = col.dropna().unique()
    table = {v: mapper(v) for v in uniques}
    return col.map(table).where(col.notna(), None)


def tidy_text(
    name: str, text: pd.Series, *, normalize: bool, max_categories: int, notes: list[str]
) -> tuple[pd.Series, bool]:
    """A text column's spellings merged (if `normalize`), near-duplicates and merges noted."""
    if not normalize:
        return text, False
    text, merged = merge_spellings(text)
    if merged:
        shown = "; ".join(merged[:_SHOWN]) + (
            f" (+{len(merged) - _SHOWN} more)" if len(merged) > _SHOWN else ""
        )
        notes.append(f"column {name!r}: spellings differing in case or blanks merged: {shown}")
    values = text.dropna().unique()
    if len(values) <= 10 * max_categories:
        pairs = near_duplicates(str(v) for v in values)
        if pairs:
            notes.append(
                f"column {name!r}: values one letter apart were NOT merged (typos?): "
                + describe_pairs(pairs)
            )
    return text, True


def cap_categories(
    name: str, text: pd.Series, *, max_categories: int, notes: list[str]
) -> tuple[pd.Series, bool]:
    """Rare values pooled as OTHER when a column has more than `max_categories` values."""
    distinct = text.nunique(dropna=True)
    if distinct <= max_categories:
        return text, False
    pooled, values, rows = pool_rare(text, max_categories)
    notes.append(
        f"column {name!r}: {distinct} distinct values; the {distinct - values} most frequent "
        f"kept, {values} rare ones ({rows:,} rows) pooled as {OTHER!r} "
        "(training.max_categories)"
    )
    return pooled, True
