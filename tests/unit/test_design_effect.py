"""Drift references that know their sample: repeated rows count as the clusters they are."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pgmlops.domain.monitoring.design_effect import (
    SampleDesign,
    counted_design,
    pair_rows,
    sample_design,
)
from pgmlops.domain.monitoring.drift import ReferenceProfile, build_profile, compare
from pgmlops.domain.monitoring.profile_design import with_designs
from pgmlops.domain.schema import FeatureSchema, FeatureSpec

SCHEMA = FeatureSchema(
    task="regression",
    target="y",
    features=[FeatureSpec(name="x", kind="numeric"), FeatureSpec(name="g", kind="categorical")],
)


def _population(rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    """300 feature vectors each repeated about 30 times, as panel data repeats a person."""
    sizes = 1 + rng.poisson(29, 300)
    x = rng.normal(size=300)
    g = rng.choice(["a", "b", "c", "d", "e"], size=300, p=[0.4, 0.25, 0.15, 0.12, 0.08])
    cluster = np.repeat(np.arange(300), sizes)
    return pd.DataFrame({"x": x[cluster], "g": g[cluster]}), cluster


def _scores(frame: pd.DataFrame) -> np.ndarray:
    return np.asarray(2.0 * frame["x"] + (frame["g"] == "a"), dtype=np.float64)


def _trial(seed: int) -> tuple[ReferenceProfile, pd.DataFrame]:
    """A reference of the clusters a hash sends to training (60%), a window of any rows."""
    rng = np.random.default_rng(seed)
    data, cluster = _population(rng)
    ref_rows = data[rng.random(300)[cluster] < 0.6].reset_index(drop=True)
    held = data[rng.random(300)[cluster] < 0.2].reset_index(drop=True)
    plain = build_profile(ref_rows, SCHEMA, scores=_scores(held), seed=seed)
    profile = with_designs(plain, ref_rows, held, len(data))
    window = data.iloc[rng.choice(len(data), size=3_000, replace=False)].reset_index(drop=True)
    return profile, window


def test_the_design_effect_is_the_size_weighted_mean_cluster_size() -> None:
    frame = pd.DataFrame({"x": [1.0] * 3 + [2.0] * 1, "g": ["a"] * 3 + ["b"]})
    design = sample_design(frame, total_rows=8)
    assert design.deff == pytest.approx((9 + 1) / 4)  # sum(c^2) / sum(c)
    assert design.share == 0.5 and design.distinct == 2
    assert design.inflation == pytest.approx(0.5 + 0.5 * 2.5)
    distinct = sample_design(pd.DataFrame({"x": [1.0, 2.0, 3.0]}), total_rows=3)
    assert distinct.deff == 1.0 and distinct.inflation == 1.0


def test_the_sums_alone_give_the_design_of_rows_counted_elsewhere() -> None:
    # What the Dask trainer sends back from its partitions: rows, sum(c^2), distinct vectors.
    frame = pd.DataFrame({"x": [1.0] * 3 + [2.0] * 1, "g": ["a"] * 3 + ["b"]})
    assert counted_design(4, 9.0 + 1.0, 2, total_rows=8) == sample_design(frame, total_rows=8)
    assert counted_design(0, 0.0, 0, total_rows=8) == sample_design(frame.iloc[:0], 8)


def test_a_clustered_reference_no_longer_alarms_on_windows_from_its_own_population() -> None:
    naive = {"x": 0, "g": 0, "output": 0}
    knowing = {"x": 0, "g": 0, "output": 0}
    trials = 30
    for seed in range(trials):
        profile, window = _trial(seed)
        assert profile.design is not None and profile.design.deff > 20
        for counts, used in ((knowing, profile), (naive, _without_design(profile))):
            report = compare(used, window, scores=_scores(window), schema=SCHEMA)
            assert report.output is not None
            for f in report.features:
                counts[f.name] += f.p_value < 0.05
            counts["output"] += report.output.p_value < 0.05
    # Treating ~30 copies of a row as 30 rows: most windows look drifted at p < 0.05.
    assert min(naive.values()) >= trials // 2, naive
    # Sized by what the reference knows, the tests hold their level (5% of 30 is 1.5).
    assert max(knowing.values()) <= 4, knowing


def _without_design(profile: ReferenceProfile) -> ReferenceProfile:
    assert profile.output is not None
    output = profile.output.model_copy(update={"design": None})
    return profile.model_copy(update={"design": None, "output": output})


def test_a_profile_without_repeats_or_without_a_design_tests_as_before() -> None:
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"x": rng.normal(size=2_000), "g": rng.choice(["a", "b"], 2_000)})
    window = pd.DataFrame({"x": rng.normal(0.1, 1, 500), "g": rng.choice(["a", "b"], 500)})
    plain = build_profile(ref, SCHEMA, scores=_scores(ref))
    designed = with_designs(plain, ref, ref, 4_000)
    assert designed.design == SampleDesign(deff=1.0, share=0.5, distinct=2_000)
    before = compare(plain, window, scores=_scores(window), schema=SCHEMA)
    after = compare(designed, window, scores=_scores(window), schema=SCHEMA)
    assert [f.p_value for f in after.features] == [f.p_value for f in before.features]
    assert after.output is not None and before.output is not None
    assert after.output.p_value == before.output.p_value
    # An old stored profile (no design field) reads back as today's test.
    old = ReferenceProfile.model_validate_json(plain.model_dump_json(exclude={"design"}))
    assert old.inflation == 1.0


def test_pair_rows_shrinks_only_the_reference() -> None:
    assert pair_rows(1_000, 1_000) == pytest.approx(500)
    assert pair_rows(1_000, 1_000, inflation=4.0) == pytest.approx(250 * 1_000 / 1_250)
