"""The four signals automatic rollback judges: error rate, p99 latency, labels, drift."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from pgmlops.domain.intervals import drop_test, null_differences
from pgmlops.domain.metrics import Scores, improvement, metric_value
from pgmlops.domain.monitoring.drift import DriftPolicy, detect_drift
from pgmlops.domain.policies import LOWER_IS_BETTER
from pgmlops.domain.registry.records import ModelVersion
from pgmlops.domain.rollback_limits import (
    SignalVerdict,
    error_rate_verdict,
    labelled_look,
    latency_verdict,
)
from pgmlops.domain.schema import coerce_features
from pgmlops.errors import PgmlopsError
from pgmlops.rollback_config import RollbackConfig
from pgmlops.services.context import Context
from pgmlops.services.monitoring.labelled_performance import class_counts, valid_labels
from pgmlops.services.monitoring.signals import reference_outputs
from pgmlops.services.promotion import version_engine
from pgmlops.store.live.figures import LiveFigureStore, LoggedOutputs
from pgmlops.store.monitoring.prediction_windows import read_window
from pgmlops.store.rollback.serving_counts import ServingCountStore

# Rows of each version read for the labelled comparison (newest first): the null of the
# previous version's live figure is drawn from them, a few seconds of work at most.
LABELLED_ROWS = 5_000
# Null draws of the labelled comparison: each look's level is labelled_alpha / labelled_looks
# (0.005 / 7 = 0.0007 by default), so 10,000 draws leave about 7 of them beyond it; with 2,000
# the cut was the null's 2nd smallest draw, itself a matter of luck.
LABELLED_DRAWS = 10_000


@dataclass(frozen=True)
class _Watch:
    """What every signal judges: the new version since its promotion, the previous before."""

    ctx: Context
    new: ModelVersion
    old: ModelVersion
    since: datetime
    now: datetime
    cfg: RollbackConfig

    @property
    def baseline_start(self) -> datetime:
        """Where the previous version's baseline window opens (it closes at `since`)."""
        return self.since - timedelta(hours=self.cfg.baseline_hours)


K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _kept(cache: dict[K, V], key: K, most: int, make: Callable[[], V]) -> V:
    """``cache[key]``, made on first use; the oldest entry goes once ``most`` are kept."""
    if key not in cache:
        if len(cache) >= most:
            cache.pop(next(iter(cache)))
        cache[key] = make()
    return cache[key]


def watch_signals(
    ctx: Context,
    new: ModelVersion,
    old: ModelVersion,
    since: datetime,
    now: datetime,
    cfg: RollbackConfig,
) -> list[SignalVerdict]:
    """Every signal of the new version since its promotion against the previous version."""
    watch = _Watch(ctx, new, old, since, now, cfg)
    out = []
    for compute in (_error_rate, _latency, _labelled, _prediction_drift):
        try:
            out.append(compute(watch))
        except PgmlopsError as exc:
            name = compute.__name__.strip("_")
            out.append(SignalVerdict(name, False, f"{name}: not judged ({exc.message})"))
    return out


def _error_rate(watch: _Watch) -> SignalVerdict:
    new, old, cfg = watch.new, watch.old, watch.cfg
    store = ServingCountStore(watch.ctx.db)
    got = store.counts(new.model_name, new.version, since=watch.since, until=watch.now)
    before = store.counts(
        old.model_name, old.version, since=watch.baseline_start, until=watch.since
    )
    return error_rate_verdict(
        got.errors,
        got.total,
        before.errors,
        before.total,
        increase=cfg.error_rate_increase,
        alpha=cfg.alpha,
        min_requests=cfg.min_requests,
        version=new.version,
        previous=old.version,
        refused=got.refused,
    )


def _latency(watch: _Watch) -> SignalVerdict:
    new, old, cfg, since = watch.new, watch.old, watch.cfg, watch.since
    figures = LiveFigureStore(watch.ctx.db)
    after = _production(figures.traffic(new.model_name, since=since, until=watch.now), new.version)
    start = watch.baseline_start
    before = _production(figures.traffic(old.model_name, since=start, until=since), old.version)
    return latency_verdict(
        after.p99_latency_ms if after else None,
        after.rows if after else 0,
        before.p99_latency_ms if before else None,
        before.rows if before else 0,
        ratio=cfg.latency_ratio,
        margin_ms=cfg.latency_margin_ms,
        ceiling_ms=cfg.latency_p99_ms,
        min_rows=cfg.min_latency_rows,
        version=new.version,
        previous=old.version,
    )


def _production(traffic: list[Any], version: int) -> Any:
    return next((t for t in traffic if t.version == version and t.role == "production"), None)


