"""How often the promotion gates say yes: useless, identical and better candidates.

Every model goes through the real training service and the real promotion path on a
throw-away SQLite registry. Per trial (fresh demo data from its own seed):

- shuffled: a first version trained on permuted labels (no signal at all);
- noise: a first version trained on pure-noise features with the real labels;
- real: a first version trained on the real data (must pass);
- identical: a retrain on the same data against that real model as champion;
- better: a model on all rows against a champion trained on a 5% subsample.

Each pair is judged under several policies (the defaults, and the old defaults) from the
same trained versions, so the only difference between columns is the gate.

    PYTHONPATH=src python bench/promotion_rates.py --trials 20 --rows 6000
    PYTHONPATH=src python bench/promotion_rates.py --null 400   # the gate's false-pass rate
    PYTHONPATH=src python bench/promotion_rates.py --small 10   # first versions, small real sets
    PYTHONPATH=src:bench python bench/promotion_rates.py --challenger 10  # champion vs challenger
    PYTHONPATH=src:bench python bench/promotion_rates.py --challenger 10 --sets fair,randhie
    PYTHONPATH=src:bench python bench/promotion_rates.py --null-challenger 40 --sets fair
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pgmlops.config import Settings
from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.policies import PromotionPolicy
from pgmlops.services.commands import promote_command, train_command
from pgmlops.services.context import Context
from pgmlops.services.promotion import evaluate_challenge

POLICIES = {
    "default": PromotionPolicy(),
    "no recall guard": PromotionPolicy(guard_metrics={}),
    "conf 0.95": PromotionPolicy(confidence=0.95),
    "no CI, margin 0": PromotionPolicy(baseline_margin=0.0, bootstrap=False),
}
VERBOSE = False
KINDS = ("shuffled", "noise", "real", "identical", "better")


def _train(ctx: Context, frame: pd.DataFrame, folder: Path, name: str, target: str) -> int:
    path = folder / f"{name}.csv"
    frame.to_csv(path, index=False)
    return train_command(ctx, data=str(path), target=target, model_name=name, actor="bench")[
        "version"
    ]


def _verdicts(ctx: Context, name: str, candidate: int, champion: int | None) -> dict[str, bool]:
    cand = ctx.registry.get_version(name, candidate)
    champ = ctx.registry.get_version(name, champion) if champion else None
    out = {}
    for label, policy in POLICIES.items():
        ctx.settings.promotion = policy
        decision = evaluate_challenge(ctx, cand, champ)[0]
        out[label] = decision.approved
        if label == "default" and VERBOSE:
            print(f"  {name} v{candidate}: {decision.summary()}")
    ctx.settings.promotion = POLICIES["default"]
    return out


def _force(ctx: Context, name: str, version: int) -> None:
    promote_command(ctx, model_name=name, version=version, force=True, reason="b", actor="b")


def run(trials: int, rows: int, folder: Path) -> dict[str, dict[str, int]]:
    """Count approvals per kind and policy over `trials` fresh demo datasets."""
    settings = Settings(
        database_url=f"sqlite:///{folder / 'bench.db'}", artifact_root=str(folder / "art")
    )
    ctx = Context(settings)
    counts = {kind: dict.fromkeys(POLICIES, 0) for kind in KINDS}
    for t in range(trials):
        seed = 1000 + t
        frame = make_churn(rows, seed=seed)
        rng = np.random.default_rng(seed)
        shuffled = frame.assign(Exited=rng.permutation(frame["Exited"].to_numpy()))
        noise = pd.DataFrame(
            {f"x{k}": rng.normal(size=rows) for k in range(8)} | {"Exited": frame["Exited"]}
        )
        small = frame.sample(frac=0.05, random_state=seed)
        jobs: dict[str, tuple[pd.DataFrame, pd.DataFrame | None]] = {
            "shuffled": (shuffled, None),
            "noise": (noise, None),
            "real": (frame, None),
            "identical": (frame, frame),
            "better": (frame, small),
        }
        for kind, (data, champion_data) in jobs.items():
            name = f"{kind}{t}"
            champion = None
            if champion_data is not None:
                champion = _train(ctx, champion_data, folder, name, "Exited")
                _force(ctx, name, champion)
            candidate = _train(ctx, data, folder, name, "Exited")
            for label, ok in _verdicts(ctx, name, candidate, champion).items():
                counts[kind][label] += int(ok)
        print(f"trial {t + 1}/{trials} done", flush=True)
    ctx.close()
    return counts


def real_datasets(folder: Path) -> dict[str, bool]:
    """First versions on scikit-learn's bundled datasets, under the default policy."""
    from sklearn import datasets

    settings = Settings(
        database_url=f"sqlite:///{folder / 'real.db'}", artifact_root=str(folder / "art2")
    )
    ctx = Context(settings)
    out = {}
    for name, loader in (
        ("breast_cancer", datasets.load_breast_cancer),
        ("wine", datasets.load_wine),
        ("iris", datasets.load_iris),
        ("diabetes", datasets.load_diabetes),
    ):
        frame = loader(as_frame=True).frame
        if name != "diabetes":
            frame["target"] = "c" + frame["target"].astype(str)
        version = _train(ctx, frame, folder, name, "target")
        decision = _verdicts(ctx, name, version, None)
        out[name] = decision["default"]
    ctx.close()
    return out


