"""A reference profile told how its rows were drawn (design_effect.py), at training time."""

from __future__ import annotations

import pandas as pd

from pgmlops.domain.monitoring.design_effect import OutputRows, SampleDesign, sample_design
from pgmlops.domain.monitoring.profile_records import ReferenceProfile


def with_designs(
    profile: ReferenceProfile,
    x_ref: pd.DataFrame,
    x_out: pd.DataFrame,
    total_rows: int,
    *,
    rows: OutputRows = "held_out",
) -> ReferenceProfile:
    """``profile`` knowing its samples: features drawn as ``x_ref``, outputs on ``x_out``.

    ``rows``: how the outputs were taken: every labelled row's as served
    (domain/training/crossfit.py served_scores), every labelled row's out of fold, or the held-out
    rows' alone.
    """
    return with_feature_design(
        profile, sample_design(x_ref, total_rows), x_out, total_rows, rows=rows
    )


def with_feature_design(
    profile: ReferenceProfile,
    design: SampleDesign,
    x_out: pd.DataFrame,
    total_rows: int,
    *,
    rows: OutputRows = "held_out",
) -> ReferenceProfile:
    """``profile`` with the features' ``design`` counted elsewhere, outputs on ``x_out``.

    For a reference whose rows are not all in this process (services/training/dask/design.py).
    """
    update: dict[str, object] = {"design": design}
    if profile.output is not None:
        out = sample_design(x_out, total_rows).model_copy(update={"rows": rows})
        update["output"] = profile.output.model_copy(update={"design": out})
    return profile.model_copy(update=update)
