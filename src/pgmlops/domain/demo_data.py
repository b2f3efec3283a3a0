"""Deterministic synthetic bank-churn customers, with knobs that produce drifted batches.

The columns mimic the public "bank customer churn" table. The target has a non-linear signal
(an age band, product-count extremes, a Germany x balance interaction) so tree ensembles beat
linear models, and the knobs shift features (``numeric_shift``, ``category_mix``), the
feature/target relation (``concept_shift``) or the data quality (``missing_rate``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pgmlops.errors import DataError

GEOGRAPHIES = ("France", "Germany", "Spain")
GENDERS = ("Male", "Female")
COLUMNS = (
    "CustomerId",
    "CreditScore",
    "Geography",
    "Gender",
    "Age",
    "Tenure",
    "Balance",
    "NumOfProducts",
    "HasCrCard",
    "IsActiveMember",
    "EstimatedSalary",
    "Exited",
)
TARGET = "Exited"
# Columns blanked by ``missing_rate``.
MISSING_COLUMNS = ("CreditScore", "Tenure", "Geography", "EstimatedSalary")

_GEO_MIX = (0.5, 0.25, 0.25)
_ID_BASE = 15_000_000
# Ids of different seeds never overlap while n_rows stays below this stride.
_ID_STRIDE = 10_000_000
# Generating distributions; the std values are the units of ``numeric_shift``.
_AGE_MIN, _AGE_MAX, _AGE_SHAPE, _AGE_SCALE = 18, 92, 4.0, 5.2
_AGE_STD = math.sqrt(_AGE_SHAPE) * _AGE_SCALE
_SCORE_MEAN, _SCORE_STD, _SCORE_MIN, _SCORE_MAX = 650.0, 96.7, 350, 850
_BALANCE_MEAN, _BALANCE_STD, _BALANCE_MIN, _BALANCE_MAX = 119_800.0, 30_100.0, 3_000.0, 260_000.0
_BALANCE_ZERO_SHARE = 0.35
_SALARY_MIN, _SALARY_MAX = 10.0, 200_000.0
_SALARY_STD = (_SALARY_MAX - _SALARY_MIN) / math.sqrt(12.0)
# Cumulative P(NumOfProducts <= 1, 2, 3); empty accounts tend to hold two products.
_PRODUCTS_CUM_EMPTY = (0.37, 0.965, 0.995)
_PRODUCTS_CUM_FUNDED = (0.60, 0.965, 0.995)
_PRODUCT_EFFECT = np.array([0.0, 0.0, -1.5, 2.4, 4.5])  # indexed by product count
# Intercepts giving ~20% churners with concept_shift 0 and 1 (interpolated in between).
_INTERCEPT_BASE, _INTERCEPT_SHIFTED = -1.75, -2.4
_N_STREAMS = 12


def make_churn(
    n_rows: int,
    seed: int = 0,
    *,
    numeric_shift: float = 0.0,
    category_mix: dict[str, float] | None = None,
    concept_shift: float = 0.0,
    missing_rate: float = 0.0,
) -> pd.DataFrame:
    """Return ``n_rows`` synthetic churn customers; the same arguments give the same frame.

    ``numeric_shift`` moves Age, CreditScore, the non-zero Balance and EstimatedSalary by that
    many standard deviations (clipped to valid ranges); ``category_mix`` replaces the Geography
    probabilities; ``concept_shift`` in [0, 1] fades the age and activity effects and makes
    short tenure drive churn instead; ``missing_rate`` blanks that share of the cells of
    CreditScore, Tenure, Geography and EstimatedSalary (numeric ones become float64 with NaN).
    Every column draws from its own random stream, so a knob changes only the columns it is
    about (plus ``Exited``, which follows the features).
    """
    geo_mix = _validate(n_rows, seed, numeric_shift, category_mix, concept_shift, missing_rate)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(_N_STREAMS)]
    n = n_rows

    age_raw = _AGE_MIN + streams[0].gamma(_AGE_SHAPE, _AGE_SCALE, n) + numeric_shift * _AGE_STD
    age = np.clip(np.rint(age_raw), _AGE_MIN, _AGE_MAX).astype(np.int64)
    score_raw = streams[1].normal(_SCORE_MEAN, _SCORE_STD, n) + numeric_shift * _SCORE_STD
    score = np.clip(np.rint(score_raw), _SCORE_MIN, _SCORE_MAX).astype(np.int64)
    geo = np.searchsorted(np.cumsum(geo_mix)[:-1], streams[2].random(n), side="right")
    female = streams[3].random(n) < 0.455
    tenure = streams[4].integers(0, 11, n)
    funded = streams[5].random(n) >= _BALANCE_ZERO_SHARE
    balance_raw = streams[5].normal(_BALANCE_MEAN, _BALANCE_STD, n) + numeric_shift * _BALANCE_STD
    balance = np.where(funded, np.round(np.clip(balance_raw, _BALANCE_MIN, _BALANCE_MAX), 2), 0.0)
    products = _draw_products(streams[6].random(n), funded)
    has_card = (streams[7].random(n) < 0.70).astype(np.int64)
    active = (streams[8].random(n) < 0.515).astype(np.int64)
    salary_raw = streams[9].uniform(_SALARY_MIN, _SALARY_MAX, n) + numeric_shift * _SALARY_STD
    salary = np.round(np.clip(salary_raw, _SALARY_MIN, _SALARY_MAX), 2)

    logit = _churn_logit(age, score, geo, female, tenure, funded, products, active, concept_shift)
    exited = (streams[10].random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)

    blank = streams[11]
    frame = {
        "CustomerId": _ID_BASE + seed * _ID_STRIDE + np.arange(n, dtype=np.int64),
        "CreditScore": _blank_numbers(score, blank, missing_rate),
        "Geography": _strings(GEOGRAPHIES, geo, _blank_mask(blank, n, missing_rate)),
        "Gender": _strings(GENDERS, female.astype(np.int64), None),
        "Age": age,
        "Tenure": _blank_numbers(tenure, blank, missing_rate),
        "Balance": balance,
        "NumOfProducts": products,
        "HasCrCard": has_card,
        "IsActiveMember": active,
        "EstimatedSalary": _blank_numbers(salary, blank, missing_rate),
        "Exited": exited,
    }
    return pd.DataFrame(frame, columns=list(COLUMNS))


def _validate(
    n_rows: int,
    seed: int,
    numeric_shift: float,
    category_mix: dict[str, float] | None,
    concept_shift: float,
    missing_rate: float,
) -> np.ndarray:
    """Check every argument and return the Geography probabilities to use."""
    if isinstance(n_rows, bool) or not isinstance(n_rows, int | np.integer) or n_rows < 1:
        raise DataError(f"n_rows must be an integer >= 1, got {n_rows!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise DataError(f"seed must be an integer >= 0, got {seed!r}")
    if not math.isfinite(numeric_shift):
        raise DataError(f"numeric_shift must be a finite number, got {numeric_shift!r}")
    if not 0.0 <= concept_shift <= 1.0:
        raise DataError(f"concept_shift must be between 0 and 1, got {concept_shift!r}")
    if not 0.0 <= missing_rate <= 1.0:
        raise DataError(f"missing_rate must be between 0 and 1, got {missing_rate!r}")
    if category_mix is None:
        return np.array(_GEO_MIX)
    unknown = sorted(set(category_mix) - set(GEOGRAPHIES))
    if unknown:
        raise DataError(
            f"category_mix has unknown Geography value(s) {unknown}; use {list(GEOGRAPHIES)}"
        )
    probs = np.array([float(category_mix.get(g, 0.0)) for g in GEOGRAPHIES])
    if not np.all(np.isfinite(probs)) or np.any(probs < 0):
        raise DataError(f"category_mix probabilities must be >= 0, got {category_mix}")
    if abs(probs.sum() - 1.0) > 1e-3:
        raise DataError(f"category_mix probabilities must sum to 1, they sum to {probs.sum():g}")
    return probs / probs.sum()


def _draw_products(u: np.ndarray, funded: np.ndarray) -> np.ndarray:
    """Product count 1..4 from uniforms, with thresholds depending on the balance."""
    products = np.ones(len(u), dtype=np.int64)
    for empty_cut, funded_cut in zip(_PRODUCTS_CUM_EMPTY, _PRODUCTS_CUM_FUNDED, strict=True):
        products += u >= np.where(funded, funded_cut, empty_cut)
    return products


def _churn_logit(
    age: np.ndarray,
    score: np.ndarray,
    geo: np.ndarray,
    female: np.ndarray,
    tenure: np.ndarray,
    funded: np.ndarray,
    products: np.ndarray,
    active: np.ndarray,
    concept_shift: float,
) -> np.ndarray:
    """Log-odds of churning; ``concept_shift`` moves weight from age/activity to tenure."""
    keep = 1.0 - concept_shift
    # Churn peaks for customers in their fifties; the band is wider on the older side.
    width = np.where(age < 56, 7.5, 10.0)
    age_band = 3.6 * np.exp(-(((age - 56.0) / width) ** 2))
    germany = geo == 1
    logit = (
        _INTERCEPT_BASE * keep
        + _INTERCEPT_SHIFTED * concept_shift
        + keep * age_band
        + 0.03 * (age - 38.0)
        - keep * 1.2 * active
        + 0.45 * germany
        + 0.55 * (germany & funded)
        + 0.5 * female
        + _PRODUCT_EFFECT[products]
        + 0.7 * (score < 450)
        + concept_shift * 2.2 * (tenure <= 2)
    )
    return logit


def _blank_mask(rng: np.random.Generator, n: int, rate: float) -> np.ndarray | None:
    """Cells to blank, drawn from the dedicated stream (None when nothing is blanked)."""
    if rate <= 0.0:
        return None
    return rng.random(n) < rate


def _blank_numbers(values: np.ndarray, rng: np.random.Generator, rate: float) -> np.ndarray:
    mask = _blank_mask(rng, len(values), rate)
    if mask is None:
        return values
    out = values.astype(np.float64)
    out[mask] = np.nan
    return out


def _strings(labels: tuple[str, ...], codes: np.ndarray, missing: np.ndarray | None) -> pd.Series:
    """Label strings for integer codes as the default text dtype (missing cells become NaN)."""
    try:
        import pyarrow as pa

        dtype = pd.StringDtype("pyarrow", na_value=np.nan)
    except (ImportError, TypeError):  # pandas < 2.3 or no pyarrow: plain object strings
        out = np.array(labels, dtype=object)[codes]
        if missing is not None:
            out[missing] = np.nan
        return pd.Series(out, dtype=object)
    # Arrow's take builds a million strings in milliseconds; Python objects take 10x longer.
    taken = pa.array(labels).take(pa.array(codes, mask=missing))
    return pd.Series(taken, dtype=dtype)
