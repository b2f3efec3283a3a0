"""The synthetic churn generator: deterministic, realistic, learnable, and drift on demand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pgmlops.domain.demo_data import COLUMNS, GEOGRAPHIES, MISSING_COLUMNS, make_churn
from pgmlops.errors import DataError

NUMERIC = [
    "CreditScore",
    "Age",
    "Tenure",
    "Balance",
    "NumOfProducts",
    "HasCrCard",
    "IsActiveMember",
    "EstimatedSalary",
]
SHIFTED = ["Age", "CreditScore", "Balance", "EstimatedSalary"]


@pytest.fixture(scope="module")
def base() -> pd.DataFrame:
    return make_churn(20_000, seed=0)


def _model_matrix(df: pd.DataFrame) -> pd.DataFrame:
    x = df[NUMERIC].copy()
    x["Germany"] = (df["Geography"] == "Germany").astype(float)
    x["Spain"] = (df["Geography"] == "Spain").astype(float)
    x["Female"] = (df["Gender"] == "Female").astype(float)
    return x


def _columns_equal(a: pd.DataFrame, b: pd.DataFrame) -> set[str]:
    return {c for c in a.columns if a[c].equals(b[c])}


def test_same_seed_gives_identical_frame() -> None:
    pd.testing.assert_frame_equal(make_churn(5_000, seed=7), make_churn(5_000, seed=7))


def test_different_seeds_give_different_rows_and_ids() -> None:
    a, b = make_churn(1_000, seed=1), make_churn(1_000, seed=2)
    assert not a["Age"].equals(b["Age"])
    assert set(a["CustomerId"]).isdisjoint(b["CustomerId"])


def test_has_exactly_the_churn_columns_with_their_types(base: pd.DataFrame) -> None:
    assert list(base.columns) == list(COLUMNS)
    ints = ["CustomerId", "CreditScore", "Age", "Tenure", "NumOfProducts", "HasCrCard"]
    for col in [*ints, "IsActiveMember", "Exited"]:
        assert pd.api.types.is_integer_dtype(base[col]), col
    for col in ["Balance", "EstimatedSalary"]:
        assert base[col].dtype == np.float64, col
        assert np.allclose(base[col], base[col].round(2)), col
    for col in ["Geography", "Gender"]:
        assert pd.api.types.is_string_dtype(base[col]), col
    assert base["CustomerId"].is_unique
    assert not base.isna().any().any()


def test_values_stay_in_their_realistic_ranges(base: pd.DataFrame) -> None:
    assert base["CreditScore"].between(350, 850).all()
    assert base["Age"].between(18, 92).all()
    assert 35 <= base["Age"].median() <= 41
    assert base["Age"].skew() > 0.5
    assert set(base["Tenure"]) == set(range(11))
    assert set(base["NumOfProducts"]) == {1, 2, 3, 4}
    assert base["NumOfProducts"].isin([1, 2]).mean() > 0.9
    assert 0.30 <= (base["Balance"] == 0).mean() <= 0.40
    assert base["EstimatedSalary"].between(10, 200_000).all()
    assert set(base["Gender"]) == {"Male", "Female"}
    shares = base["Geography"].value_counts(normalize=True)
    assert shares["France"] == pytest.approx(0.5, abs=0.02)
    assert shares["Germany"] == pytest.approx(0.25, abs=0.02)


def test_about_one_customer_in_five_churns(base: pd.DataFrame) -> None:
    assert 0.17 <= base["Exited"].mean() <= 0.23


def test_boosted_trees_learn_the_signal_and_beat_a_linear_model(base: pd.DataFrame) -> None:
    train, test = base.iloc[:15_000], base.iloc[15_000:]
    trees = HistGradientBoostingClassifier(random_state=0).fit(
        _model_matrix(train), train["Exited"]
    )
    tree_auc = roc_auc_score(test["Exited"], trees.predict_proba(_model_matrix(test))[:, 1])
    linear = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1_000))
    linear.fit(train[NUMERIC], train["Exited"])
    linear_auc = roc_auc_score(test["Exited"], linear.predict_proba(test[NUMERIC])[:, 1])
    assert tree_auc >= 0.80
    assert linear_auc < tree_auc - 0.03


def test_numeric_shift_moves_only_the_shifted_columns(base: pd.DataFrame) -> None:
    shifted = make_churn(20_000, seed=0, numeric_shift=0.5)
    unchanged = _columns_equal(base, shifted)
    assert unchanged == set(COLUMNS) - {*SHIFTED, "Exited"}
    age_std = base["Age"].std()
    assert shifted["Age"].mean() - base["Age"].mean() == pytest.approx(0.5 * age_std, rel=0.2)
    assert shifted["CreditScore"].mean() > base["CreditScore"].mean() + 30
    funded = base["Balance"] > 0
    assert (shifted["Balance"] > 0).equals(funded)
    assert shifted["Balance"][funded].mean() > base["Balance"][funded].mean() + 10_000
    assert shifted["CreditScore"].max() <= 850
    assert shifted["EstimatedSalary"].max() <= 200_000


def test_category_mix_changes_geography_only(base: pd.DataFrame) -> None:
    mix = {"France": 0.2, "Germany": 0.6, "Spain": 0.2}
    mixed = make_churn(20_000, seed=0, category_mix=mix)
    assert _columns_equal(base, mixed) == set(COLUMNS) - {"Geography", "Exited"}
    shares = mixed["Geography"].value_counts(normalize=True)
    assert shares["Germany"] == pytest.approx(0.6, abs=0.02)
    assert shares["France"] == pytest.approx(0.2, abs=0.02)


def test_concept_shift_changes_only_the_target_and_breaks_an_old_model(
    base: pd.DataFrame,
) -> None:
    trees = HistGradientBoostingClassifier(random_state=0).fit(_model_matrix(base), base["Exited"])
    fresh, drifted = make_churn(10_000, seed=3), make_churn(10_000, seed=3, concept_shift=1.0)
    assert _columns_equal(fresh, drifted) == set(COLUMNS) - {"Exited"}
    assert 0.17 <= drifted["Exited"].mean() <= 0.23
    auc_fresh = roc_auc_score(fresh["Exited"], trees.predict_proba(_model_matrix(fresh))[:, 1])
    auc_drift = roc_auc_score(drifted["Exited"], trees.predict_proba(_model_matrix(drifted))[:, 1])
    assert auc_drift < auc_fresh - 0.10


def test_missing_rate_blanks_only_the_imputation_columns(base: pd.DataFrame) -> None:
    holey = make_churn(20_000, seed=0, missing_rate=0.1)
    for col in MISSING_COLUMNS:
        assert holey[col].isna().mean() == pytest.approx(0.1, abs=0.015), col
        present = holey[col].notna()
        assert (holey[col][present] == base[col][present]).all(), col
    others = [c for c in COLUMNS if c not in MISSING_COLUMNS]
    pd.testing.assert_frame_equal(holey[others], base[others])
    assert holey["CreditScore"].dtype == np.float64


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_rows": 0}, "n_rows"),
        ({"n_rows": 10, "seed": -1}, "seed"),
        ({"n_rows": 10, "missing_rate": 1.5}, "missing_rate"),
        ({"n_rows": 10, "concept_shift": -0.1}, "concept_shift"),
        ({"n_rows": 10, "numeric_shift": float("nan")}, "numeric_shift"),
        ({"n_rows": 10, "category_mix": {"France": 0.5, "Italy": 0.5}}, "Italy"),
        ({"n_rows": 10, "category_mix": {"France": 0.5, "Spain": 0.2}}, "sum to 1"),
        ({"n_rows": 10, "category_mix": {"France": 1.5, "Spain": -0.5}}, ">= 0"),
    ],
)
def test_bad_arguments_raise_data_error(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(DataError, match=message):
        make_churn(**kwargs)  # type: ignore[arg-type]


def test_category_mix_may_leave_out_a_country() -> None:
    df = make_churn(2_000, seed=0, category_mix={"France": 0.5, "Germany": 0.5})
    assert set(df["Geography"]) == set(GEOGRAPHIES) - {"Spain"}
