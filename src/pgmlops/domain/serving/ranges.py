"""Which fields of a record lie outside what training saw: numeric ranges, unseen categories.

Built once per served version from its feature schema; checked per record (a short loop over
the features) or per column for many records (numpy comparisons), so the serving path pays
about a microsecond a feature.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pgmlops.domain.schema import MISSING_CATEGORY, FeatureSchema

# Up to this many rows a set lookup per value beats building a pandas Series for isin(),
# which costs tens of µs a call whatever its size: the shadow thread's calls score tens of
# rows, and a few such calls a second per worker made that fixed cost a large part of a row's.
_SET_LOOKUP_ROWS = 2048


@dataclass(frozen=True)
class RangeCheck:
    """Training's numeric ranges and categories, in schema order."""

    numeric: tuple[tuple[str, float, float], ...]
    categorical: tuple[tuple[str, frozenset[str]], ...]
    shown: Mapping[str, tuple[float, float]]

    @classmethod
    def of(cls, schema: FeatureSchema, *, categories: bool = True) -> RangeCheck:
        """From a feature schema; ``categories=False`` when unseen ones are refused anyway."""
        spans = [
            (f.name, float(f.min), float(f.max))
            for f in schema.features
            if f.kind == "numeric" and f.min is not None and f.max is not None
        ]
        # Training's bounds are float32-rounded (schema.as_float32_grid) and so is every
        # served value: a value within one float32 step of a bound is not outside it.
        numeric = tuple((name, _step(lo, -np.inf), _step(hi, np.inf)) for name, lo, hi in spans)
        cats = tuple(
            (f.name, frozenset(c for c in f.categories or [] if c != MISSING_CATEGORY))
            for f in schema.features
            if categories and f.kind == "categorical" and f.categories and not f.pooled
        )
        return cls(numeric=numeric, categorical=cats, shown={n: (lo, hi) for n, lo, hi in spans})

    def row(self, record: Mapping[str, Any]) -> list[str]:
        """The fields of one validated record outside training's range or categories."""
        out = [
            name
            for name, lo, hi in self.numeric
            if (v := record.get(name)) is not None and not lo <= v <= hi
        ]
        out += [
            name
            for name, seen in self.categorical
            if (v := record.get(name)) is not None and v not in seen
        ]
        return out

    def columns(self, columns: Mapping[str, np.ndarray], n: int) -> list[list[str]]:
        """Per row of validated feature columns, the fields outside training's range."""
        found: list[list[str]] = [[] for _ in range(n)]
        for name, mask in self.masks(columns).items():
            for pos in np.flatnonzero(mask):
                found[pos].append(name)
        return found

    def masks(self, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per field with any value outside training's range, the mask of those rows."""
        masks: dict[str, np.ndarray] = {}
        for name, lo, hi in self.numeric:
            values = np.asarray(columns[name], dtype=np.float64)
            with np.errstate(invalid="ignore"):
                mask = (values < lo) | (values > hi)  # NaN (missing) compares False
            if mask.any():
                masks[name] = mask
        for name, seen in self.categorical:
            values = np.asarray(columns[name], dtype=object)
            if len(values) <= _SET_LOOKUP_ROWS:
                known = np.fromiter((v in seen for v in values), dtype=bool, count=len(values))
            else:
                known = pd.Series(values, dtype=object).isin(list(seen)).to_numpy()
            mask = ~pd.isna(values) & ~known
            if mask.any():
                masks[name] = mask
        return masks

    def describe(self, record: Mapping[str, Any], fields: list[str]) -> str:
        """The fields' values against what training saw, for an error message."""
        bounds = self.shown
        parts = []
        for name in fields:
            value = record.get(name)
            if name in bounds:
                lo, hi = bounds[name]
                parts.append(f"{name} = {value:g} (training saw {lo:g} .. {hi:g})")
            else:
                parts.append(f"{name} = {value!r} (a category training never saw)")
        return "; ".join(parts)


def _step(bound: float, towards: float) -> float:
    return float(np.nextafter(np.float32(bound), np.float32(towards)))