def null_rate(trials: int, rows: int) -> dict[float, int]:
    """First versions with no skill at all (random scores), judged at two confidence levels."""
    from pgmlops.domain.metrics import Scores
    from pgmlops.domain.predict import baseline_scores
    from pgmlops.domain.promotion.gates import decide

    passed = {0.95: 0, 0.99: 0}
    for t in range(trials):
        rng = np.random.default_rng(t)
        y = np.where(rng.random(rows) < 0.2, "y", "n")
        p = rng.random(rows)
        cand = Scores("binary", y, np.where(p >= 0.5, "y", "n"), p, ("n", "y"))
        base = baseline_scores("binary", y, y, ["n", "y"])
        for level in passed:
            policy = PromotionPolicy(confidence=level, seed=t)
            passed[level] += decide(cand, None, base, policy).approved
    return passed


def _small_sets() -> dict[str, tuple[pd.DataFrame, str]]:
    """Small real datasets bundled in installed packages (no download)."""
    from sklearn import datasets

    diabetes = datasets.load_diabetes(as_frame=True, scaled=False).frame
    cancer = datasets.load_breast_cancer(as_frame=True).frame
    cancer["target"] = cancer["target"].map({0: "malignant", 1: "benign"})
    return {"diabetes (442 rows, regression)": (diabetes, "target"),
            "breast_cancer (569 rows, binary)": (cancer, "target")}  # fmt: skip


def _subsampled_sets(rows: int) -> dict[str, tuple[pd.DataFrame, str]]:
    """bench/honesty.py's fair and randhie, each case a fresh `rows`-row sample: weak signal."""
    from honesty_data import real_frame

    out = {}
    for name, task in (("fair", "binary"), ("randhie", "regression")):
        frame, target, _, _ = real_frame(name)
        out[f"{name} ({rows} of {len(frame):,} rows, {task}, sampled per case)"] = (frame, target)
    return out


def _crossfit_parts(ctx: Context, version: Any, sizes: dict[str, int]) -> str:
    """AUC of the out-of-fold training rows, of the held-out rows and of both pooled."""
    from sklearn.metrics import roc_auc_score

    from pgmlops.services.promotion import read_crossfit

    if version.card.task != "binary" or "crossfit" not in version.files:
        return ""
    scores, _ = read_crossfit(ctx, version)
    truth = scores.y_true.astype(str) == str(version.card.positive_class)
    held = sizes["candidate_holdout"] + sizes["candidate_validation"]
    cut = len(truth) - held
    auc = [roc_auc_score(truth[s], scores.proba[s]) for s in (slice(0, cut), slice(cut, None))]
    pooled = roc_auc_score(truth, scores.proba)
    rates = f"positive rate {truth[:cut].mean():.3f} / {truth[cut:].mean():.3f}"
    means = f"mean score {scores.proba[:cut].mean():.3f} / {scores.proba[cut:].mean():.3f}"
    aucs = f"AUC out-of-fold {auc[0]:.3f}, held-out {auc[1]:.3f}, pooled {pooled:.3f}"
    return f"[{aucs}; {rates}; {means}]"