def labelled_scores(mv: ModelVersion, logged: LoggedOutputs) -> Scores | None:
    """The logged outputs that carry a usable label, as metrics read them (None if none)."""
    card = mv.card
    has = np.array([v is not None for v in logged.label], dtype=bool)
    if not has.any():
        return None
    labels = pd.Series([v for v in logged.label if v is not None])
    y_true, good, _ = valid_labels(labels, card.task, card.classes)
    rows = np.flatnonzero(has)[good]
    if rows.size == 0:
        return None
    predicted = np.asarray(logged.prediction, dtype=object)[rows]
    proba = None
    if card.task == "binary":
        values = np.array([np.nan if p is None else p for p in logged.probability], dtype=float)
        proba = values[rows] if np.isfinite(values[rows]).all() else None
    classes = tuple(card.classes) if card.classes else None
    if card.task == "regression":
        return Scores("regression", y_true[good].astype(float), predicted.astype(float))
    return Scores(card.task, y_true[good], predicted.astype(str), proba, classes)


# Nulls kept between checks: one per checkpoint and class counts (80 kB each, 20 MB at most).
_NULLS: dict[tuple[Any, ...], np.ndarray] = {}


def _null(
    key: tuple[Any, ...],
    scores: Scores,
    metric: str,
    n: int,
    counts: tuple[int, ...] | None,
) -> np.ndarray:
    """Null draws at n labels with the look's labels per class, kept between checks.

    Drawn at the window's own class counts (as monitoring's, issue 24): a window's metric
    varies with them more than with anything else. Seeded, so a check between two
    checkpoints repeats the same test on the same rows.
    """
    return _kept(
        _NULLS,
        (*key, metric, n, counts),
        256,
        lambda: null_differences(
            scores, metric, n, draws=LABELLED_DRAWS, seed=0, class_counts=counts
        ),
    )


def _labelled(watch: _Watch) -> SignalVerdict:
    """The new version's primary metric on its labels vs the previous version's live figure
    (its labelled rows before the promotion), else its held-out reference; the interval is
    the null of monitoring's alarm (domain/intervals.py), drawn from the previous version.

    Judged only at fixed label counts (``labelled_look``), each at labelled_alpha / looks:
    the chance of a false rollback over the whole watch stays below labelled_alpha however
    often the worker checks."""
    ctx, new, old, cfg, since = watch.ctx, watch.new, watch.old, watch.cfg, watch.since
    figures = LiveFigureStore(ctx.db)
    name = new.model_name
    metric = ctx.settings.promotion.primary_for(new.card.task)
    logged = figures.outputs(name, new.version, "production", since=since, until=watch.now)
    scores = labelled_scores(new, logged)
    total = len(scores) if scores is not None else 0
    look = labelled_look(total, cfg.min_labels, cfg.labelled_looks)
    base: dict[str, Any] = {"metric": metric, "labels": total, "min_labels": cfg.min_labels}
    if scores is None or look is None:
        detail = (
            f"labelled {metric}: {total} labels of v{new.version}, waiting for {cfg.min_labels}"
        )
        return SignalVerdict("labelled_performance", False, detail, base)
    n, number = look
    # Outputs come newest first: the look judges the oldest n labels, the same rows at every
    # check until the next checkpoint.
    scores = scores.take(np.arange(total - n, total))
    alpha = cfg.labelled_alpha / cfg.labelled_looks
    current = metric_value(metric, scores)
    earlier = figures.outputs(
        name,
        old.version,
        "production",
        since=watch.baseline_start,
        until=since,
        limit=LABELLED_ROWS,
    )
    old_scores = labelled_scores(old, earlier)
    window_counts = class_counts(scores.y_true, list(scores.classes)) if scores.classes else None
    if old_scores is not None and len(old_scores) >= cfg.baseline_labels:
        source = f"live, {len(old_scores)} labels"
        reference = metric_value(metric, old_scores)
        key: tuple[Any, ...] = ("live", name, old.version, len(old_scores), earlier.ids[0])
        null = _null(key, old_scores, metric, n, window_counts)
    else:
        ref = reference_outputs(ctx, old)
        if ref is None:
            detail = (
                f"labelled {metric}: v{old.version} has neither {cfg.baseline_labels} live labels "
                "nor held-out reference outputs to compare with"
            )
            return SignalVerdict("labelled_performance", False, detail, base)
        source = f"held-out reference, {len(ref.y_true)} rows"
        reference = metric_value(metric, ref.scores())
        key = ("reference", old.files["reference_outputs"].sha256)
        null = _null(key, ref.scores(), metric, n, window_counts)
    # The null is shifted to the tolerance: "worse by more than performance_drop, beyond
    # chance". Testing "worse at all, beyond chance" and then the point drop alone rolled back
    # healthy retrains whose true figure sits a little under the reference (bench).
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    limit = reference - sign * cfg.performance_drop * abs(reference)
    verdict = drop_test(metric, current, limit, null, alpha=alpha, tolerance=0.0)
    drop = -improvement(metric, current, reference) / abs(reference) if reference else None
    base.update(
        look=number,
        looks=cfg.labelled_looks,
        judged_labels=n,
        current=current,
        reference=reference,
        reference_source=source,
        p_value=verdict.p_value,
        drop=drop,
        limit_value=limit,
        limit=cfg.performance_drop,
        alpha=alpha,
        watch_alpha=cfg.labelled_alpha,
    )
    drop_text = f"{drop:.1%}" if drop is not None and np.isfinite(drop) else "n/a"
    p = f"{verdict.p_value:.3g}" if verdict.p_value is not None else "n/a"
    ref_text = f"{reference:.3f}" if np.isfinite(reference) else "n/a"
    detail = (
        f"labelled {metric} {current:.3f} on {n} labels (look {number} of "
        f"{cfg.labelled_looks}) vs v{old.version} {ref_text} ({source}): drop {drop_text} "
        f"(limit {cfg.performance_drop:.0%}), p {p} that it is within the limit "
        f"(alpha {alpha:.2g} = {cfg.labelled_alpha:g} over {cfg.labelled_looks} looks)"
    )
    return SignalVerdict("labelled_performance", verdict.degraded, detail, base)


