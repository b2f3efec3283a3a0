"""How often automatic rollback undoes a healthy promotion, and how fast it undoes a bad one.

Three churn models go through the real training service once (the embedded demo data,
`pgmlops demo`'s generator, 3,000 rows each): v1, a healthy retrain on fresh rows of the
same distribution, and a bad retrain on the same rows with the outcome inverted. Each
simulated watch period registers them again under a fresh model name on one throw-away
SQLite registry, then at the service level (no HTTP):

1. v1 is production and answers `--baseline` rows (scored by the served engine,
   services/serving/prediction.py, logged with the store, labels through the feedback service);
2. the new version is promoted (an audited alias move);
3. rows arrive `--step` at a time, each with its true label, and after every step the
   worker's check runs (services/rollback/watch.py `check_rollback`, the same call
   `pgmlops worker` makes) — every step is one look, so the repeated testing is in the rate;
4. the period ends at `--labels` labels, or at the first rollback.

Healthy periods count false rollbacks (Wilson 95% interval); bad periods count rollbacks
within the period and the labels each took. Traffic rows and labels are fresh draws of the
generator per period (its own seed).

    PYTHONPATH=src python bench/rollback_rates.py --healthy 100 --bad 100
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import platform
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from honesty_rates import wilson  # bench/ is on sys.path when a script runs
from pgmlops.config import Settings
from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.metrics import Scores, metric_value
from pgmlops.domain.registry.records import PRODUCTION
from pgmlops.domain.schema import coerce_features
from pgmlops.services.commands import train_command
from pgmlops.services.context import Context
from pgmlops.services.monitoring.signals import reference_outputs
from pgmlops.services.rollback.request_counts import RequestCounter
from pgmlops.services.rollback.watch import check_rollback
from pgmlops.services.serving.feedback import LabelFor, record_labels
from pgmlops.services.serving.load import LoadedModel, load_version
from pgmlops.services.serving.prediction import predict_records
from pgmlops.store.prediction_log.predictions import PredictionStore
from pgmlops.store.rollback.serving_counts import ServingCountStore

RESULTS = Path(__file__).parent / "results" / "rollback.md"


@dataclasses.dataclass
class Trained:
    """A trained version's card and artifact bytes, and its engine loaded once."""

    card: Any
    blobs: dict[str, bytes]
    model: LoadedModel
    reference_auc: float = math.nan
    live_auc: float = math.nan


def _aucs(ctx: Context, trained: Trained, mv: Any, fresh: Any) -> Trained:
    """The version's held-out reference AUC and its AUC on many fresh rows of the generator:
    how far a healthy retrain's true figure sits from the reference it is judged against."""
    ref = reference_outputs(ctx, mv)
    truth = fresh["Exited"].astype(str).to_numpy()
    x = coerce_features(fresh.drop(columns=["Exited"]), mv.card.feature_schema)
    proba = trained.model.engine.predict_frame(x).proba
    scores = Scores("binary", truth, truth, proba, tuple(mv.card.classes))
    live = metric_value("roc_auc", scores)
    return dataclasses.replace(
        trained, reference_auc=metric_value("roc_auc", ref.scores()), live_auc=live
    )


def _train(ctx: Context, folder: Path, name: str, frame: Any) -> Trained:
    path = folder / f"{name}.csv"
    frame.to_csv(path, index=False)
    version = train_command(
        ctx,
        data=str(path),
        target="Exited",
        model_name=name,
        actor="bench",
        overrides={"params": {"max_iter": 60}},
    )["version"]
    mv = ctx.registry.get_version(name, version)
    blobs = {key: ctx.artifacts.get(f) for key, f in mv.files.items()}
    trained = Trained(mv.card, blobs, load_version(ctx, mv))
    return _aucs(ctx, trained, mv, make_churn(20_000, seed=999))


def _register(ctx: Context, name: str, trained: Trained, action: str) -> int:
    files = {key: ctx.artifacts.put(data) for key, data in trained.blobs.items()}
    card = trained.card.model_copy(update={"model_name": name})
    sign = lambda number, fs: ctx.artifacts.sign_files(name, number, fs)  # noqa: E731
    version = ctx.registry.create_version(name, files, card, "bench", sign=sign).version
    registry = ctx.registry
    registry.move_alias(
        name,
        PRODUCTION,
        new_version=version,
        expected_version=registry.alias_version(name, PRODUCTION),
        action=action,
        actor="bench",
        reason="bench",
    )
    return version


