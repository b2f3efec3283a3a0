"""Cross-fitted reference outputs: every training row scored by a model that never saw it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.training.crossfit import cross_fitted_scores, refit_copy


def _card() -> SimpleNamespace:
    return SimpleNamespace(task="binary", classes=["0", "1"], threshold=None)


def _noise(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    return x, pd.Series(np.where(rng.random(n) < 0.5, "1", "0"))


def test_no_row_is_scored_by_a_model_that_trained_on_it() -> None:
    # A 1-nearest-neighbour model recalls every training row: in-sample it is perfect on
    # pure noise, out of fold it is a coin flip.
    x, y = _noise(2_000, 3)
    pipe = Pipeline([("scale", StandardScaler()), ("model", KNeighborsClassifier(1))]).fit(x, y)
    assert (pipe.predict(x) == y).mean() == 1.0
    crossed = cross_fitted_scores(pipe, _card(), x, y, folds=3, seed=0)
    assert crossed is not None and len(crossed) == 2_000
    assert list(crossed.y_true) == list(y)  # rows come back in their own order
    assert 0.45 < (crossed.predicted == crossed.y_true).mean() < 0.55


def test_a_boosting_refit_keeps_the_rounds_early_stopping_chose() -> None:
    x, y = _noise(12_000, 4)
    pipe = Pipeline([("model", HistGradientBoostingClassifier(random_state=0))]).fit(x, y)
    assert pipe.named_steps["model"].n_iter_ < 100  # early stopping cut it short
    copy = refit_copy(pipe).named_steps["model"]
    assert copy.max_iter == pipe.named_steps["model"].n_iter_ and copy.early_stopping is False


def test_the_cross_fitted_auc_of_the_demo_model_is_near_its_truth_on_fresh_rows() -> None:
    frame = make_churn(12_000, seed=7)
    x, y = frame.drop(columns=["Exited", "CustomerId"]), frame["Exited"].astype(str)
    x = pd.get_dummies(x, columns=["Geography", "Gender"], dtype=float)
    pipe = Pipeline([("model", HistGradientBoostingClassifier(random_state=0))]).fit(x, y)
    fresh = make_churn(100_000, seed=99)
    fx = pd.get_dummies(fresh[frame.columns].drop(columns=["Exited", "CustomerId"]), dtype=float)
    truth = roc_auc_score(fresh["Exited"] == 1, pipe.predict_proba(fx[x.columns])[:, 1])
    crossed = cross_fitted_scores(pipe, _card(), x, y, folds=3, seed=0)
    assert crossed is not None
    auc = roc_auc_score(crossed.y_true == "1", crossed.proba)
    # A fold model learns from 2/3 of the rows: a little pessimistic, never optimistic.
    assert truth - 0.015 < auc < truth + 0.005


def test_too_few_rows_of_a_class_for_the_folds_gives_no_cross_fit() -> None:
    x, y = _noise(300, 5)
    y.iloc[:] = "0"
    y.iloc[:2] = "1"
    pipe = Pipeline([("model", KNeighborsClassifier(1))]).fit(x, y)
    assert cross_fitted_scores(pipe, _card(), x, y, folds=3, seed=0) is None
