"""XGBoost, LightGBM and CatBoost train through the same pipeline and get a verified ONNX copy."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgmlops.config import Settings
from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.schema import coerce_features
from pgmlops.errors import ConfigError, TrainingError
from pgmlops.services.commands import train_command
from pgmlops.services.context import Context
from pgmlops.services.inference import OnnxEngine
from pgmlops.services.promotion import version_engine
from pgmlops.services.training.onnx_export import disagreement

LIBRARIES = ["xgboost", "lightgbm", "catboost"]
# Few trees: the tests are about plumbing, not accuracy, and CatBoost's default is 1,000.
FEW_TREES = {
    "xgboost": "n_estimators=60",
    "lightgbm": "n_estimators=60",
    "catboost": "iterations=60",
}
TARGETS = {"binary": "Exited", "regression": "Balance"}


@pytest.fixture(scope="module")
def boost_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small: regression training also fits the monitoring loss models, which takes a while."""
    path = tmp_path_factory.mktemp("boost") / "churn.csv"
    make_churn(2_000, seed=3).to_csv(path, index=False)
    return path


@pytest.fixture
def sqlite_ctx(tmp_path: Path):
    context = Context(
        Settings(
            database_url=f"sqlite:///{tmp_path / 'pgmlops.db'}",
            artifact_root=str(tmp_path / "artifacts"),
            model_name="churn",
        )
    )
    yield context
    context.close()


def _train(ctx: Context, data: Path, library: str, task: str, params: list[str] = ()) -> dict:
    return train_command(
        ctx,
        data=str(data),
        target=TARGETS[task],
        model_name=f"{library}-{task}",
        params=[FEW_TREES[library], *params],
        overrides={"estimator": library, "cv_folds": 0},
        actor="tester",
    )


def _assert_onnx_answers_like_the_pipeline(ctx: Context, trained: dict) -> None:
    """On rows neither engine has seen, the stored ONNX copy agrees with the pickled pipeline."""
    stored = ctx.registry.get_version(trained["model_name"], trained["version"])
    card = stored.card
    assert card.onnx.present, card.onnx.reason
    assert card.onnx.checked_rows == card.split.holdout_rows  # a small holdout: every row
    fresh = coerce_features(make_churn(500, seed=99), card.feature_schema)
    onnx_out = OnnxEngine(ctx.artifacts.read(stored, "onnx"), card).predict_frame(fresh)
    pipe_out = version_engine(ctx, stored).predict_frame(fresh)
    assert disagreement(card, pipe_out, onnx_out) <= 1e-4
    assert [str(v) for v in onnx_out.predicted] == [str(v) for v in pipe_out.predicted] or (
        card.task == "regression"
    )


@pytest.mark.parametrize("task", ["binary", "regression"])
@pytest.mark.parametrize("library", LIBRARIES)
def test_each_boosting_library_trains_and_its_onnx_copy_answers_like_the_pipeline(
    sqlite_ctx: Context, boost_csv: Path, library: str, task: str
) -> None:
    trained = _train(sqlite_ctx, boost_csv, library, task)
    assert trained["onnx"] is True
    assert trained["estimator"].split(".")[0] in {library, "pgmlops"}
    card = sqlite_ctx.registry.get_version(trained["model_name"], trained["version"]).card
    assert card.task == task
    assert library in card.libraries  # its version is recorded, as scikit-learn's is
    _assert_onnx_answers_like_the_pipeline(sqlite_ctx, trained)


def test_xgboost_classifier_answers_with_the_datasets_own_labels(
    sqlite_ctx: Context, boost_csv: Path, tmp_path: Path
) -> None:
    """XGBoost itself takes only 0..k-1; the card, pipeline and ONNX copy keep the real labels."""
    import pandas as pd

    frame = pd.read_csv(boost_csv)
    frame["Geography"] = frame["Geography"].str.upper()
    path = tmp_path / "geo.csv"
    frame.to_csv(path, index=False)
    trained = train_command(
        sqlite_ctx,
        data=str(path),
        target="Geography",
        model_name="geo",
        params=["n_estimators=30"],
        overrides={"estimator": "xgboost.XGBClassifier", "cv_folds": 0},
        actor="tester",
    )
    stored = sqlite_ctx.registry.get_version("geo", trained["version"])
    assert stored.card.task == "multiclass"
    assert set(stored.card.classes or []) == {"FRANCE", "GERMANY", "SPAIN"}
    _assert_onnx_answers_like_the_pipeline(sqlite_ctx, trained)


