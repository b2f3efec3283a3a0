"""Reference profiles: the training data summarised once, so monitoring never re-reads it.

A profile keeps, per numeric feature, a fine quantile grid with the exact reference counts at
each grid point (enough for KS and Wasserstein), coarse quantile bins for PSI, moments and a
small seeded sample; per categorical feature, the counts of every category. Missing values
are counted, never dropped. The profile records (pydantic, round-tripping through JSON) are in
profile_records.py; this module builds them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, TypeVar

import numpy as np
import pandas as pd

from pgmlops.domain.monitoring.performance import confidence
from pgmlops.domain.monitoring.profile_records import (
    CategoricalProfile,
    NumericProfile,
    OutputProfile,
    ReferenceProfile,
    ReferenceRows,
)
from pgmlops.domain.schema import MISSING_CATEGORY, FeatureSchema, Kind
from pgmlops.errors import DataError

# Categories past the most frequent ones, and unseen categories at compare time, pool here.
OTHER_CATEGORY = "__other__"
GRID_POINTS = 1001
PSI_BINS = 20
DEFAULT_SAMPLE_SIZE = 1000
MAX_SAMPLE_SIZE = 5000
# Whole reference rows kept for the multivariate (domain classifier) detector.
DEFAULT_REFERENCE_ROWS = 5000
MAX_REFERENCE_ROWS = 20_000
MAX_CATEGORIES = 1000
# Binary scores are profiled on fixed bins of P(positive) rather than quantiles.
SCORE_GRID = np.linspace(0.0, 1.0, 101)
SCORE_PSI_EDGES = np.linspace(0.1, 0.9, 9)
# Stored grid values are rounded to about a millionth of the column's spread: JSON stays
# small, and the reference counts are taken at the rounded values, so nothing gets inexact.
_SPREAD_DIGITS = 6
# Proportions are floored here before PSI so an empty bin does not make it infinite.
PSI_EPSILON = 1e-4
# Sorting and Arrow value counts release the GIL, so large frames go column-parallel.
_PARALLEL_ROWS = 100_000
_T = TypeVar("_T")
_R = TypeVar("_R")


def build_profile(
    x: pd.DataFrame,
    schema: FeatureSchema,
    scores: np.ndarray | None = None,
    confidence: np.ndarray | None = None,
    *,
    seed: int = 0,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    reference_rows: int = DEFAULT_REFERENCE_ROWS,
) -> ReferenceProfile:
    """Summarise reference rows (and optionally model outputs on them) for later drift checks.

    ``scores`` follows ``schema.task``: binary P(positive) of shape (n,) or (n, 2); multiclass
    predicted labels (n,) or probabilities (n, k) in ``schema.classes`` order; regression
    predictions (n,). Scores and ``confidence`` may come from other rows than ``x`` (e.g. a
    holdout). Without ``confidence``, classifiers use the probability of the predicted class.
    """
    columns = [(spec.name, spec.kind) for spec in schema.features]
    profile = profile_frame(
        x, columns, seed=seed, sample_size=sample_size, reference_rows=reference_rows
    )
    if scores is not None:
        output = profile_output(scores, schema, confidence, seed=seed)
        profile = profile.model_copy(update={"output": output})
    return profile


def profile_frame(
    x: pd.DataFrame,
    columns: Sequence[tuple[str, Kind]],
    *,
    seed: int = 0,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    reference_rows: int = DEFAULT_REFERENCE_ROWS,
) -> ReferenceProfile:
    """Profile the named columns of ``x``, each as "numeric" or "categorical"."""
    if not 0 <= sample_size <= MAX_SAMPLE_SIZE:
        raise DataError(f"sample_size must be between 0 and {MAX_SAMPLE_SIZE}, got {sample_size}")
    if not 0 <= reference_rows <= MAX_REFERENCE_ROWS:
        raise DataError(
            f"reference_rows must be between 0 and {MAX_REFERENCE_ROWS}, got {reference_rows}"
        )
    if len(x) == 0:
        raise DataError("the reference data has no rows to profile")
    cols = select_columns(x, [name for name, _ in columns], "the reference data")

    def one(i: int) -> NumericProfile | CategoricalProfile:
        name, kind = columns[i]
        if kind == "numeric":
            rng = np.random.default_rng([seed, i])
            return numeric_profile(name, float_values(cols[i]), rng, sample_size)
        return categorical_profile(name, category_counts(cols[i]))

    features = map_columns(one, range(len(columns)), len(x))
    rows = sample_rows(cols, columns, reference_rows, seed) if reference_rows else None
    return ReferenceProfile(n_rows=len(x), seed=seed, features=features, rows=rows)


def sample_rows(
    cols: Sequence[pd.Series], columns: Sequence[tuple[str, Kind]], size: int, seed: int
) -> ReferenceRows:
    """Up to ``size`` seeded whole rows, numbers rounded as the profile's grid is."""
    n = len(cols[0]) if cols else 0
    take = min(size, n)
    idx = np.sort(np.random.default_rng([seed, 7_919]).choice(n, size=take, replace=False))
    numeric: dict[str, list[float | None]] = {}
    categorical: dict[str, list[str]] = {}
    for col, (name, kind) in zip(cols, columns, strict=True):
        if kind == "numeric":
            values = float_values(col.iloc[idx])
            present = values[~np.isnan(values)]
            spread = float(present.max() - present.min()) if len(present) else 0.0
            rounded = _round(values, _decimals(spread))
            numeric[name] = [None if math.isnan(v) else v for v in rounded.tolist()]
        else:
            picked = col.iloc[idx]
            categorical[name] = [
                MISSING_CATEGORY if _is_missing(v) else str(v) for v in picked.tolist()
            ]
    return ReferenceRows(n=take, numeric=numeric, categorical=categorical)


