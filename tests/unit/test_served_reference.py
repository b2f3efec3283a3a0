"""Prediction drift's default reference holds each labelled row's output as traffic gets it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeRegressor

from pgmlops.domain.intervals import concat_scores
from pgmlops.domain.metrics import Scores
from pgmlops.domain.training.crossfit import cross_fitted_scores, served_scores


def test_repeated_training_vectors_take_the_final_models_output_and_singletons_out_of_fold() -> (
    None
):
    rng = np.random.default_rng(0)
    # 40 vectors seen 10 times each, then 30 seen once.
    repeated = np.repeat(rng.integers(0, 1_000, 40), 10).astype(float)
    once = rng.choice(np.arange(1_000, 2_000), 30, replace=False).astype(float)
    x = pd.DataFrame({"a": np.concatenate([repeated, once])})
    y = pd.Series(x["a"] / 100 + rng.normal(0.0, 3.0, len(x)))
    card = SimpleNamespace(task="regression", classes=None)
    final = Pipeline([("model", DecisionTreeRegressor(min_samples_leaf=2, random_state=0))])
    final.fit(x, y)
    crossed = cross_fitted_scores(final, card, x, y, folds=3, seed=0)
    assert crossed is not None
    held = Scores(task="regression", y_true=np.zeros(5), predicted=np.arange(5.0))
    served = served_scores(final, card, x, concat_scores(crossed, held))
    n_rep = len(repeated)
    # A repeated vector is answered by the final model, which fitted its copies.
    np.testing.assert_array_equal(served.predicted[:n_rep], final.predict(x.iloc[:n_rep]))
    # A vector seen once stands for unseen traffic: its out-of-fold output stays.
    np.testing.assert_array_equal(served.predicted[n_rep : len(x)], crossed.predicted[n_rep:])
    # Held-out rows already carry the final model's outputs.
    np.testing.assert_array_equal(served.predicted[len(x) :], held.predicted)
    assert not np.array_equal(final.predict(x.iloc[:n_rep]), crossed.predicted[:n_rep])