def test_lightgbm_on_both_databases_keeps_its_onnx_copy(ctx: Context, boost_csv: Path) -> None:
    trained = _train(ctx, boost_csv, "lightgbm", "binary")
    _assert_onnx_answers_like_the_pipeline(ctx, trained)


def test_documented_parameters_are_accepted_and_coerced(
    sqlite_ctx: Context, boost_csv: Path
) -> None:
    lgbm = _train(
        sqlite_ctx,
        boost_csv,
        "lightgbm",
        "binary",
        # verbose and min_data_in_leaf are LightGBM config names, not constructor arguments;
        # 1e-3 is a string to YAML 1.1, 31.0 a float where an int is due.
        [
            "verbose=-1",
            "num_leaves=31.0",
            "max_depth=4",
            "learning_rate=1e-3",
            "min_data_in_leaf=5",
        ],
    )
    params = sqlite_ctx.registry.get_version(lgbm["model_name"], lgbm["version"]).card.params
    assert params["num_leaves"] == 31 and isinstance(params["num_leaves"], int)
    assert params["learning_rate"] == pytest.approx(0.001)
    assert params["max_depth"] == 4 and params["verbose"] == -1 and params["min_data_in_leaf"] == 5
    xgb = _train(
        sqlite_ctx, boost_csv, "xgboost", "regression", ["max_depth=4", "learning_rate=0.1"]
    )
    params = sqlite_ctx.registry.get_version(xgb["model_name"], xgb["version"]).card.params
    assert params["max_depth"] == 4 and params["learning_rate"] == pytest.approx(0.1)
    cat = _train(sqlite_ctx, boost_csv, "catboost", "binary", ["depth=4", "logging_level=Silent"])
    params = sqlite_ctx.registry.get_version(cat["model_name"], cat["version"]).card.params
    # logging_level replaces the quiet default verbose=False (CatBoost refuses both at once).
    assert params["depth"] == 4 and params["logging_level"] == "Silent"
    assert "verbose" not in params


@pytest.mark.parametrize(
    ("library", "param", "message"),
    [
        ("lightgbm", "leaves=31", "estimator 'lightgbm.LGBMClassifier' has no parameter 'leaves'"),
        ("xgboost", "eta=0.1", "estimator 'xgboost.XGBClassifier' has no parameter 'eta'"),
        ("catboost", "deepness=4", "estimator 'catboost.CatBoostClassifier' has no parameter"),
        ("lightgbm", "num_leaves=many", "parameter 'num_leaves' takes an integer, not 'many'"),
    ],
)
def test_refuses_unknown_parameters_and_wrong_types_before_fitting(
    sqlite_ctx: Context, boost_csv: Path, library: str, param: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        _train(sqlite_ctx, boost_csv, library, "binary", [param])
    assert f"{library}-binary" not in sqlite_ctx.registry.model_names()


@pytest.mark.parametrize(
    ("library", "param"),
    [("lightgbm", "min_data_in_leaf=abc"), ("catboost", "depth=abc"), ("xgboost", "max_depth=x")],
)
def test_a_value_the_library_itself_rejects_is_one_training_error(
    sqlite_ctx: Context, boost_csv: Path, library: str, param: str
) -> None:
    with pytest.raises(TrainingError, match="estimator failed to fit"):
        _train(sqlite_ctx, boost_csv, library, "binary", [param])
    assert f"{library}-binary" not in sqlite_ctx.registry.model_names()


def test_a_missing_boosting_library_is_named_with_its_install_command(
    sqlite_ctx: Context, boost_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "lightgbm", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match=r"pip install 'pgmlops\[lightgbm\]'"):
        _train(sqlite_ctx, boost_csv, "lightgbm", "binary")
