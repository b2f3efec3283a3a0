"""One decision scale for classifier answers: confidence and risk level agree with the class.

A binary model says "positive" at or above its tuned threshold ``t``, not at 0.5. Its
probability is mapped piecewise-linearly onto a decision score with ``t`` at 0.5 (0 stays 0,
1 stays 1); confidence is the score's distance from 0.5, doubled, and risk levels are bands
of the score. So the confidence is 0 exactly at the threshold and 1 at certainty on either
side, and with the default bands every "low" answer is negative and every "medium" or "high"
one positive. With ``t = 0.5`` the score is the probability and the confidence |p - 0.5| * 2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from pgmlops.domain.kinds import Task

# numpy is imported by the functions that compute: settings import this module for the risk
# bands (serving_config), and reading settings should not load numpy.
if TYPE_CHECKING:
    import numpy as np

# The band whose lower bound is the threshold's place on the decision score.
THRESHOLD_SCORE = 0.5
DEFAULT_RISK_LEVELS: dict[str, float] = {"low": 0.0, "medium": 0.5, "high": 0.75}


def decision_score(proba: np.ndarray, threshold: float | None) -> np.ndarray:
    """P(positive) on the threshold's scale: ``t`` maps to 0.5, below it to [0, 0.5)."""
    import numpy as np

    t = 0.5 if threshold is None else float(threshold)
    p = np.asarray(proba, dtype=np.float64)
    # Room on each side of the threshold; a threshold at 0 or 1 leaves none on one side.
    above = 1.0 - t
    with np.errstate(divide="ignore", invalid="ignore"):
        up = 0.5 + 0.5 * np.where(above > 0, (p - t) / above, 1.0)
        down = 0.5 * p / t if t > 0 else np.zeros_like(p)
    return np.clip(np.where(p >= t, up, down), 0.0, 1.0)


def confidence(proba: np.ndarray, task: Task, threshold: float | None = None) -> np.ndarray:
    """Per-row confidence in [0, 1] on the decision scale: 0 at the threshold, 1 at certainty.

    Binary: the distance of P(positive) from the tuned ``threshold`` (0.5 when None), as a
    share of the room on that side; multiclass: the top probability (the class chosen).
    """
    import numpy as np

    if task == "regression":
        raise ValueError("confidence needs class probabilities; a regression model has none")
    values = np.asarray(proba, dtype=np.float64)
    if task == "binary":
        positive = values[:, 1] if values.ndim == 2 else values
        return np.abs(decision_score(positive, threshold) - THRESHOLD_SCORE) * 2.0
    return values.max(axis=1)


def risk_levels(values: np.ndarray, levels: Mapping[str, float]) -> list[str]:
    """Per value, the name of the highest band whose lower bound is at or below it."""
    import numpy as np

    ordered = sorted(levels.items(), key=lambda kv: kv[1])
    names = np.array([name for name, _ in ordered], dtype=object)
    bounds = np.array([lower for _, lower in ordered], dtype=np.float64)
    at = np.searchsorted(bounds, np.asarray(values, dtype=np.float64), side="right") - 1
    return names[np.clip(at, 0, len(names) - 1)].tolist()


def answer_scale(
    proba: np.ndarray, task: Task, threshold: float | None, levels: Mapping[str, float]
) -> tuple[list[float], list[str]]:
    """Each row's confidence and risk level, as every answer reports them.

    Binary: risk bands of the decision score; multiclass: bands of the top probability.
    """
    import numpy as np

    values = np.asarray(proba, dtype=np.float64)
    if task == "binary":
        score = decision_score(values, threshold)
        return (np.abs(score - THRESHOLD_SCORE) * 2.0).tolist(), risk_levels(score, levels)
    conf = values.max(axis=1)
    return conf.tolist(), risk_levels(conf, levels)


def scale_one(
    proba: float | list[float], task: Task, threshold: float | None, levels: Mapping[str, float]
) -> tuple[float, str]:
    """``answer_scale`` for one row in plain Python (a single request never touches numpy)."""
    if task == "binary":
        p = float(proba)  # type: ignore[arg-type]
        t = 0.5 if threshold is None else float(threshold)
        below = p < t
        score = 0.5 * p / t if below else 1.0 if t >= 1.0 else 0.5 + 0.5 * (p - t) / (1.0 - t)
        score = min(max(score, 0.0), 1.0)
        value, conf = score, abs(score - THRESHOLD_SCORE) * 2.0
    else:
        value = conf = max(proba)  # type: ignore[arg-type]
    name = min(levels, key=levels.__getitem__)
    for band, lower in levels.items():
        if levels[name] < lower <= value:
            name = band
    return conf, name


def check_risk_levels(levels: Mapping[str, float]) -> None:
    """Refuse bands that would let a risk level straddle the decision (ValueError)."""
    if not levels:
        raise ValueError("needs at least two bands, e.g. {low: 0.0, medium: 0.5, high: 0.75}")
    bounds = sorted(levels.values())
    bad = [b for b in bounds if not 0.0 <= b < 1.0]
    if bad:
        raise ValueError(f"a band's lower bound must be in [0, 1), got {bad[0]}")
    if len(set(bounds)) != len(bounds):
        raise ValueError("two bands start at the same score")
    if bounds[0] != 0.0 or THRESHOLD_SCORE not in bounds:
        raise ValueError(
            "needs a band starting at 0.0 and one at 0.5 (the tuned threshold), so that no "
            "band holds both classes' answers"
        )
