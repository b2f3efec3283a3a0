"""Section `promotions` of bench/honesty.py: how often the promotion gates pass each kind."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from honesty_bench import ACTOR, Bench
from honesty_rates import Rate, Row, at_least, at_most
from pgmlops.domain.demo_data import make_churn
from pgmlops.errors import PgmlopsError, PromotionRefused
from pgmlops.services.commands import promote_command


def promotions(bench: Bench, cases: int, log: Callable) -> list[Row]:
    """Promotion rates through the real train + promote services, one model name per case."""
    src = bench.source
    target = src.target
    counts = {k: [0, 0] for k in ("shuffled", "noise", "identical", "better")}
    reasons: dict[str, str] = {}
    for i in range(cases):
        started = time.perf_counter()
        if src.name == "demo":
            data = make_churn(bench.promotion_rows, seed=200 + i)
        else:
            data = src.train.sample(frac=0.8, random_state=200 + i).reset_index(drop=True)
        rng = np.random.default_rng(300 + i)
        features = [c for c in data.columns if c != target]
        shuffled = data.assign(**{target: rng.permutation(data[target].to_numpy())})
        noise = data.assign(**{c: rng.permutation(data[c].to_numpy()) for c in features})
        small = data.sample(frac=0.05, random_state=400 + i).reset_index(drop=True)
        for kind, champion, candidate in (
            ("shuffled", None, shuffled),
            ("noise", None, noise),
            ("identical", data, data),
            ("better", small, data),
        ):
            name = f"{kind}-{i}"
            try:
                if champion is not None:
                    first = bench.train(champion, name)
                    promote_command(
                        bench.ctx,
                        model_name=name,
                        version=first["version"],
                        force=True,
                        reason="bench champion",
                        actor=ACTOR,
                    )
                second = bench.train(candidate, name)
                promote_command(
                    bench.ctx,
                    model_name=name,
                    version=second["version"],
                    force=False,
                    reason=None,
                    actor=ACTOR,
                )
                counts[kind][0] += 1
            except PromotionRefused as exc:
                reasons.setdefault(kind, str(exc))
            except PgmlopsError as exc:  # a case the services refuse to even evaluate
                reasons.setdefault(kind, f"error: {exc}")
            counts[kind][1] += 1
        log(f"promotion case {i + 1}/{cases}: {time.perf_counter() - started:.1f}s")
    bench.promotion_reasons = reasons
    where = (
        f"{cases} cases, make_churn({bench.promotion_rows:,}) seeds 200+"
        if src.name == "demo"
        else f"{cases} cases, 80% subsamples of the training rows"
    )
    desc = {
        "shuffled": ("shuffled-label candidate, no champion", at_most(0.0)),
        "noise": ("pure-noise features (each column permuted), no champion", at_most(0.0)),
        "identical": ("identical retrain (same data, same settings) vs champion", at_most(0.0)),
        "better": ("full data vs a champion trained on a 5% subsample", at_least(0.95)),
    }
    return [Row("promotion", desc[k][0], where, Rate(*counts[k], **desc[k][1])) for k in counts]
