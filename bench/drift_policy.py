"""Which drifts does each drift trigger policy retrain on, and are those the harmful ones?

Run: ``python bench/drift_policy.py [--windows 8] [--rows 5000]``. Trains the demo churn
model (default estimator) on ``make_churn(20000, seed=7)`` in a throw-away SQLite store,
promotes it, then logs windows of fresh rows through the serving path, one scenario at a
time, and monitors each window as ``retrain --if-needed`` does. Each window's true AUC (its
A scenario is *harmful* when the model's true AUC on 50,000 rows of it is at least 0.01 below
its AUC on 50,000 in-distribution rows (a window's own AUC is too noisy to judge). Prints per
scenario the share of windows with dataset drift, fired under ``any`` and under ``harmful``,
and the true AUC change; then the totals: retrains set off by harmless scenarios' windows
vs harmful scenarios' windows caught.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from pgmlops.config import Settings
from pgmlops.domain.demo_data import make_churn
from pgmlops.services.commands import promote_command, train_command
from pgmlops.services.context import Context
from pgmlops.services.monitoring.run import run_monitor
from pgmlops.services.retraining.triggers import drift_trigger
from pgmlops.services.serving.load import load_version
from pgmlops.services.serving.prediction import predict_records
from pgmlops.store.prediction_log.predictions import PredictionStore

HARM = 0.01
SCENARIOS: dict[str, dict[str, Any]] = {
    "in-distribution": {},
    "salary +0.5 sd": {"salary": 0.5},
    "credit score +0.5 sd": {"score": 0.5},
    "4 numeric +0.2 sd": {"numeric_shift": 0.2},
    "4 numeric +0.5 sd": {"numeric_shift": 0.5},
    "4 numeric +1.0 sd": {"numeric_shift": 1.0},
    "Germany 25% -> 50%": {"category_mix": {"France": 0.3, "Germany": 0.5, "Spain": 0.2}},
    "30% blanks in 4 columns": {"missing_rate": 0.3},
    "Age measured with noise (0.7 sd)": {"age_noise": 0.7},
    "only ages 35-55": {"ages": (35, 55)},
    "half the balances recorded as 0": {"zero_balance": 0.5},
}


def window(rows: int, seed: int, knobs: dict[str, Any]) -> pd.DataFrame:
    """Fresh demo rows with the scenario's change applied."""
    knobs = dict(knobs)
    salary, score = knobs.pop("salary", 0.0), knobs.pop("score", 0.0)
    noise, ages = knobs.pop("age_noise", 0.0), knobs.pop("ages", None)
    zero = knobs.pop("zero_balance", 0.0)
    frame = make_churn(rows * (4 if ages else 1), seed=seed, **knobs)
    if ages:
        frame = frame[frame["Age"].between(*ages)].head(rows).reset_index(drop=True)
    rng = np.random.default_rng(seed)
    frame["EstimatedSalary"] = frame["EstimatedSalary"] + salary * 57_700.0
    frame["CreditScore"] = frame["CreditScore"] + score * 96.7
    frame["Age"] = (frame["Age"] + rng.normal(0.0, noise * 10.4, len(frame))).clip(18, 92)
    frame.loc[rng.random(len(frame)) < zero, "Balance"] = 0.0
    return frame


def score(model: Any, frame: pd.DataFrame, settings: Settings) -> tuple[list[Any], np.ndarray]:
    """Predict as the server does: the records to log and P(churn)."""
    names = model.card.feature_schema.names
    rows = frame[names].astype(object).where(frame[names].notna(), None).to_dict("records")
    _, records = predict_records(
        model, rows, settings.serving, request_id=None, started=time.perf_counter()
    )
    return records, np.array([r.probability for r in records], dtype=np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=8)
    parser.add_argument("--rows", type=int, default=5_000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="drift_policy_"))
    settings = Settings(
        database_url=f"sqlite:///{tmp / 'db.sqlite'}",
        artifact_root=str(tmp / "artifacts"),
        model_name="churn",
    )
    ctx = Context(settings)
    data = tmp / "train.csv"
    make_churn(20_000, seed=7).to_csv(data, index=False)
    result = train_command(
        ctx, data=str(data), target="Exited", model_name="churn", actor="bench",
        overrides={}, onnx=False,
    )  # fmt: skip
    version = int(result["version"])
    promote_command(ctx, model_name="churn", version=version, force=False, reason=None,
                    actor="bench")  # fmt: skip
    model = load_version(ctx, ctx.registry.get_version("churn", version))
    fresh = make_churn(50_000, seed=999)
    _, p_ref = score(model, fresh, settings)
    auc_ref = roc_auc_score(fresh["Exited"], p_ref)
    print(f"model v{version}, AUC on 50,000 fresh rows {auc_ref:.4f}; harm = AUC drop >= {HARM}")
    print("| scenario | windows | dataset drift | fired: any | fired: harmful | true AUC change |")
    print("|---|---:|---:|---:|---:|---:|")
    totals = {"harmless_any": 0, "harmless_harmful": 0, "harm": 0, "harm_any": 0, "harm_h": 0}
    seed = 50_000
    for name, knobs in SCENARIOS.items():
        drifted = fired_any = fired_harmful = 0
        population = window(50_000, 7_000 + len(name), knobs)
        change = roc_auc_score(population["Exited"], score(model, population, settings)[1])
        change -= auc_ref
        harmful = change <= -HARM
        for _ in range(args.windows):
            seed += 1
            frame = window(args.rows, seed, knobs)
            records, _ = score(model, frame, settings)
            PredictionStore(ctx.db).write_batch(records)
            outcome = run_monitor(ctx, "churn", last=args.rows, store_run=False)
            any_fired, _ = drift_trigger(outcome, "any")
            harmful_fired, _ = drift_trigger(outcome, "harmful")
            drifted += outcome.dataset_drift
            fired_any += any_fired
            fired_harmful += harmful_fired
            totals["harm"] += harmful
            totals["harm_any"] += harmful and any_fired
            totals["harm_h"] += harmful and harmful_fired
            totals["harmless_any"] += (not harmful) and any_fired
            totals["harmless_harmful"] += (not harmful) and harmful_fired
        w = args.windows
        print(
            f"| {name} | {w} | {drifted / w:.0%} | {fired_any / w:.0%} | "
            f"{fired_harmful / w:.0%} | {change:+.4f}{' (harmful)' if harmful else ''} |",
            flush=True,
        )
    print(
        f"\nretrains on harmless windows: any {totals['harmless_any']}, "
        f"harmful {totals['harmless_harmful']}; harmful windows {totals['harm']}, caught by "
        f"any {totals['harm_any']}, by harmful {totals['harm_h']}"
    )
    ctx.close()


if __name__ == "__main__":
    main()