# The previous version's pipeline, kept between checks (the check runs every minute): keyed
# by the model file's digest and signature, so only the bytes it was verified as are reused.
_ENGINES: dict[tuple[str, str | None], Any] = {}


def _engine(ctx: Context, mv: ModelVersion) -> Any:
    stored = mv.files["model"]
    return _kept(_ENGINES, (stored.sha256, stored.signature), 4, lambda: version_engine(ctx, mv))


def _prediction_drift(watch: _Watch) -> SignalVerdict:
    """The new version's logged outputs vs the previous version's outputs on the same inputs.

    Re-scoring the same rows keeps a shift of the traffic itself out of the comparison; the
    test is monitoring's output drift test with rollback's effect floors (drift_psi, drift_js)
    so that two good models that differ a little never alarm.
    """
    ctx, new, old, cfg = watch.ctx, watch.new, watch.old, watch.cfg
    schema = old.card.feature_schema
    columns = [(f.name, f.kind) for f in schema.features]
    window = read_window(
        ctx.db, new.model_name, new.version, columns, last=cfg.drift_rows, since=watch.since
    )
    n = len(window)
    base: dict[str, Any] = {"rows": n}
    policy = DriftPolicy(
        alpha=cfg.alpha,
        psi_floor=cfg.drift_psi,
        js_floor=cfg.drift_js,
        wasserstein_floor=cfg.drift_psi,
        min_rows=200,
        multivariate=False,
    )
    if n < policy.min_rows:
        detail = f"prediction drift: {n} rows of v{new.version}, waiting for {policy.min_rows}"
        return SignalVerdict("prediction_drift", False, detail, base)
    x = coerce_features(window.features, schema)
    theirs = _engine(ctx, old).predict_frame(x)
    task = new.card.task
    if task == "binary" and old.card.task == "binary":
        ours = window.outputs["probability"].to_numpy(dtype=float)
        ref = np.asarray(theirs.proba, dtype=float)
        kind, numeric, categorical = "P(positive)", ["output"], []
    elif task == "regression" and old.card.task == "regression":
        ours = pd.to_numeric(window.outputs["prediction"], errors="coerce").to_numpy(float)
        ref = np.asarray(theirs.predicted, dtype=float)
        kind, numeric, categorical = "prediction", ["output"], []
    else:
        ours = window.outputs["prediction"].astype(str).to_numpy()
        ref = np.asarray(theirs.predicted).astype(str)
        kind, numeric, categorical = "class", [], ["output"]
    report = detect_drift(
        pd.DataFrame({"output": ref}),
        pd.DataFrame({"output": ours}),
        numeric=numeric,
        categorical=categorical,
        policy=policy,
    )
    feature = report.feature("output")
    effect = "js" if feature.js is not None else "psi"
    value = feature.js if feature.js is not None else feature.psi
    base.update(
        output=kind,
        p_adjusted=feature.p_adjusted,
        psi=feature.psi,
        js=feature.js,
        wasserstein_norm=feature.wasserstein_norm,
        thresholds=feature.effect_thresholds,
    )
    detail = (
        f"prediction drift of v{new.version}'s {kind} vs v{old.version}'s on the same {n} "
        f"rows: {effect} {value:.3f}, p {feature.p_adjusted:.2g} ({feature.reason})"
    )
    return SignalVerdict("prediction_drift", feature.drifted, detail, base)
