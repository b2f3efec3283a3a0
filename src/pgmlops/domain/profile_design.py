"""A reference profile told how its rows were drawn (design_effect.py), at training time."""

from __future__ import annotations

import pandas as pd

from pgmlops.domain.design_effect import sample_design
from pgmlops.domain.profile_records import ReferenceProfile


def with_designs(
    profile: ReferenceProfile, x_ref: pd.DataFrame, x_out: pd.DataFrame, total_rows: int
) -> ReferenceProfile:
    """``profile`` knowing its samples: features drawn as ``x_ref``, outputs on ``x_out``."""
    update: dict[str, object] = {"design": sample_design(x_ref, total_rows)}
    if profile.output is not None:
        output = profile.output.model_copy(update={"design": sample_design(x_out, total_rows)})
        update["output"] = output
    return profile.model_copy(update=update)