def select_columns(frame: pd.DataFrame, names: Sequence[str], what: str) -> list[pd.Series]:
    """The named columns, each exactly once; DataError naming any absent or duplicated one."""
    absent = [name for name in names if name not in frame.columns]
    if absent:
        raise DataError(f"{what} has no column for feature(s): {', '.join(absent)}")
    twice = sorted({name for name in names if np.count_nonzero(frame.columns == name) > 1})
    if twice:
        raise DataError(f"{what} has more than one column named {', '.join(twice)}")
    return [frame[name] for name in names]


def map_columns(fn: Callable[[_T], _R], items: Sequence[_T], n_rows: int) -> list[_R]:
    """``[fn(item) for item in items]``, on a thread pool when the frame is large."""
    workers = min(len(items), os.cpu_count() or 1, 4)
    if n_rows < _PARALLEL_ROWS or workers < 2:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, items))


def float_values(col: pd.Series) -> np.ndarray:
    """A column as float64 with NaN for missing; DataError when it holds text."""
    try:
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise DataError(f"column {col.name!r} must be numeric for drift statistics") from exc


def sorted_present(values: np.ndarray, name: str) -> tuple[np.ndarray, int]:
    """The non-missing values sorted ascending, and how many were missing."""
    ordered = np.sort(values)  # NaN sorts last
    n_missing = int(len(ordered) - np.searchsorted(ordered, np.nan))
    present = ordered[: len(ordered) - n_missing]
    if len(present) and not (np.isfinite(present[0]) and np.isfinite(present[-1])):
        raise DataError(f"column {name!r} has infinite values; drift statistics need finite ones")
    return present, n_missing


def numeric_profile(
    name: str,
    values: np.ndarray,
    rng: np.random.Generator,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
    *,
    grid: np.ndarray | None = None,
    psi_edges: np.ndarray | None = None,
) -> NumericProfile:
    """Profile float values; ``grid``/``psi_edges`` replace the quantile-based ones if given."""
    present, n_missing = sorted_present(values, name)
    n_present = len(present)
    if n_present == 0:
        empty: list[float] = []
        return NumericProfile(
            name=name, n=len(values), n_missing=n_missing, grid=empty, grid_counts=[],
            psi_edges=empty, psi_counts=[0], sample=empty,
        )  # fmt: skip
    decimals = _decimals(float(present[-1] - present[0]))
    if grid is None:
        grid = _round(_quantiles(present, np.linspace(0.0, 1.0, GRID_POINTS)), decimals)
    if psi_edges is None:
        inner = np.arange(1, PSI_BINS) / PSI_BINS
        psi_edges = _round(_quantiles(present, inner), decimals)
    grid, psi_edges = np.unique(grid), np.unique(psi_edges)
    grid_counts = np.searchsorted(present, grid, side="right")
    psi_counts = np.diff(
        np.searchsorted(present, psi_edges, side="right"), prepend=0, append=n_present
    )
    take = min(sample_size, n_present)
    sample = (
        np.sort(present[rng.choice(n_present, size=take, replace=False)]) if take else present[:0]
    )
    return NumericProfile(
        name=name,
        n=len(values),
        n_missing=n_missing,
        mean=float(np.mean(present)),
        std=float(np.std(present)),
        grid=grid.tolist(),
        grid_counts=grid_counts.tolist(),
        psi_edges=psi_edges.tolist(),
        psi_counts=psi_counts.tolist(),
        sample=_round(sample, decimals).tolist(),
    )


def population_stability_index(ref_p: np.ndarray, cur_p: np.ndarray) -> float:
    """PSI over matching bins, with proportions floored at ``PSI_EPSILON``."""
    r, c = np.maximum(ref_p, PSI_EPSILON), np.maximum(cur_p, PSI_EPSILON)
    return float(np.sum((c - r) * np.log(c / r)))


