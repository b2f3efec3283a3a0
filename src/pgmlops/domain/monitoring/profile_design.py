"""A reference profile told how its rows were drawn (design_effect.py), at training time."""

from __future__ import annotations

import pandas as pd

from pgmlops.domain.monitoring.design_effect import sample_design
from pgmlops.domain.monitoring.profile_records import ReferenceProfile


def with_designs(
    profile: ReferenceProfile,
    x_ref: pd.DataFrame,
    x_out: pd.DataFrame,
    total_rows: int,
    *,
    out_of_fold: bool = False,
) -> ReferenceProfile:
    """``profile`` knowing its samples: features drawn as ``x_ref``, outputs on ``x_out``.

    ``out_of_fold``: the outputs are every labelled row's, each from a model that did not
    fit it (domain/training/crossfit.py), rather than the held-out rows' alone.
    """
    update: dict[str, object] = {"design": sample_design(x_ref, total_rows)}
    if profile.output is not None:
        design = sample_design(x_out, total_rows).model_copy(
            update={"rows": "out_of_fold" if out_of_fold else "held_out"}
        )
        output = profile.output.model_copy(update={"design": design})
        update["output"] = output
    return profile.model_copy(update=update)
