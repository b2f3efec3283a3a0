"""Drift statistics: corrected p-values with effect floors, computed from a stored profile."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.monitoring.drift import (
    DriftPolicy,
    DriftReport,
    ReferenceProfile,
    benjamini_hochberg,
    bonferroni,
    build_profile,
    compare,
    detect_drift,
)
from pgmlops.domain.monitoring.profile import MAX_SAMPLE_SIZE
from pgmlops.domain.monitoring.profile_records import NumericProfile
from pgmlops.domain.schema import FeatureSchema, FeatureSpec
from pgmlops.domain.training.frame import prepare_training_frame
from pgmlops.errors import DataError

SHIFTED_NUMERIC = ["Age", "CreditScore", "Balance", "EstimatedSalary"]
UNSHIFTED = ["Geography", "Gender", "Tenure", "NumOfProducts", "HasCrCard", "IsActiveMember"]


@pytest.fixture(scope="module")
def churn() -> tuple[ReferenceProfile, FeatureSchema]:
    x, _, schema = prepare_training_frame(make_churn(20_000, seed=0), "Exited", drop=["CustomerId"])
    return build_profile(x, schema), schema


def _one_column(values: np.ndarray, name: str = "x") -> pd.DataFrame:
    return pd.DataFrame({name: values})


def test_benjamini_hochberg_matches_a_hand_computed_case() -> None:
    # Sorted: 0.005, 0.01, 0.03, 0.04 -> times m/rank: 0.02, 0.02, 0.04, 0.04; already
    # monotone, so back in input order the adjusted values are 0.02, 0.04, 0.04, 0.02.
    adjusted = benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.005]))
    np.testing.assert_allclose(adjusted, [0.02, 0.04, 0.04, 0.02])


def test_benjamini_hochberg_takes_the_minimum_over_higher_ranks_and_caps_at_one() -> None:
    # Sorted 0.01, 0.02, 0.9 -> 0.03, 0.03, 0.9; and 0.8 * 2 / 1 = 1.6 is capped at 1.
    np.testing.assert_allclose(benjamini_hochberg([0.9, 0.02, 0.01]), [0.9, 0.03, 0.03])
    np.testing.assert_allclose(benjamini_hochberg([0.8, 0.9]), [0.9, 0.9])
    assert benjamini_hochberg([]).size == 0


def test_bonferroni_multiplies_by_the_number_of_tests_and_caps_at_one() -> None:
    adjusted = bonferroni(np.array([0.01, 0.04, 0.03, 0.005, 0.5]))
    np.testing.assert_allclose(adjusted, [0.05, 0.2, 0.15, 0.025, 1.0])


def test_corrections_reject_values_that_are_not_probabilities() -> None:
    with pytest.raises(DataError, match="between 0 and 1"):
        benjamini_hochberg([0.1, 1.5])
    with pytest.raises(DataError, match="between 0 and 1"):
        bonferroni([np.nan])


def test_windows_from_the_reference_distribution_rarely_raise_dataset_drift(
    churn: tuple[ReferenceProfile, FeatureSchema],
) -> None:
    profile, schema = churn
    reports = [
        compare(profile, make_churn(2_000, seed=1_000 + i), DriftPolicy(), schema=schema)
        for i in range(40)
    ]
    assert sum(r.dataset_drift for r in reports) == 0
    flagged = sum(len(r.drifted_features) for r in reports)
    assert flagged <= 1  # of 400 feature tests


def test_numeric_shift_flags_the_shifted_columns(
    churn: tuple[ReferenceProfile, FeatureSchema],
) -> None:
    profile, schema = churn
    window = make_churn(2_000, seed=77, numeric_shift=0.5)
    report = compare(profile, window, DriftPolicy(), schema=schema)
    assert sorted(report.drifted_features) == sorted(SHIFTED_NUMERIC)
    age = report.feature("Age")
    assert age.test == "ks" and age.p_adjusted < 0.05 and age.wasserstein_norm >= 0.4
    assert "wasserstein_norm" in age.reason
    assert not any(report.feature(name).drifted for name in UNSHIFTED)
    assert report.share_drifted == pytest.approx(0.4)
    # 4 of 10 stays under the default 50%, but the domain classifier sees the shift.
    assert report.multivariate is not None and report.multivariate.drifted
    assert report.dataset_drift and "domain classifier" in report.reason
    alone = compare(profile, window, DriftPolicy(multivariate=False), schema=schema)
    assert not alone.dataset_drift and alone.multivariate is None


def test_a_drifted_critical_feature_raises_dataset_drift_on_its_own(
    churn: tuple[ReferenceProfile, FeatureSchema],
) -> None:
    profile, _ = churn
    window = make_churn(2_000, seed=77, numeric_shift=0.5)
    report = compare(profile, window, DriftPolicy(critical_features=["Age"]))
    assert report.dataset_drift
    assert "Age" in report.reason
    calm = compare(profile, make_churn(2_000, seed=78), DriftPolicy(critical_features=["Age"]))
    assert not calm.dataset_drift


def test_a_new_country_mix_flags_geography_only(
    churn: tuple[ReferenceProfile, FeatureSchema],
) -> None:
    profile, schema = churn
    mix = {"France": 0.2, "Germany": 0.6, "Spain": 0.2}
    report = compare(profile, make_churn(2_000, seed=5, category_mix=mix), schema=schema)
    assert report.drifted_features == ["Geography"]
    geo = report.feature("Geography")
    assert geo.test == "chi2" and geo.js >= 0.1 and geo.p_adjusted < 1e-10


def test_a_tiny_shift_on_a_huge_window_is_significant_but_not_flagged() -> None:
    rng = np.random.default_rng(3)
    reference = _one_column(rng.normal(0.0, 1.0, 500_000))
    # 0.02 std: KS sees it clearly at n=500k, but it is far below any effect floor.
    current = _one_column(rng.normal(0.02, 1.0, 500_000))
    report = detect_drift(reference, current, numeric=["x"], categorical=[])
    x = report.feature("x")
    assert x.p_adjusted < 0.05
    assert x.wasserstein_norm < 0.1 and x.psi < 0.1
    assert not x.drifted
    assert "effect is small" in x.reason


def test_the_same_shift_is_flagged_when_effect_floors_are_zero() -> None:
    rng = np.random.default_rng(3)
    reference = _one_column(rng.normal(0.0, 1.0, 500_000))
    current = _one_column(rng.normal(0.02, 1.0, 500_000))
    policy = DriftPolicy(wasserstein_floor=0.0, psi_floor=0.0)
    report = detect_drift(reference, current, numeric=["x"], categorical=[], policy=policy)
    assert report.feature("x").drifted


def test_ks_statistic_and_p_value_match_scipy() -> None:
    rng = np.random.default_rng(11)
    a, b = rng.normal(0.0, 1.0, 20_000), rng.normal(0.1, 1.1, 3_000)
    report = detect_drift(_one_column(a), _one_column(b), numeric=["x"], categorical=[])
    expected = stats.ks_2samp(a, b, method="asymp")
    # The reference is kept as 1001 quantiles, so the statistic is exact to ~1/1000.
    assert report.feature("x").statistic == pytest.approx(expected.statistic, abs=2e-3)
    assert report.feature("x").p_value == pytest.approx(expected.pvalue, rel=0.5)


def test_wasserstein_matches_scipy_for_continuous_and_discrete_columns() -> None:
    rng = np.random.default_rng(12)
    cases = [
        (rng.normal(0, 1, 50_000), rng.normal(0.5, 1.5, 20_000)),
        (rng.integers(0, 11, 20_000).astype(float), rng.integers(0, 13, 5_000).astype(float)),
    ]
    for a, b in cases:
        report = detect_drift(_one_column(a), _one_column(b), numeric=["x"], categorical=[])
        expected = stats.wasserstein_distance(a, b) / a.std()
        assert report.feature("x").wasserstein_norm == pytest.approx(expected, rel=0.02)


def test_chi_square_matches_a_contingency_table_test() -> None:
    rng = np.random.default_rng(13)
    a = rng.choice(["a", "b", "c"], 20_000, p=[0.5, 0.3, 0.2])
    b = rng.choice(["a", "b", "c"], 2_000, p=[0.45, 0.33, 0.22])
    report = detect_drift(
        pd.DataFrame({"c": a}), pd.DataFrame({"c": b}), numeric=[], categorical=["c"]
    )
    table = pd.crosstab(np.r_[np.zeros(len(a)), np.ones(len(b))], np.r_[a, b])
    statistic, p_value, *_ = stats.chi2_contingency(table, correction=False)
    assert report.feature("c").statistic == pytest.approx(statistic)
    assert report.feature("c").p_value == pytest.approx(p_value)


def test_unseen_categories_are_pooled_reported_and_flagged_when_large(
    churn: tuple[ReferenceProfile, FeatureSchema],
) -> None:
    profile, schema = churn
    window = make_churn(2_000, seed=9)
    italy = np.arange(len(window)) % 3 == 0
    window["Geography"] = window["Geography"].where(~italy, "Italy")
    report = compare(profile, window, schema=schema)
    geo = report.feature("Geography")
    assert geo.unseen_categories == ["Italy"]
    assert geo.drifted
    assert "unseen" in geo.reason and np.isfinite(geo.psi) and np.isfinite(geo.statistic)


def test_a_handful_of_unseen_values_is_reported_but_not_flagged(
    churn: tuple[ReferenceProfile, FeatureSchema],
) -> None:
    profile, schema = churn
    window = make_churn(2_000, seed=9)
    window.loc[:2, "Geography"] = ["Italy", "Portugal", "Italy"]
    geo = compare(profile, window, schema=schema).feature("Geography")
    assert geo.unseen_categories == ["Italy", "Portugal"]
    assert not geo.drifted


def test_columns_going_blank_count_as_drift(
    churn: tuple[ReferenceProfile, FeatureSchema],
) -> None:
    profile, schema = churn
    report = compare(profile, make_churn(2_000, seed=4, missing_rate=0.3), schema=schema)
    blanked = ["CreditScore", "Tenure", "Geography", "EstimatedSalary"]
    assert sorted(report.drifted_features) == sorted(blanked)
    assert report.feature("Tenure").missing_rate_current == pytest.approx(0.3, abs=0.04)
    assert report.feature("Tenure").missing_rate_reference == 0.0
    # 4 of 10 blank in 30% of rows: under the share rule, but the domain classifier sees it.
    assert report.multivariate is not None and report.multivariate.drifted


def test_bonferroni_policy_adjusts_more_conservatively_than_bh(
    churn: tuple[ReferenceProfile, FeatureSchema],
) -> None:
    profile, _ = churn
    window = make_churn(2_000, seed=21, numeric_shift=0.1)
    bh = compare(profile, window, DriftPolicy(correction="bh"))
    bonf = compare(profile, window, DriftPolicy(correction="bonferroni"))
    for a, b in zip(bh.features, bonf.features, strict=True):
        assert a.p_value == b.p_value
        assert b.p_adjusted >= a.p_adjusted
    assert any(b.p_adjusted > a.p_adjusted for a, b in zip(bh.features, bonf.features, strict=True))


def test_a_window_below_min_rows_is_refused_with_both_counts(
    churn: tuple[ReferenceProfile, FeatureSchema],
) -> None:
    profile, _ = churn
    with pytest.raises(DataError, match=r"has 150 rows.*at least 200"):
        compare(profile, make_churn(150, seed=1), DriftPolicy())
    report = compare(profile, make_churn(150, seed=1), DriftPolicy(min_rows=100))
    assert report.n_current == 150


def test_a_profile_missing_a_schema_feature_is_refused_by_name(
    churn: tuple[ReferenceProfile, FeatureSchema],
) -> None:
    _, schema = churn
    x, _, _ = prepare_training_frame(make_churn(2_000, seed=0), "Exited", drop=["CustomerId"])
    partial = schema.model_copy(
        update={"features": [f for f in schema.features if f.name != "Age"]}
    )
    profile = build_profile(x, partial)
    with pytest.raises(DataError, match="'Age'"):
        compare(profile, make_churn(500, seed=1), schema=schema)


def test_a_window_without_a_feature_column_is_refused_by_name(
    churn: tuple[ReferenceProfile, FeatureSchema],
) -> None:
    profile, _ = churn
    with pytest.raises(DataError, match="Tenure"):
        compare(profile, make_churn(500, seed=1).drop(columns=["Tenure"]))


def test_text_in_a_numeric_column_is_refused_by_name(
    churn: tuple[ReferenceProfile, FeatureSchema],
) -> None:
    profile, _ = churn
    window = make_churn(500, seed=1).astype({"Age": object})
    window.loc[3, "Age"] = "old"
    with pytest.raises(DataError, match="'Age' must be numeric"):
        compare(profile, window)


def test_unknown_critical_features_and_overlapping_column_lists_are_refused(
    churn: tuple[ReferenceProfile, FeatureSchema],
) -> None:
    profile, _ = churn
    with pytest.raises(DataError, match="Salary"):
        compare(profile, make_churn(500, seed=1), DriftPolicy(critical_features=["Salary"]))
    frame = make_churn(500, seed=1)
    with pytest.raises(DataError, match="Age"):
        detect_drift(frame, frame, numeric=["Age"], categorical=["Age"])


def test_the_profile_round_trips_through_json_and_stays_small(
    churn: tuple[ReferenceProfile, FeatureSchema],
) -> None:
    profile, _ = churn
    text = profile.model_dump_json()
    # Most of it is the 5,000 reference rows kept for the domain classifier.
    assert profile.rows is not None and profile.rows.n == 5_000
    assert len(text.encode()) < 600_000
    restored = ReferenceProfile.model_validate_json(text)
    assert restored == profile
    window = make_churn(2_000, seed=77, numeric_shift=0.5)
    assert compare(restored, window) == compare(profile, window)


def test_the_profile_keeps_a_bounded_sample_not_the_raw_reference() -> None:
    df = make_churn(50_000, seed=2)
    x, _, schema = prepare_training_frame(df, "Exited", drop=["CustomerId"])
    profile = build_profile(x, schema, sample_size=MAX_SAMPLE_SIZE)
    age = profile.feature("Age")
    assert isinstance(age, NumericProfile)
    assert len(age.sample) == MAX_SAMPLE_SIZE and len(age.grid) <= 1001
    assert age.grid_counts[-1] == 50_000
    again = build_profile(x, schema, sample_size=MAX_SAMPLE_SIZE)
    assert again.feature("Age") == age  # the sample is seeded
    with pytest.raises(DataError, match="sample_size"):
        build_profile(x, schema, sample_size=MAX_SAMPLE_SIZE + 1)


def _binary_schema() -> FeatureSchema:
    return FeatureSchema(
        task="binary",
        target="y",
        classes=["0", "1"],
        features=[FeatureSpec(name="x", kind="numeric")],
    )


def test_output_drift_flags_shifted_scores_and_reports_confidence() -> None:
    rng = np.random.default_rng(5)
    schema = _binary_schema()
    frame = _one_column(rng.normal(size=5_000))
    profile = build_profile(frame, schema, scores=rng.beta(2, 5, 5_000))
    same = compare(profile, frame.iloc[:1_000], scores=rng.beta(2, 5, 1_000))
    moved = compare(profile, frame.iloc[:1_000], scores=rng.beta(5, 2, 1_000))
    assert same.output is not None and moved.output is not None
    assert not same.output.drifted
    assert moved.output.drifted and moved.output.output == "probability"
    assert moved.output.mean_confidence_reference == pytest.approx(0.46, abs=0.04)
    assert moved.output.mean_confidence_current == pytest.approx(0.46, abs=0.06)


def test_output_drift_for_multiclass_counts_predicted_classes() -> None:
    rng = np.random.default_rng(6)
    schema = FeatureSchema(
        task="multiclass",
        target="y",
        classes=["a", "b", "c"],
        features=[FeatureSpec(name="x", kind="numeric")],
    )
    frame = _one_column(rng.normal(size=3_000))
    profile = build_profile(frame, schema, scores=rng.dirichlet([5, 3, 2], 3_000))
    assert profile.output is not None and profile.output.mean_confidence is not None
    report = compare(profile, frame.iloc[:1_000], scores=rng.dirichlet([2, 3, 5], 1_000))
    assert report.output is not None
    assert report.output.test == "chi2" and report.output.drifted


def test_scores_against_a_profile_without_outputs_are_refused(
    churn: tuple[ReferenceProfile, FeatureSchema],
) -> None:
    profile, _ = churn
    with pytest.raises(DataError, match="no output profile"):
        compare(profile, make_churn(500, seed=1), scores=np.full(500, 0.5))


def test_the_report_is_json_serialisable(
    churn: tuple[ReferenceProfile, FeatureSchema],
) -> None:
    profile, _ = churn
    report = compare(profile, make_churn(1_000, seed=3, numeric_shift=0.5))
    assert DriftReport.model_validate_json(report.model_dump_json()) == report


# -- sample-size-aware effect bars and the multivariate detector ----------------------------


def _window(n: int, seed: int, shift: dict[str, float], sds: dict[str, float]) -> pd.DataFrame:
    window = make_churn(n, seed=seed)
    for name, by in shift.items():
        window[name] = window[name] + by * sds[name]
    return window


def test_a_fixed_shift_is_flagged_at_least_as_often_in_larger_windows(
    churn: tuple[ReferenceProfile, FeatureSchema],
) -> None:
    profile, schema = churn
    sds = {"Balance": 57_518.75}  # the reference Balance sd: zeros and funded accounts
    policy = DriftPolicy(multivariate=False)
    rates = {}
    for n in (500, 5_000):
        flagged = [
            compare(profile, _window(n, 600 + i, {"Balance": 0.07}, sds), policy, schema=schema)
            .feature("Balance")
            .drifted
            for i in range(12)
        ]
        rates[n] = sum(flagged)
    # W1/sd 0.07 is above the 0.05 floor: once the window outgrows chance it is flagged.
    assert rates[5_000] >= rates[500]
    assert rates[5_000] >= 10


def test_the_effect_bar_is_chance_at_small_windows_and_the_floor_at_large_ones(
    churn: tuple[ReferenceProfile, FeatureSchema],
) -> None:
    profile, schema = churn
    policy = DriftPolicy(multivariate=False)
    small = compare(profile, make_churn(300, seed=31), policy, schema=schema).feature("Age")
    large = compare(profile, make_churn(50_000, seed=32), policy, schema=schema).feature("Age")
    assert small.effect_thresholds["wasserstein_norm"] > 2 * policy.wasserstein_floor
    assert large.effect_thresholds["wasserstein_norm"] == policy.wasserstein_floor
    assert small.effect_thresholds["psi"] > large.effect_thresholds["psi"] >= policy.psi_floor


def test_in_distribution_windows_flag_almost_no_feature_and_never_the_dataset(
    churn: tuple[ReferenceProfile, FeatureSchema],
) -> None:
    profile, schema = churn
    reports = [compare(profile, make_churn(300, seed=2_000 + i), schema=schema) for i in range(40)]
    assert not any(r.dataset_drift for r in reports)
    assert not any(r.multivariate is not None and r.multivariate.drifted for r in reports)
    # 400 feature tests at the smallest window size, where chance effects are largest.
    assert sum(len(r.drifted_features) for r in reports) <= 1


def test_the_domain_classifier_catches_four_small_shifts_the_share_rule_misses(
    churn: tuple[ReferenceProfile, FeatureSchema],
) -> None:
    profile, schema = churn
    x, _, _ = prepare_training_frame(make_churn(20_000, seed=0), "Exited", drop=["CustomerId"])
    sds = {name: float(x[name].std()) for name in SHIFTED_NUMERIC}
    shift = dict.fromkeys(SHIFTED_NUMERIC, 0.2)
    for seed in (41, 42, 43):
        report = compare(profile, _window(5_000, seed, shift, sds), schema=schema)
        assert report.multivariate is not None
        assert report.multivariate.drifted and report.dataset_drift
        assert report.multivariate.statistic > report.multivariate.threshold > 0.5
        assert report.share_drifted < report.policy.drift_share
    calm = compare(profile, make_churn(5_000, seed=44), schema=schema)
    assert calm.multivariate is not None and not calm.multivariate.drifted
    assert "cannot tell them apart" in calm.multivariate.reason


def test_an_old_profile_without_reference_rows_skips_the_domain_classifier_and_says_so(
    churn: tuple[ReferenceProfile, FeatureSchema],
) -> None:
    profile, schema = churn
    old = ReferenceProfile.model_validate_json(
        profile.model_copy(update={"rows": None}).model_dump_json(exclude={"rows"})
    )
    report = compare(old, make_churn(1_000, seed=3, numeric_shift=0.5), schema=schema)
    assert report.multivariate is None
    assert report.multivariate_note is not None and "retrain" in report.multivariate_note


def test_reference_rows_are_bounded_seeded_and_refused_past_the_limit() -> None:
    x, _, schema = prepare_training_frame(make_churn(8_000, seed=2), "Exited", drop=["CustomerId"])
    profile = build_profile(x, schema, reference_rows=1_000)
    assert profile.rows is not None and profile.rows.n == 1_000
    assert list(profile.rows.frame().columns) == schema.names or set(
        profile.rows.frame().columns
    ) == set(schema.names)
    assert build_profile(x, schema, reference_rows=1_000).rows == profile.rows
    with pytest.raises(DataError, match="reference_rows"):
        build_profile(x, schema, reference_rows=10**6)