def _serve(ctx: Context, counter: RequestCounter, model: LoadedModel, n: int, seed: int) -> int:
    """Score n fresh rows one request each, log them, count them, label them; rows labelled."""
    frame = make_churn(n, seed=seed)
    truth = frame.pop("Exited").astype(str).tolist()
    rows = [r.__dict__ for r in model.batch.validate_python(frame.to_dict("records"))]
    records = []
    for row in rows:
        _, recs = predict_records(
            model, [row], ctx.settings.serving, request_id=None, started=time.perf_counter()
        )
        counter.count(model.name, model.version, "answered")
        records.extend(recs)
    PredictionStore(ctx.db).write_batch(records)
    counter.flush()
    labels = [LabelFor(truth[k], f"row {k}", prediction_id=r.id) for k, r in enumerate(records)]
    record_labels(ctx, labels, model_name=model.name)
    return len(labels)


def watch_period(
    ctx: Context,
    name: str,
    old: Trained,
    new: Trained,
    *,
    seed: int,
    baseline: int,
    step: int,
    budget: int,
) -> dict[str, Any]:
    """One promotion watched until `budget` labels or the first rollback."""
    counter = RequestCounter(ServingCountStore(ctx.db))
    v_old = _register(ctx, name, old, "force")
    served = dataclasses.replace(old.model, name=name, version=v_old)
    _serve(ctx, counter, served, baseline, seed)
    v_new = _register(ctx, name, new, "promote")
    served = dataclasses.replace(new.model, name=name, version=v_new)
    labels, looks, lowest_p = 0, 0, 1.0
    while labels < budget:
        labels += _serve(ctx, counter, served, step, seed * 1000 + labels + 1)
        looks += 1
        result = check_rollback(ctx, name)
        for s in result.signals:
            if s.signal == "labelled_performance" and s.figures.get("p_value") is not None:
                lowest_p = min(lowest_p, s.figures["p_value"])
        if result.status == "rolled_back":
            crossed = [s for s in result.signals if s.crossed]
            return {
                "rolled_back": True,
                "labels": labels,
                "looks": looks,
                "signals": [s.signal for s in crossed],
                "why": [f"{name}: {s.detail}" for s in crossed],
                "lowest_p": lowest_p,
            }
        if result.status != "healthy":
            raise SystemExit(f"{name}: unexpected watch status {result.status}: {result.message}")
    out = {"rolled_back": False, "labels": labels, "looks": looks, "signals": []}
    return {**out, "why": [], "lowest_p": lowest_p}


def _progress(name: str, run: dict[str, Any], started: float) -> None:
    """One line per period as it ends (a long run can be read, or cut, on the way)."""
    print(
        f"{time.perf_counter() - started:7.0f} s {name} rolled_back={run['rolled_back']} "
        f"labels={run['labels']} lowest_p={run['lowest_p']:.3g} {run['why']}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--healthy", type=int, default=100, help="healthy watch periods")
    parser.add_argument("--bad", type=int, default=100, help="inverted-label watch periods")
    parser.add_argument("--baseline", type=int, default=200, help="v1 rows before promotion")
    parser.add_argument("--step", type=int, default=20, help="rows (and labels) per look")
    parser.add_argument("--labels", type=int, default=400, help="labels per watch period")
    parser.add_argument("--first", type=int, default=0, help="number of the first period")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = Settings(
            database_url=f"sqlite:///{root / 'bench.db'}",
            artifact_root=str(root / "artifacts"),
            model_name="churn",
        )
        ctx = Context(settings)
        train_frame = make_churn(3_000, seed=11)
        retrain_frame = make_churn(3_000, seed=12)
        inverted = retrain_frame.assign(Exited=1 - retrain_frame["Exited"])
        v1 = _train(ctx, root, "v1", train_frame)
        healthy = _train(ctx, root, "healthy", retrain_frame)
        bad = _train(ctx, root, "bad", inverted)
        trained_s = time.perf_counter() - started
        kw = {"baseline": args.baseline, "step": args.step, "budget": args.labels}
        runs = {"healthy": [], "bad": []}
        for k in range(args.first, args.first + args.healthy):
            runs["healthy"].append(watch_period(ctx, f"h{k:04d}", v1, healthy, seed=k + 1, **kw))
            _progress(f"h{k:04d}", runs["healthy"][-1], started)
        for k in range(args.first, args.first + args.bad):
            runs["bad"].append(watch_period(ctx, f"b{k:04d}", v1, bad, seed=50_000 + k, **kw))
            _progress(f"b{k:04d}", runs["bad"][-1], started)
        ctx.close()
    elapsed = time.perf_counter() - started
    aucs = {key: (t.reference_auc, t.live_auc) for key, t in [("v1", v1), ("healthy", healthy)]}
    report(args, runs, trained_s, elapsed, aucs)


