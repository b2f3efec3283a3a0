"""Feature schema inference, the content-hash split and pipeline building (no database)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.schema import FLOAT32_MAX, coerce_features
from pgmlops.domain.training.frame import infer_task, prepare_training_frame
from pgmlops.domain.training.pipeline import (
    build_pipeline,
    make_estimator,
    parse_params,
    snap_thresholds_to_float32,
)
from pgmlops.domain.training.split import split_rows
from pgmlops.errors import ConfigError, DataError


def test_float32_max_is_the_largest_finite_float32() -> None:
    # Written out in schema.py (no numpy at import); it must stay numpy's value.
    assert float(np.finfo(np.float32).max) == FLOAT32_MAX


def test_drops_identifier_constant_and_empty_columns_with_reasons() -> None:
    df = make_churn(500, seed=1).assign(Const=7, Empty=np.nan)
    x, _, schema = prepare_training_frame(df, "Exited")
    assert set(schema.dropped) == {"CustomerId", "Const", "Empty"}
    assert "identifier" in schema.dropped["CustomerId"]
    assert "constant" in schema.dropped["Const"]
    assert "empty" in schema.dropped["Empty"]
    assert "CustomerId" not in x.columns


def test_reads_numbers_stored_as_text_with_blanks_as_numbers() -> None:
    df = pd.DataFrame({"amount": [" 12.5", "", "7", " ", "3.25"] * 20, "y": [0, 1] * 50})
    x, _, schema = prepare_training_frame(df, "y")
    assert schema.feature("amount").kind == "numeric"
    assert x["amount"].isna().sum() == 40
    assert x["amount"].max() == 12.5


def test_text_in_a_numeric_column_is_an_error_naming_it() -> None:
    values = [str(v) for v in range(200)]
    values[17] = "abc"
    df = pd.DataFrame({"age": values, "y": [0, 1] * 100})
    with pytest.raises(DataError, match=r"'age'.*'abc'"):
        prepare_training_frame(df, "y")


def test_task_is_inferred_from_the_target() -> None:
    assert infer_task(pd.Series([0, 1, 1, 0])) == "binary"
    assert infer_task(pd.Series(["a", "b", "c"])) == "multiclass"
    assert infer_task(pd.Series([1, 2, 3, 4])) == "multiclass"
    assert infer_task(pd.Series(np.linspace(0, 1, 50))) == "regression"


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"a": [1, 2], "y": [1, 1]}), "1 distinct value"),
        (pd.DataFrame({"a": [1, 2]}), "not in the dataset"),
        (pd.DataFrame({"a": [], "y": []}), "no rows"),
    ],
)
def test_unusable_targets_are_refused(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(DataError, match=message):
        prepare_training_frame(frame, "y")


def test_serving_rows_are_coerced_like_training_rows() -> None:
    _, _, schema = prepare_training_frame(make_churn(300, seed=2), "Exited")
    raw = pd.DataFrame([{**{n: None for n in schema.names}, "Age": "41", "Geography": None}])
    x = coerce_features(raw, schema)
    assert list(x.columns) == schema.names
    assert x.loc[0, "Age"] == 41.0
    assert x.loc[0, "Geography"] == "__missing__"
    with pytest.raises(DataError, match="'Age' must be numeric"):
        coerce_features(raw.assign(Age="old"), schema)


def test_split_is_stratified_deterministic_and_stable_when_data_grows() -> None:
    df = make_churn(4_000, seed=4)
    x, y, _schema = prepare_training_frame(df, "Exited")
    a = split_rows(x, y, "binary", test_size=0.2, validation_size=0.2, seed=0)
    b = split_rows(x, y, "binary", test_size=0.2, validation_size=0.2, seed=0)
    assert np.array_equal(a.holdout, b.holdout)
    assert abs(y.iloc[a.holdout].astype(int).mean() - y.astype(int).mean()) < 0.01
    assert len(set(a.train) & set(a.holdout)) == 0
    grown_x = pd.concat([x, x.iloc[:400].assign(Age=x["Age"].iloc[:400] + 0.5)], ignore_index=True)
    grown_y = pd.concat([y, y.iloc[:400]], ignore_index=True)
    c = split_rows(grown_x, grown_y, "binary", test_size=0.2, validation_size=0.2, seed=0)
    kept = len(set(a.holdout) & set(c.holdout)) / len(a.holdout)
    assert kept > 0.85
    assert len(set(a.holdout) & set(c.train)) < 0.1 * len(a.holdout)


def test_params_are_parsed_as_yaml_scalars() -> None:
    assert parse_params(["n=300", "rate=0.1", "depth=none", "name=gini", "flag=true"]) == {
        "n": 300,
        "rate": 0.1,
        "depth": None,
        "name": "gini",
        "flag": True,
    }
    with pytest.raises(ConfigError, match="name=value"):
        parse_params(["oops"])


def test_unknown_estimator_and_parameter_are_named() -> None:
    with pytest.raises(ConfigError, match="cannot import module"):
        make_estimator("nosuch.Model", {}, "binary", 0)
    with pytest.raises(ConfigError, match="no parameter 'n_trees'"):
        make_estimator("sklearn.ensemble.RandomForestClassifier", {"n_trees": 3}, "binary", 0)
    with pytest.raises(ConfigError, match="regressor"):
        make_estimator("sklearn.linear_model.Ridge", {}, "binary", 0)


def test_snapping_thresholds_to_float32_changes_no_prediction() -> None:
    x, y, _ = prepare_training_frame(make_churn(3_000, seed=5), "Exited")
    est = make_estimator(None, {"max_iter": 30}, "binary", 0)
    pipe = build_pipeline(x, est).fit(x, y)
    before = pipe.predict_proba(x)
    snap_thresholds_to_float32(pipe)
    assert np.array_equal(before, pipe.predict_proba(x))