def small_first_versions(
    cases: int,
    folder: Path,
    sets: str = "",
    kinds: str = "real,shuffled,noise",
    sample_rows: int = 0,
) -> dict[str, dict[str, tuple[int, str]]]:
    """First versions on small real sets: real, shuffled labels, noise features (default policy).

    `sets` keeps the sets whose label contains one of its comma-separated words (all when
    empty); `kinds` the candidates to train. Case i draws the same data whatever is kept.
    `sample_rows` adds fair and randhie, each case a new sample of that many rows (so
    'real' is judged in every case: the gate's power on a weak signal).
    """
    settings = Settings(
        database_url=f"sqlite:///{folder / 'small.db'}", artifact_root=str(folder / "art3")
    )
    ctx = Context(settings)
    out: dict[str, dict[str, tuple[int, str]]] = {}
    pool = _small_sets() | (_subsampled_sets(sample_rows) if sample_rows else {})
    chosen = {
        label: v
        for label, v in pool.items()
        if not sets or any(w and w in label for w in sets.split(","))
    }
    for label, (frame, target) in chosen.items():
        counts = {k: [0, ""] for k in ("real", "shuffled", "noise") if k in kinds}
        for i in range(cases):
            rng = np.random.default_rng(500 + i)
            features = [c for c in frame.columns if c != target]
            sampled = "sampled per case" in label
            share = {"n": sample_rows} if sampled else {"frac": 1.0}
            data = frame.sample(**share, random_state=500 + i).reset_index(drop=True)
            jobs = {
                "real": data,
                "shuffled": data.assign(**{target: rng.permutation(data[target].to_numpy())}),
                "noise": data.assign(**{c: rng.permutation(data[c].to_numpy()) for c in features}),
            }
            for kind, d in jobs.items():
                if kind not in counts or (kind == "real" and i > 0 and not sampled):
                    continue  # the real set: same rows in every case (the split is by content)
                name = f"{kind}{i}{label.split()[0]}"
                path = folder / f"{name}.csv"
                d.to_csv(path, index=False)
                version = train_command(
                    ctx, data=str(path), target=target, model_name=name, onnx=False, actor="b"
                )["version"]
                decision = evaluate_challenge(ctx, ctx.registry.get_version(name, version), None)
                counts[kind][0] += int(decision[0].approved)
                if not counts[kind][1]:
                    counts[kind][1] = decision[0].summary()
                if VERBOSE or (decision[0].approved and kind != "real"):
                    gate = decision[0].gates[0]
                    parts = _crossfit_parts(
                        ctx, ctx.registry.get_version(name, version), decision[1]
                    )
                    print(f"  {label} {kind} case {i}: {gate.detail} {parts}", flush=True)
            print(f"{label}: case {i + 1}/{cases}", flush=True)
        out[label] = {k: (int(v[0]), str(v[1])) for k, v in counts.items()}
    ctx.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--verbose", action="store_true", help="print every decision")
    parser.add_argument("--null", type=int, default=0, help="only N random-score first versions")
    parser.add_argument("--small", type=int, default=0, help="N cases of small real sets")
    parser.add_argument("--small-sets", default="", help="--small: only sets naming these")
    parser.add_argument("--small-kinds", default="real,shuffled,noise", help="--small: kinds")
    parser.add_argument(
        "--small-rows", type=int, default=0, help="--small: add fair and randhie samples of N rows"
    )
    parser.add_argument("--challenger", type=int, default=0, help="N champion/challenger cases")
    parser.add_argument(
        "--null-challenger", type=int, default=0, help="N cases of equal-skill challengers"
    )
    parser.add_argument("--churn-rows", type=int, default=6_000, help="demo rows (--challenger)")
    parser.add_argument("--fraction", type=float, default=0.9, help="--challenger: rows per case")
    parser.add_argument(
        "--sets", default="digits,churn", help="digits, churn, fair, randhie (--challenger)"
    )
    args = parser.parse_args()
    global VERBOSE
    VERBOSE = args.verbose
    if args.challenger or args.null_challenger:
        from challenger_rates import report

        report(args)
        return
    if args.small:
        from honesty_rates import wilson

        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            out = small_first_versions(
                args.small, Path(tmp), args.small_sets, args.small_kinds, args.small_rows
            )
        for label, counts in out.items():
            for kind, (hits, first) in counts.items():
                total = 1 if kind == "real" and "sampled" not in label else args.small
                lo, hi = wilson(hits, total)
                print(f"| {label} | {kind} | {hits}/{total} [{lo:.1%}, {hi:.1%}] | {first} |")
        print(f"({time.perf_counter() - started:.0f} s)")
        return
    if args.null:
        rates = null_rate(args.null, 1000)
        print(f"{args.null} no-skill first versions, 1,000 holdout rows (20% positive), promoted: ")
        print(", ".join(f"confidence {c}: {n}/{args.null}" for c, n in rates.items()))
        return
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        counts = run(args.trials, args.rows, Path(tmp))
        real = real_datasets(Path(tmp))
    print(f"\npromoted out of {args.trials} (demo churn, {args.rows:,} rows per trial)")
    print("| candidate | " + " | ".join(POLICIES) + " |")
    print("|---|" + "---|" * len(POLICIES))
    for kind in KINDS:
        cells = " | ".join(f"{counts[kind][p]}/{args.trials}" for p in POLICIES)
        print(f"| {kind} | {cells} |")
    print(
        "\nfirst versions on scikit-learn datasets (default policy): "
        + ", ".join(f"{k} {'promoted' if v else 'REFUSED'}" for k, v in real.items())
    )
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
