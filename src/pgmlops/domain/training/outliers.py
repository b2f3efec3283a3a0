"""Training-only outlier handling: IQR clipping or removal of the training split's rows."""

from __future__ import annotations

from typing import Literal

import pandas as pd


def handle_outliers(
    x: pd.DataFrame,
    y: pd.Series,
    numeric: list[str],
    mode: Literal["none", "clip", "remove"],
    factor: float,
) -> tuple[pd.DataFrame, pd.Series, str | None]:
    """IQR clipping or removal on the training split only; serving never sees this step."""
    if mode == "none" or not numeric:
        return x, y, None
    q1, q3 = x[numeric].quantile(0.25), x[numeric].quantile(0.75)
    low, high = q1 - factor * (q3 - q1), q3 + factor * (q3 - q1)
    if mode == "clip":
        x = x.copy()
        x[numeric] = x[numeric].clip(low, high, axis=1)
        return x, y, f"outliers clipped to Q1/Q3 ± {factor}·IQR in training rows"
    values = x[numeric]
    outside = ((values < low) | (values > high)).any(axis=1)
    kept = ~outside.to_numpy()
    if kept.sum() < max(10, 0.5 * len(x)):
        return x, y, "outlier removal skipped: it would remove more than half of the rows"
    return (
        x[kept].reset_index(drop=True),
        y[kept].reset_index(drop=True),
        f"{int(outside.sum())} training rows removed as outliers (IQR × {factor})",
    )
