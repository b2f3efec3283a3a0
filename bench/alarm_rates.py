"""False-alarm and detection rates of the confidence and performance signals (issue 10).

Trains the demo churn model as `make demo` does (make_churn(20_000, seed=7), default
estimator) in a throwaway SQLite store, then builds prediction windows of fresh rows from
the same generator (never the training rows), scored by the model, all rows labelled, and
asks the monitoring signals for their verdicts. A regression model (make_churn with a
synthetic heteroscedastic target) checks direct loss estimation the same way.

    PYTHONPATH=src python bench/alarm_rates.py [--windows 200] [--sizes 100,200,500,1000,5000]
        [--concept-windows N] [--quick]

Each rate is printed as hits/windows = share [Wilson 95% interval].
"""

from __future__ import annotations

import argparse
import os

# One thread per process: on a shared 2-core machine OpenMP tree prediction thrashes.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from honesty_rates import wilson  # bench/ is on sys.path when a script runs
from pgmlops.config import Settings
from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.monitoring.performance import confidence
from pgmlops.domain.schema import coerce_features
from pgmlops.services.commands import train_command
from pgmlops.services.context import Context
from pgmlops.services.monitoring.labelled_performance import labelled_performance
from pgmlops.services.monitoring.signals import confidence_signal, estimated_performance
from pgmlops.services.promotion import version_engine
from pgmlops.store.monitoring.prediction_windows import PredictionWindow

SIGNALS = ("labelled", "confidence", "estimated")