def category_counts(col: pd.Series) -> dict[str, int]:
    """Count every category as text, missing cells under ``MISSING_CATEGORY``."""
    counts: dict[str, int] = {}
    for key, count in col.value_counts(dropna=False, sort=False).items():
        label = MISSING_CATEGORY if _is_missing(key) else str(key)
        counts[label] = counts.get(label, 0) + int(count)
    return counts


def categorical_profile(name: str, counts: dict[str, int]) -> CategoricalProfile:
    """Keep the ``MAX_CATEGORIES`` most frequent categories; the rest pool in ``OTHER_CATEGORY``."""
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    kept = dict(ranked[:MAX_CATEGORIES])
    rest = sum(c for _, c in ranked[MAX_CATEGORIES:])
    if rest:
        kept[OTHER_CATEGORY] = kept.get(OTHER_CATEGORY, 0) + rest
    return CategoricalProfile(name=name, n=sum(counts.values()), counts=kept)


OutputKind = Literal["probability", "class", "prediction"]
OUTPUT_KINDS: dict[str, OutputKind] = {
    "binary": "probability",
    "multiclass": "class",
    "regression": "prediction",
}


def profile_output(
    scores: np.ndarray,
    schema: FeatureSchema,
    confidence: np.ndarray | None = None,
    *,
    seed: int = 0,
) -> OutputProfile:
    """Profile model outputs as the task defines them (see ``build_profile``)."""
    kind = OUTPUT_KINDS[schema.task]
    values, derived = output_values(scores, kind, schema.classes)
    if isinstance(values, dict):
        distribution: NumericProfile | CategoricalProfile = categorical_profile("class", values)
    elif kind == "probability":
        rng = np.random.default_rng([seed, 1_000_003])
        distribution = numeric_profile(
            "score", values, rng, grid=SCORE_GRID, psi_edges=SCORE_PSI_EDGES
        )
    else:
        distribution = numeric_profile("prediction", values, np.random.default_rng([seed, 1]))
    conf = derived if confidence is None else _as_float_array(confidence, "confidence")
    mean_conf = float(np.nanmean(conf)) if conf is not None and conf.size else None
    return OutputProfile(
        kind=kind, distribution=distribution, classes=schema.classes, mean_confidence=mean_conf
    )


def output_values(
    scores: np.ndarray, kind: OutputKind, classes: list[str] | None
) -> tuple[np.ndarray | dict[str, int], np.ndarray | None]:
    """Model outputs as float values or class counts, plus each row's confidence if implied."""
    arr = np.asarray(scores)
    if arr.ndim not in (1, 2) or len(arr) == 0:
        raise DataError(f"scores must be a non-empty 1-D or 2-D array, got shape {arr.shape}")
    if kind == "prediction":
        return _as_float_array(arr.reshape(len(arr), -1)[:, 0], "regression predictions"), None
    if kind == "probability":
        p = _as_float_array(arr[:, -1] if arr.ndim == 2 else arr, "binary scores")
        if np.nanmin(p) < 0.0 or np.nanmax(p) > 1.0:
            raise DataError("binary scores must be probabilities between 0 and 1")
        return p, confidence(p, "binary")
    if arr.ndim == 1:
        return category_counts(pd.Series(arr)), None
    proba = _as_float_array(arr, "class probabilities")
    names = classes or [str(i) for i in range(arr.shape[1])]
    if len(names) != arr.shape[1]:
        raise DataError(
            f"scores have {arr.shape[1]} probability columns but there are {len(names)} classes"
        )
    labels = pd.Series(np.asarray(names, dtype=object)[np.argmax(proba, axis=1)])
    return category_counts(labels), confidence(proba, "multiclass")


def _as_float_array(arr: np.ndarray, what: str) -> np.ndarray:
    try:
        return np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} must be numbers") from exc


def _quantiles(present: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Inverted-CDF quantiles of sorted values: always observed values, never interpolated."""
    idx = np.clip(np.ceil(probs * len(present)).astype(np.int64) - 1, 0, len(present) - 1)
    return present[idx]


def _decimals(spread: float) -> int | None:
    """Decimal places resolving ``_SPREAD_DIGITS`` digits of the spread (None: keep all)."""
    if spread <= 0.0 or not math.isfinite(spread):
        return None
    decimals = _SPREAD_DIGITS - math.floor(math.log10(spread))
    return decimals if decimals <= 15 else None


def _round(values: np.ndarray, decimals: int | None) -> np.ndarray:
    return values if decimals is None else np.round(values, decimals)


def round_to_spread(values: np.ndarray, spread: float) -> np.ndarray:
    """Values rounded as a profile's grid is, for a column whose values span ``spread``."""
    return _round(values, _decimals(spread))


def _is_missing(key: object) -> bool:
    return key is None or key is pd.NA or (isinstance(key, float) and math.isnan(key))