def report(
    args: argparse.Namespace,
    runs: dict[str, list],
    trained_s: float,
    elapsed: float,
    aucs: dict[str, tuple[float, float]],
) -> None:
    healthy, bad = runs["healthy"], runs["bad"]
    h_hits = sum(r["rolled_back"] for r in healthy)
    b_hits = sum(r["rolled_back"] for r in bad)
    h_lo, h_hi = wilson(h_hits, len(healthy))
    b_lo, b_hi = wilson(b_hits, len(bad))
    took = [r["labels"] for r in bad if r["rolled_back"]]
    h_signals = Counter(s for r in healthy for s in r["signals"])
    b_signals = Counter(s for r in bad for s in r["signals"])
    looks = statistics.mean(r["looks"] for r in healthy) if healthy else 0
    try:
        load = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        load = ["?"]
    lines = [
        "# Automatic rollback: false rollbacks and time to roll back",
        "",
        f"Command: `PYTHONPATH=src python bench/rollback_rates.py --healthy {args.healthy} "
        f"--bad {args.bad} --baseline {args.baseline} --step {args.step} "
        f"--labels {args.labels} --first {args.first}`",
        "",
        f"Machine: {platform.machine()}, {platform.python_version()}, "
        f"{len(__import__('os').sched_getaffinity(0))} cores, load average at the end "
        f"{' '.join(load)}; training {trained_s:.0f} s, total {elapsed / 60:.1f} min "
        "(SQLite registry, default `rollback:` settings).",
        "",
        f"Each watch period: v1 answers {args.baseline} labelled rows, the new version is "
        f"promoted, then {args.step} rows (each labelled) arrive per look and the worker's "
        f"check runs after each, up to {args.labels} labels.",
        "",
        "| promotion | watch periods | rolled back | rate | Wilson 95% |",
        "| --- | ---: | ---: | ---: | --- |",
        f"| healthy retrain (same distribution) | {len(healthy)} | {h_hits} | "
        f"{h_hits / max(len(healthy), 1):.1%} | [{h_lo:.1%}, {h_hi:.1%}] |",
        f"| retrain on inverted labels | {len(bad)} | {b_hits} | "
        f"{b_hits / max(len(bad), 1):.1%} | [{b_lo:.1%}, {b_hi:.1%}] |",
        "",
        f"Healthy periods: {looks:.0f} looks each on average; signals of false rollbacks: "
        f"{dict(h_signals) or 'none'}; worst period: lowest labelled p-value "
        f"{min((r['lowest_p'] for r in healthy), default=float('nan')):.3g}.",
        "",
        *[f"- false rollback {why}" for r in healthy for why in r["why"]],
        "",
        "AUC held-out reference / on 20,000 fresh rows of the generator: "
        + ", ".join(f"{k} {ref:.3f} / {live:.3f}" for k, (ref, live) in aucs.items())
        + ".",
        "",
        f"Labels the bad version took before its rollback: median "
        f"{statistics.median(took) if took else 'n/a'}, worst {max(took) if took else 'n/a'} "
        f"(looks every {args.step} labels); signals that crossed: {dict(b_signals)}.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
