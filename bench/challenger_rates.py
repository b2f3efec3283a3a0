"""Champion vs challenger on real sets (bench/promotion_rates.py --challenger, --null-challenger).

Every version is trained by the real training service on a throw-away SQLite registry and
judged by `services.promotion.evaluate_challenge`, the code `pgmlops promote` runs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from honesty_rates import wilson
from pgmlops.config import Settings
from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.policies import PromotionPolicy
from pgmlops.domain.registry.records import ModelVersion
from pgmlops.services.context import Context
from pgmlops.services.promotion import evaluate_challenge

CHALLENGES = ("better", "identical", "worse")
STRICT = PromotionPolicy(challenger_confidence=0.99)


def challenger_sets(churn_rows: int, sets: str) -> dict[str, tuple[pd.DataFrame, str]]:
    """Real sets bundled in installed packages (no download) and the embedded demo data.

    breast_cancer is left out: 5% of it is about 17 training rows, too few for a single
    split of the default model, so its champion predicts a constant and any model wins.
    fair and randhie are bench/honesty.py's statsmodels sets, loaded by honesty_data.
    """
    from sklearn import datasets

    from honesty_data import real_frame

    out: dict[str, tuple[pd.DataFrame, str]] = {}
    if "digits" in sets:
        digits = datasets.load_digits(as_frame=True).frame
        digits["target"] = np.where(digits["target"] >= 5, "high", "low")
        out["digits >= 5 (1,797 rows)"] = (digits, "target")
    if "churn" in sets:
        out[f"demo churn ({churn_rows:,} rows)"] = (make_churn(churn_rows, seed=77), "Exited")
    for name in ("fair", "randhie"):
        if name in sets:
            frame, target, _, _ = real_frame(name)
            task = "regression" if name == "randhie" else "binary"
            out[f"{name} ({len(frame):,} rows, {task})"] = (frame, target)
    return out


def _train(ctx: Context, data: pd.DataFrame, target: str, name: str, seed: int) -> ModelVersion:
    from pgmlops.services.commands import train_version

    return train_version(
        ctx, data=data.reset_index(drop=True), target=target, model_name=name,
        overrides={"seed": seed, "reference_folds": 0}, onnx=False, actor="b",
    ).version  # fmt: skip


def unseen_skill(ctx: Context, version: ModelVersion, unseen: pd.DataFrame) -> float:
    """AUC (binary) or minus RMSE (regression) on rows neither model saw: higher is better."""
    from sklearn.metrics import roc_auc_score

    from pgmlops.domain.schema import coerce_features
    from pgmlops.services.promotion import version_engine

    card = version.card
    x = coerce_features(unseen, card.feature_schema)
    out = version_engine(ctx, version).predict_frame(x)
    y = unseen[card.target]
    if card.task == "regression":
        pred = np.asarray(out.predicted, dtype=float)
        return -float(np.sqrt(np.mean((y.to_numpy(dtype=float) - pred) ** 2)))
    proba = np.asarray(out.proba, dtype=float)
    truth = y.astype(str).to_numpy() == str(card.positive_class)
    return float(roc_auc_score(truth, proba[:, -1] if proba.ndim == 2 else proba))


def _holdout_only(ctx: Context, candidate: ModelVersion, champion: ModelVersion) -> bool:
    """The gate as it was: the union of the two holdouts alone, one-sided 99%."""
    from pgmlops.domain.predict import baseline_scores
    from pgmlops.domain.promotion.gates import decide
    from pgmlops.services.promotion import holdout_scores, read_holdout

    names = [*candidate.card.feature_schema.names, *champion.card.feature_schema.names]
    needed = list(dict.fromkeys([*names, candidate.card.target]))
    parts = [read_holdout(ctx, v) for v in (candidate, champion)]
    parts = [p[needed] for p in parts if all(c in p for c in needed)]
    rows = pd.concat(parts, ignore_index=True).drop_duplicates().reset_index(drop=True)
    target, card = candidate.card.target, candidate.card
    cand = holdout_scores(ctx, candidate, rows, target)
    champ = holdout_scores(ctx, champion, rows, target)
    base = baseline_scores(card.task, cand.y_true, cand.y_true, card.classes)
    return decide(cand, champ, base, STRICT).approved


def _judge(ctx: Context, cand: ModelVersion, champ: ModelVersion) -> tuple[Any, dict, bool]:
    """(default decision, evaluation sizes, approved at one-sided 0.99)."""
    decision, sizes = evaluate_challenge(ctx, cand, champ)
    ctx.settings.promotion = STRICT
    strict = evaluate_challenge(ctx, cand, champ)[0].approved
    ctx.settings.promotion = PromotionPolicy()
    return decision, sizes, strict


def _context(folder: Path, stem: str) -> Context:
    return Context(
        Settings(
            database_url=f"sqlite:///{folder / f'{stem}.db'}",
            artifact_root=str(folder / f"art-{stem}"),
        )
    )


def challengers(
    cases: int, folder: Path, churn_rows: int, sets: str, verbose: bool, fraction: float = 0.9
) -> dict[str, dict[str, Any]]:
    """Champion vs challenger on real sets, default policy, the real promotion evaluation.

    Per case, a subsample of the set (`fraction`, 90% by default; its own seed) trains three
    versions: on all of it
    (seed 0), on all of it again with another seed (split and model), and on a 5% subsample.
    better = all vs the 5% champion; identical = the other-seed retrain vs the first;
    worse = the 5% model vs the all-data champion. The true gain is the AUC difference (RMSE
    reduction for regression) on the rows outside the subsample (never trained on by either).
    """
    ctx = _context(folder, "challenger")
    out: dict[str, dict[str, Any]] = {}
    for label, (frame, target) in challenger_sets(churn_rows, sets).items():
        hits, before, strict = (dict.fromkeys(CHALLENGES, 0) for _ in range(3))
        first: dict[str, str] = {}
        gains: list[float] = []
        rows: list[int] = []
        for i in range(cases):
            data = frame.sample(frac=fraction, random_state=700 + i)
            unseen = frame.drop(index=data.index)
            small = data.sample(frac=0.05, random_state=800 + i)
            name = f"c{i}{label.split()[0]}"
            versions = {
                key: _train(ctx, d, target, name, seed)
                for key, d, seed in (("full", data, 0), ("again", data, 1), ("small", small, 0))
            }
            skill = {k: unseen_skill(ctx, versions[k], unseen) for k in ("full", "small")}
            gains.append(skill["full"] - skill["small"])
            for kind, cand, champ in (
                ("better", "full", "small"),
                ("identical", "again", "full"),
                ("worse", "small", "full"),
            ):
                decision, sizes, ok = _judge(ctx, versions[cand], versions[champ])
                hits[kind] += int(decision.approved)
                strict[kind] += int(ok)
                before[kind] += int(_holdout_only(ctx, versions[cand], versions[champ]))
                if kind == "better":
                    rows.append(sizes["rows"])
                first.setdefault(kind, decision.summary())
                if verbose:
                    print(f"  {label} {kind} {i} {sizes}: {decision.summary()}", flush=True)
            print(f"{label}: case {i + 1}/{cases} gain {gains[-1]:+.4f}", flush=True)
        out[label] = {
            "hits": hits,
            "before": before,
            "strict": strict,
            "first": first,
            "true_gain": (float(np.min(gains)), float(np.mean(gains)), float(np.max(gains))),
            "rows": (min(rows), max(rows)),
        }
    ctx.close()
    return out


def null_challengers(cases: int, folder: Path, sets: str, verbose: bool) -> dict[str, Any]:
    """Challengers of equal skill: how often the default gate promotes one.

    Per case a 90% subsample (seed 900 + case) trains, with the real training service:
    retrain = the same rows with another seed (another split and model) as challenger to the
    first; halves = a model on one random half as challenger to a model on the other half
    (same split settings). Neither is better by construction, only by the luck of the draw.
    """
    ctx = _context(folder, "null")
    out: dict[str, Any] = {}
    for label, (frame, target) in challenger_sets(6_000, sets).items():
        res: dict[str, Any] = {
            k: {"hits": 0, "strict": 0, "either": 0, "gains": [], "rows": [], "won": []}
            for k in ("retrain", "halves")
        }
        for i in range(cases):
            data = frame.sample(frac=0.9, random_state=900 + i)
            unseen = frame.drop(index=data.index)
            half = data.sample(frac=0.5, random_state=950 + i)
            pairs = {
                "retrain": ((data, 2 * i + 10), (data, 2 * i + 11)),
                "halves": ((half, 0), (data.drop(index=half.index), 0)),
            }
            for kind, ((d_champ, s_champ), (d_cand, s_cand)) in pairs.items():
                name = f"n{kind}{i}{label.split()[0]}"
                champ = _train(ctx, d_champ, target, name, s_champ)
                cand = _train(ctx, d_cand, target, name, s_cand)
                gain = unseen_skill(ctx, cand, unseen) - unseen_skill(ctx, champ, unseen)
                decision, sizes, ok = _judge(ctx, cand, champ)
                reverse = evaluate_challenge(ctx, champ, cand)[0].approved
                r = res[kind]
                r["hits"] += int(decision.approved)
                r["strict"] += int(ok)
                r["either"] += int(decision.approved or reverse)
                r["gains"].append(gain)
                r["rows"].append(sizes["rows"])
                if decision.approved:
                    r["won"].append(gain)
                if verbose or decision.approved:
                    print(f"  {label} {kind} {i} unseen gain {gain:+.4f} {sizes}: "
                          f"{decision.summary()}", flush=True)  # fmt: skip
            print(f"{label}: null case {i + 1}/{cases}", flush=True)
        out[label] = res
    ctx.close()
    return out


def _cell(hits: int, total: int) -> str:
    lo, hi = wilson(hits, total)
    return f"{hits}/{total} [{lo:.1%}, {hi:.1%}]"


def report(args: argparse.Namespace) -> None:
    """Run --challenger or --null-challenger and print the markdown tables."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if args.challenger:
            result = challengers(
                args.challenger, Path(tmp), args.churn_rows, args.sets, args.verbose, args.fraction
            )
        else:
            nulls = null_challengers(args.null_challenger, Path(tmp), args.sets, args.verbose)
    if args.challenger:
        n = args.challenger
        head = "default policy (Wilson 95%) | before: holdouts, 0.99 | held-out rows, 0.99"
        print(f"| data | candidate | {head} | first decision (default) |")
        print("|---|---|---|---|---|---|")
        for label, res in result.items():
            lo_g, mean_g, hi_g = res["true_gain"]
            what = "RMSE reduction" if "regression" in label else "AUC gain"
            gain = f"mean {mean_g:+.4f} (min {lo_g:+.4f}, max {hi_g:+.4f})"
            print(f"| {label} | true {what} of full over 5% on unseen rows {gain}; ", end="")
            print(f"evaluation rows {res['rows']} | | | | |")
            for kind in CHALLENGES:
                cells = [_cell(res[k][kind], n) for k in ("hits", "before", "strict")]
                print(f"| {label} | {kind} | {' | '.join(cells)} | {res['first'][kind]} |")
    else:
        n = args.null_challenger
        print("| data | equal-skill challenger | promoted, default 0.95 (Wilson 95%) | "
              "at 0.99 | either direction at 0.95 | evaluation rows | unseen gain of "
              "the challenger: mean (sd) | unseen gain of those promoted |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|")
        for label, res in nulls.items():
            for kind, r in res.items():
                g = np.asarray(r["gains"])
                won = ", ".join(f"{w:+.4f}" for w in r["won"]) or "-"
                print(f"| {label} | {kind} | {_cell(r['hits'], n)} | {_cell(r['strict'], n)} | "
                      f"{_cell(r['either'], n)} | {min(r['rows'])}-{max(r['rows'])} | "
                      f"{g.mean():+.4f} ({g.std(ddof=1):.4f}) | {won} |")  # fmt: skip
    print(f"({time.perf_counter() - started:.0f} s)")
