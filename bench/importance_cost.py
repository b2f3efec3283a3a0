"""What permutation importance adds to `pgmlops train` (issue 13 §6).

Fits the default pipeline on the demo data (make_churn(20_000, seed=7), the training split's
share of rows), then times, on 2,000 held-out rows, one prediction call and the permutation
importance training runs (features x 3 shuffles, every copy scored in one call), each the
median of --repeats runs.

    PYTHONPATH=src python bench/importance_cost.py [--rows 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import statistics
import time
from types import SimpleNamespace

import numpy as np

from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.importance import permutation_importance
from pgmlops.domain.metrics import metric_value
from pgmlops.domain.predict import Outputs, predict_outputs, to_scores
from pgmlops.domain.training.frame import prepare_training_frame
from pgmlops.domain.training.pipeline import build_pipeline, make_estimator


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    x, y, schema = prepare_training_frame(make_churn(args.rows, seed=7), "Exited")
    y = np.asarray(y).astype(str)
    train, hold = slice(0, len(x) - 2_000), slice(len(x) - 2_000, len(x))
    started = time.perf_counter()
    pipeline = build_pipeline(
        x.iloc[train],
        make_estimator(None, {}, schema.task, 0),
        features=None,
        imbalance="none",
        seed=0,
    )
    pipeline.fit(x.iloc[train], y[train])
    fit = time.perf_counter() - started
    # The card fields scoring reads, as training's stand-in card holds them before the real one.
    card = SimpleNamespace(
        task=schema.task, classes=schema.classes, threshold=0.5, feature_schema=schema
    )
    x_hold, y_hold = x.iloc[hold].reset_index(drop=True), y[hold]

    def score_blocks(frame, truth, n):  # as services/training.py scores them
        out = predict_outputs(pipeline, card, frame)
        return [
            metric_value(
                "roc_auc",
                to_scores(
                    card,
                    Outputs(out.predicted[i * n : (i + 1) * n], out.proba[i * n : (i + 1) * n]),
                    truth,
                ),
            )
            for i in range(len(frame) // n)
        ]

    predict_s, importance_s = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        predict_outputs(pipeline, card, x_hold)
        predict_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        result = permutation_importance(score_blocks, x_hold, y_hold, "roc_auc")
        importance_s.append(time.perf_counter() - t)
    print(f"rows {args.rows:,}, {x.shape[1]} features, fit {fit:.2f} s (once)")
    print(f"one predict of 2,000 rows: median {statistics.median(predict_s):.3f} s")
    print(
        f"permutation importance ({x.shape[1]} x 3 shuffles of 2,000 rows): median "
        f"{statistics.median(importance_s):.3f} s"
    )
    assert result is not None
    print("top:", list(result.values.items())[:3])


if __name__ == "__main__":
    main()
