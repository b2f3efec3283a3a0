"""A trained version's reference profile records how repeated its rows are, for the drift tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pgmlops.services.commands import train_version
from pgmlops.services.context import Context
from pgmlops.services.monitoring import load_profile


def test_training_stores_the_design_effect_of_repeated_feature_vectors(ctx: Context) -> None:
    rng = np.random.default_rng(0)
    # 60 people with fixed covariates, each seen 20 times with a varying outcome (panel data).
    people = pd.DataFrame({"age": np.arange(20, 80), "plan": rng.choice(["a", "b"], 60)})
    rows = people.loc[people.index.repeat(20)].reset_index(drop=True)
    rows["spend"] = rng.gamma(2.0, 50.0, len(rows)) + rows["age"]
    result = train_version(
        ctx, data=rows, target="spend", model_name="panel", actor="t", onnx=False,
        overrides={"params": {"max_iter": 20}, "reference_folds": 0},
    )  # fmt: skip
    profile = load_profile(ctx, result.version)
    split = result.version.card.split
    assert profile.design is not None and profile.output is not None
    assert profile.output.design is not None
    # Every distinct vector has 20 copies and the split keeps copies together: deff is 20.
    assert profile.design.deff == pytest.approx(20.0)
    assert profile.output.design.deff == pytest.approx(20.0)
    assert profile.design.share == pytest.approx(split.train_rows / len(rows))
    assert profile.design.distinct == split.train_rows // 20
    assert profile.inflation == pytest.approx(
        profile.design.share + (1 - profile.design.share) * 20.0
    )