def regression_frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Churn customers with a noisy numeric target whose noise grows with Age."""
    frame = make_churn(n, seed=seed, numeric_shift=shift).drop(columns=["Exited"])
    rng = np.random.default_rng([seed, 11])
    age = frame["Age"].to_numpy(float)
    noise = rng.normal(0.0, 1.0, n) * (0.2 + (age - 18) / 20)
    frame["Spend"] = 0.05 * frame["CreditScore"] + 2 * frame["NumOfProducts"] + noise
    return frame


def window(engine, card, frame: pd.DataFrame, target: str) -> PredictionWindow:
    """The frame as the prediction log would hand it to monitoring."""
    x = coerce_features(frame, card.feature_schema)
    out = engine.predict_frame(x)
    features = pd.DataFrame(
        {
            f.name: frame[f.name].astype(float)
            if f.kind == "numeric"
            else frame[f.name].astype(str)
            for f in card.feature_schema.features
        }
    )
    if card.task == "binary":
        probability = np.asarray(out.proba, dtype=float)
        conf = confidence(probability, "binary")
    else:
        probability = conf = np.full(len(frame), np.nan)
    outputs = pd.DataFrame(
        {
            "created_at": datetime.now(UTC),
            "prediction": np.asarray(out.predicted).astype(str),
            "probability": probability,
            "confidence": conf,
            "label": frame[target].astype(str).to_numpy()
            if card.task != "regression"
            else frame[target].map(repr).to_numpy(),
        }
    )
    return PredictionWindow(features=features, outputs=outputs)


def verdicts(ctx, mv, win: PredictionWindow) -> dict[str, bool]:
    settings = ctx.settings.monitoring
    estimated = estimated_performance(ctx, mv, win, settings)
    return {
        "labelled": labelled_performance(ctx, mv, win, settings)["degraded"],
        "confidence": confidence_signal(ctx, mv, win, settings, estimated=estimated)["degraded"],
        "estimated": estimated["degraded"],
    }


def cell(share: float, total: int) -> str:
    """``hits/total = share [Wilson 95%]``."""
    hits = round(share * total)
    lo, hi = wilson(hits, total)
    return f"{hits}/{total} = {share:.1%} [{lo:.1%}, {hi:.1%}]"


def rates(ctx, mv, engine, make, n: int, windows: int, seed0: int) -> tuple[dict, float]:
    hits = dict.fromkeys(SIGNALS, 0)
    aucs = []
    for i in range(windows):
        frame = make(n, seed0 + i)
        win = window(engine, mv.card, frame, "Exited")
        aucs.append(roc_auc_score(win.outputs["label"] == "1", win.outputs["probability"]))
        for k, v in verdicts(ctx, mv, win).items():
            hits[k] += bool(v)
    return {k: v / windows for k, v in hits.items()}, float(np.mean(aucs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument(
        "--sizes", default="100,200,500,1000,5000", help='in-distribution sizes ("" for none)'
    )
    # 0.37 lowers the demo model's true AUC by 0.05 (0.857 -> ~0.807 on 400k fresh rows).
    parser.add_argument("--concept-shift", type=float, default=0.37)
    parser.add_argument(
        "--concept-windows", type=int, default=None, help="windows of the concept cell"
    )
    parser.add_argument("--quick", action="store_true", help="skip covariate shifts and DLE")
    args = parser.parse_args()
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="alarm-rates-"))
    ctx = Context(
        Settings(
            database_url=f"sqlite:///{tmp}/db.sqlite",
            artifact_root=str(tmp / "artifacts"),
            model_name="churn",
        )
    )
    make_churn(20_000, seed=7).to_csv(tmp / "churn.csv", index=False)
    info = train_command(
        ctx,
        data=str(tmp / "churn.csv"),
        target="Exited",
        model_name="churn",
        onnx=False,
        actor="bench",
    )
    mv = ctx.registry.get_version("churn", info["version"])
    engine = version_engine(ctx, mv)
    m = ctx.settings.monitoring
    print(
        f"demo model: holdout roc_auc {mv.card.metrics['roc_auc']:.4f}; alarm_alpha "
        f"{m.alarm_alpha}, performance_drop {m.performance_drop}, confidence_drop "
        f"{m.confidence_drop}, min_labels {m.min_labels}; {args.windows} windows per cell"
    )
    concept_windows = args.concept_windows or args.windows
    print("\n| window (rows = labels) | true AUC | labelled | confidence | estimated (CBPE) |")
    print("|---|---|---|---|---|")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    for n in sizes:
        r, auc = rates(ctx, mv, engine, lambda k, s: make_churn(k, seed=s), n, args.windows, 10_000)
        w = args.windows
        print(
            f"| {n:,} in-distribution | {auc:.3f} | {cell(r['labelled'], w)} "
            f"| {cell(r['confidence'], w)} | {cell(r['estimated'], w)} |",
            flush=True,
        )
    cs = args.concept_shift
    r, auc = rates(
        ctx,
        mv,
        engine,
        lambda k, s: make_churn(k, seed=s, concept_shift=cs),
        1000,
        concept_windows,
        20_000,
    )
    w = concept_windows
    print(
        f"| 1,000 concept_shift {cs} | {auc:.3f} | {cell(r['labelled'], w)} "
        f"| {cell(r['confidence'], w)} | {cell(r['estimated'], w)} |"
    )
    if args.quick:
        ctx.close()
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"\n{time.perf_counter() - started:.0f} s, load {os.getloadavg()[0]:.1f} at the end")
        return
    for shift in (0.75, 1.0, 1.5):
        r, auc = rates(
            ctx,
            mv,
            engine,
            lambda k, s, sh=shift: make_churn(k, seed=s, numeric_shift=sh),
            5000,
            max(args.windows // 4, 20),
            30_000,
        )
        print(
            f"| 5,000 numeric_shift {shift} | {auc:.3f} | {r['labelled']:.1%} "
            f"| {r['confidence']:.1%} | {r['estimated']:.1%} |"
        )
    regression(ctx, tmp, args.windows)
    ctx.close()
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{time.perf_counter() - started:.0f} s, load {os.getloadavg()[0]:.1f} at the end")


def regression(ctx, tmp: Path, windows: int) -> None:
    """Direct loss estimation: estimated vs true RMSE, and its alarms."""
    regression_frame(20_000, 7).to_csv(tmp / "spend.csv", index=False)
    info = train_command(
        ctx,
        data=str(tmp / "spend.csv"),
        target="Spend",
        model_name="spend",
        onnx=False,
        actor="bench",
        overrides={"task": "regression"},
    )
    mv = ctx.registry.get_version("spend", info["version"])
    engine = version_engine(ctx, mv)
    settings = ctx.settings.monitoring
    print(f"\nregression (DLE), holdout rmse {mv.card.metrics['rmse']:.4f}")
    print("| window | true RMSE (mean) | DLE RMSE (mean) | mean abs error of DLE | alarms |")
    print("|---|---|---|---|---|")
    for label, shift, n in (
        ("in-distribution", 0.0, 1000),
        ("in-distribution", 0.0, 5000),
        ("numeric_shift 1.0", 1.0, 5000),
    ):
        truth, est, errors, alarms = [], [], [], 0
        for i in range(max(windows // 4, 20)):
            frame = regression_frame(n, 40_000 + i, shift)
            win = window(engine, mv.card, frame, "Spend")
            block = estimated_performance(ctx, mv, win, settings)
            pred = win.outputs["prediction"].astype(float).to_numpy()
            true_rmse = float(np.sqrt(np.mean((frame["Spend"].to_numpy() - pred) ** 2)))
            truth.append(true_rmse)
            est.append(block["metrics"]["rmse"])
            errors.append(abs(block["metrics"]["rmse"] - true_rmse))
            alarms += bool(block["degraded"])
        k = len(truth)
        print(
            f"| {n:,} {label} | {np.mean(truth):.4f} | {np.mean(est):.4f} | {np.mean(errors):.4f} "
            f"| {alarms / k:.1%} |"
        )


if __name__ == "__main__":
    main()
