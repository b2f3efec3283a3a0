"""Estimator names and `--param` values: short library names, quiet defaults, coercion."""

from __future__ import annotations

import pytest

from pgmlops.domain.training.pipeline import make_estimator, parse_params
from pgmlops.errors import ConfigError


def test_exponent_notation_is_a_number_not_a_string() -> None:
    # YAML 1.1 reads 1e-3 as a string; nobody means the text "1e-3" for a learning rate.
    assert parse_params(["learning_rate=1e-3", "alpha=2E5", "objective=binary"]) == {
        "learning_rate": 0.001,
        "alpha": 200000.0,
        "objective": "binary",
    }


@pytest.mark.parametrize(
    ("name", "task", "cls"),
    [
        ("lightgbm", "binary", "LGBMClassifier"),
        ("lightgbm", "regression", "LGBMRegressor"),
        ("xgboost", "multiclass", "LabelledXGBClassifier"),
        ("xgboost", "regression", "XGBRegressor"),
        ("catboost", "binary", "CatBoostClassifier"),
        ("catboost", "regression", "CatBoostRegressor"),
    ],
)
def test_a_library_name_picks_the_class_for_the_task(name: str, task: str, cls: str) -> None:
    assert type(make_estimator(name, {}, task, 0)).__name__ == cls  # type: ignore[arg-type]


def test_boosting_libraries_are_silent_unless_asked() -> None:
    assert make_estimator("lightgbm", {}, "binary", 0).get_params()["verbose"] == -1
    assert make_estimator("xgboost", {}, "binary", 0).get_params()["verbosity"] == 0
    cat = make_estimator("catboost", {}, "binary", 0).get_params()
    assert cat["verbose"] is False and cat["allow_writing_files"] is False
    assert cat["random_seed" if "random_seed" in cat else "random_state"] == 0


def test_a_users_own_logging_parameter_replaces_the_quiet_default() -> None:
    lgbm = make_estimator("lightgbm", {"verbosity": 1}, "binary", 0).get_params()
    assert lgbm["verbosity"] == 1 and "verbose" not in lgbm
    cat = make_estimator("catboost", {"logging_level": "Info"}, "binary", 0).get_params()
    assert cat["logging_level"] == "Info" and "verbose" not in cat


def test_values_are_coerced_to_the_type_of_the_default() -> None:
    est = make_estimator("lightgbm", {"num_leaves": 15.0, "learning_rate": 1}, "binary", 0)
    assert est.num_leaves == 15 and isinstance(est.num_leaves, int)
    assert est.learning_rate == 1.0 and isinstance(est.learning_rate, float)
    hist = make_estimator(
        "sklearn.ensemble.HistGradientBoostingClassifier", {"warm_start": 1}, "binary", 0
    )
    assert hist.warm_start is True


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"num_leaves": "many"}, "'num_leaves' takes an integer, not 'many'"),
        ({"learning_rate": "fast"}, "'learning_rate' takes a number, not 'fast'"),
        ({"nonsense": 1}, "estimator 'lightgbm.LGBMClassifier' has no parameter 'nonsense'"),
    ],
)
def test_wrong_parameters_are_refused_before_fitting(params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_estimator("lightgbm", params, "binary", 0)


def test_a_boolean_parameter_refuses_other_values() -> None:
    with pytest.raises(ConfigError, match="'warm_start' takes true or false, not 7"):
        make_estimator(
            "sklearn.ensemble.HistGradientBoostingClassifier", {"warm_start": 7}, "binary", 0
        )
