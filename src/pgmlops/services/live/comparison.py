"""`pgmlops compare --live`: production against the challenger on the traffic both served.

The store reads the log (store/live/figures.py), the domain computes (domain/
live_comparison.py); this module decides which rows compare with which:

- shadow traffic: each challenger row and the production row it shadowed are one record,
  so outputs are compared record by record and the labelled metric is bootstrapped paired;
- canary traffic: the challenger's canary rows against production's rows logged over the
  same span (first to last canary row), bootstrapped unpaired.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from pgmlops.domain.live.comparison import (
    GainInterval,
    LivePolicy,
    agreement,
    gain_interval,
    mean_abs_difference,
    score_distance,
)
from pgmlops.domain.live.modes import CHALLENGER, Deployment
from pgmlops.domain.metrics import Scores
from pgmlops.domain.registry.card import ModelCard
from pgmlops.domain.registry.records import PRODUCTION, AliasEvent
from pgmlops.errors import ConfigError, NotFoundError
from pgmlops.services.context import Context
from pgmlops.services.monitoring.labelled_performance import valid_labels
from pgmlops.services.monitoring.run import parse_duration
from pgmlops.store.live.figures import LiveFigureStore, LoggedOutputs, RoleTraffic, ShadowCoverage

# A number and a unit: read as a duration (parse_duration says what is wrong with it).
_DURATION_LIKE = re.compile(r"^[0-9.]+\s*[a-zA-Z]+$")
# What the error rate of each row of the table counts (the log holds answers, not failures).
ERROR_BASIS = {
    "production": "not in the log: a request that failed was never logged (see /metrics)",
    "shadow": "shadow misses: production rows of the shadow span with no shadow row "
    "(challenger failed, queue full or log busy)",
    "canary": "not in the log: a failed canary row is answered and logged by production "
    "(counted in /metrics as role=canary, outcome=failed)",
}


@dataclass
class TrafficComparison:
    """One kind of traffic (shadow or canary) compared between the two versions."""

    kind: str
    pairing: str
    records: dict[str, int]
    agreement: float | None = None
    mean_abs_difference: float | None = None
    score_distance: dict[str, Any] | None = None
    labelled: dict[str, Any] | None = None
    gain: GainInterval | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "pairing": self.pairing,
            "records": self.records,
            "agreement": self.agreement,
            "mean_abs_difference": self.mean_abs_difference,
            "score_distance": self.score_distance,
            "labelled": self.labelled,
        }


@dataclass
class LiveComparison:
    """Production against the challenger on live traffic (JSON-ready with `to_dict`)."""

    model_name: str
    task: str
    primary_metric: str
    production_version: int
    challenger_version: int
    deployment: str | None
    since: datetime | None
    until: datetime | None
    versions: list[dict[str, Any]]
    shadow: TrafficComparison | None
    canary: TrafficComparison | None

    def best_gain(self) -> GainInterval | None:
        """The evidence a decision reads: paired (shadow) when it has an interval, else canary."""
        gains = [t.gain for t in (self.shadow, self.canary) if t is not None and t.gain]
        with_interval = [g for g in gains if g.enough]
        return (with_interval or gains or [None])[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "task": self.task,
            "primary_metric": self.primary_metric,
            "production_version": self.production_version,
            "challenger_version": self.challenger_version,
            "deployment": self.deployment,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "versions": self.versions,
            "shadow": self.shadow.to_dict() if self.shadow else None,
            "canary": self.canary.to_dict() if self.canary else None,
        }


def parse_since(text: str | datetime | timedelta, now: datetime | None = None) -> datetime:
    """'24h', '7d' (a duration back from now) or an ISO time; one-line ConfigError otherwise."""
    now = now or datetime.now(UTC)
    if isinstance(text, timedelta):
        return now - text
    if isinstance(text, datetime):
        when = text
    elif _DURATION_LIKE.match(str(text).strip()):
        return now - parse_duration(str(text).strip())
    else:
        try:
            when = datetime.fromisoformat(str(text).strip())
        except ValueError:
            raise ConfigError(
                f"since {str(text)[:60]!r} is neither an ISO time (2026-12-06T12:00) "
                "nor a duration (30m, 24h, 7d)",
                params=("since",),
            ) from None
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when
    if when > now:
        raise ConfigError(f"since {when.isoformat()} is in the future", params=("since",))
    return when


def live_comparison(
    ctx: Context,
    name: str,
    *,
    challenger_version: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    policy: LivePolicy | None = None,
) -> LiveComparison:
    """Compare production with the challenger (default: the deployed one) on logged traffic."""
    policy = policy or ctx.settings.live
    states = ctx.registry.alias_states(name)
    if not states:
        ctx.registry.list_models(name)  # NotFoundError for an unknown model
    production = states.get(PRODUCTION)
    if production is None:
        raise NotFoundError(f"model {name!r} has no production version to compare with")
    current = states.get(CHALLENGER)
    version = challenger_version or (current.version if current else None)
    if version is None:
        raise NotFoundError(
            f"model {name!r} has no challenger deployed: deploy one (shadow or canary) "
            "or give version N, one that served live traffic",
            params=("version",),
        )
    if version == production.version:
        raise ConfigError(f"{name} v{version} is production: compare it with another version")
    prod_mv = ctx.registry.get_version(name, production.version)
    ctx.registry.get_version(name, version)  # NotFoundError for an unknown version
    card = prod_mv.card
    metric = ctx.settings.promotion.primary_for(card.task)
    store = LiveFigureStore(ctx.db)
    traffic = store.traffic(name, since=since, until=until)
    mine = [t for t in traffic if t.version in (production.version, version)]
    spans = shadow_spans(ctx.registry.alias_history(name, CHALLENGER), version)
    coverage = store.shadow_coverage(name, version, since=since, until=until, spans=spans)
    deployment = Deployment.from_dict(current.deployment) if current else None
    shown = deployment.describe() if deployment and current.version == version else None  # type: ignore[union-attr]
    shadow = _shadow(store, card, metric, policy, name, production.version, version, since, until)
    canary = _canary(store, card, metric, policy, name, production.version, version, mine, until)
    return LiveComparison(
        model_name=name,
        task=card.task,
        primary_metric=metric,
        production_version=production.version,
        challenger_version=version,
        deployment=shown,
        since=since,
        until=until,
        versions=[_traffic_row(t, production.version, coverage) for t in mine],
        shadow=shadow,
        canary=canary,
    )


def shadow_spans(events: list[AliasEvent], version: int) -> list[tuple[datetime, datetime | None]]:
    """[start, end) times the challenger alias served `version` in shadow mode."""
    spans: list[tuple[datetime, datetime | None]] = []
    start: datetime | None = None
    for e in events:
        if start is not None:
            spans.append((start, e.created_at))
            start = None
        mode = Deployment.from_dict(e.deployment)
        if e.new_version == version and mode is not None and mode.mode == "shadow":
            start = e.created_at
    if start is not None:
        spans.append((start, None))
    return spans


def _traffic_row(t: RoleTraffic, production: int, coverage: ShadowCoverage) -> dict[str, Any]:
    errors: int | None = None
    rate: float | None = None
    if t.role == "shadow":
        errors, rate = coverage.missed, coverage.miss_rate
    return {
        "version": t.version,
        "role": t.role,
        "is_production": t.version == production and t.role == "production",
        "rows": t.rows,
        "requests": t.requests,
        "errors": errors,
        "error_rate": rate,
        "error_basis": ERROR_BASIS.get(t.role),
        "p50_latency_ms": t.p50_latency_ms,
        "p99_latency_ms": t.p99_latency_ms,
        "first_at": t.first_at.isoformat() if t.first_at else None,
        "last_at": t.last_at.isoformat() if t.last_at else None,
    }


def _shadow(
    store: LiveFigureStore,
    card: ModelCard,
    metric: str,
    policy: LivePolicy,
    name: str,
    production: int,
    challenger: int,
    since: datetime | None,
    until: datetime | None,
) -> TrafficComparison | None:
    pairs = store.shadow_pairs(name, production, challenger, since=since, until=until)
    if not len(pairs):
        return None
    p, c = pairs.production, pairs.challenger
    out = TrafficComparison("shadow", "paired", {"records": len(pairs), "labelled": p.labelled})
    if card.task == "regression":
        out.mean_abs_difference = mean_abs_difference(_values(p), _values(c))
    else:
        out.agreement = agreement(p.prediction, c.prediction)
    out.score_distance = _distance(card, p, c)
    labelled = np.array([v is not None for v in p.label])
    scores_p, scores_c = _scores(card, p, labelled), _scores(card, c, labelled)
    if scores_p is not None and scores_c is not None:
        # Labels the model cannot read were dropped from one side: keep the same records.
        keep = np.intersect1d(scores_p[1], scores_c[1])
        scores_p = (_take(scores_p, keep), keep)
        scores_c = (_take(scores_c, keep), keep)
    gain = gain_interval(
        metric,
        scores_p[0] if scores_p else None,
        scores_c[0] if scores_c else None,
        paired=True,
        policy=policy,
    )
    out.gain, out.labelled = gain, {**gain.to_dict(), "describe": gain.describe()}
    return out


def _canary(
    store: LiveFigureStore,
    card: ModelCard,
    metric: str,
    policy: LivePolicy,
    name: str,
    production: int,
    challenger: int,
    traffic: list[RoleTraffic],
    until: datetime | None,
) -> TrafficComparison | None:
    rows = [t for t in traffic if t.version == challenger and t.role == "canary"]
    if not rows or rows[0].first_at is None:
        return None
    span_from = rows[0].first_at
    # Production's rows over the same span: both sides saw the same hours of traffic
    # (`until` is exclusive, so the span ends just past the last canary row).
    last = rows[0].last_at
    span_until = until or (last + timedelta(microseconds=1) if last else None)
    c = store.outputs(name, challenger, "canary", since=span_from, until=until)
    p = store.outputs(name, production, "production", since=span_from, until=span_until)
    out = TrafficComparison(
        "canary",
        "unpaired",
        {
            "production": len(p),
            "challenger": len(c),
            "production_labelled": p.labelled,
            "challenger_labelled": c.labelled,
        },
    )
    if len(p) and len(c):
        out.score_distance = _distance(card, p, c)
    sp = _scores(card, p, np.array([v is not None for v in p.label]))
    sc = _scores(card, c, np.array([v is not None for v in c.label]))
    gain = gain_interval(
        metric, sp[0] if sp else None, sc[0] if sc else None, paired=False, policy=policy
    )
    out.gain, out.labelled = gain, {**gain.to_dict(), "describe": gain.describe()}
    return out


def _values(out: LoggedOutputs) -> np.ndarray:
    return pd.to_numeric(pd.Series(out.prediction), errors="coerce").to_numpy(dtype=float)


def _distance(card: ModelCard, p: LoggedOutputs, c: LoggedOutputs) -> dict[str, Any] | None:
    if card.task == "binary":
        found = score_distance(
            [np.nan if v is None else v for v in p.probability],
            [np.nan if v is None else v for v in c.probability],
            kind="probability",
        )
    elif card.task == "regression":
        found = score_distance(_values(p), _values(c), kind="value")
    else:
        found = score_distance(p.prediction, c.prediction, kind="class")
    return found.to_dict() if found else None


def _scores(
    card: ModelCard, out: LoggedOutputs, labelled: np.ndarray
) -> tuple[Scores, np.ndarray] | None:
    """The labelled rows as Scores, and which rows of `out` they are (unusable labels out)."""
    rows = np.flatnonzero(labelled) if len(labelled) else np.array([], dtype=int)
    if not len(rows):
        return None
    labels = pd.Series([out.label[k] for k in rows])
    y_true, good, _ = valid_labels(labels, card.task, card.classes)
    rows = rows[good]
    if not len(rows):
        return None
    predicted = np.asarray(out.prediction, dtype=object)[rows]
    proba: np.ndarray | None = None
    if card.task == "binary":
        values = [out.probability[k] for k in rows]
        if all(v is not None for v in values):
            proba = np.asarray(values, dtype=float)
    elif card.task == "multiclass":
        proba = _class_proba(card, [out.output[k] for k in rows])
    if card.task == "regression":
        predicted = pd.to_numeric(pd.Series(predicted), errors="coerce").to_numpy(dtype=float)
        keep = np.isfinite(predicted)
        rows, predicted, y_true = rows[keep], predicted[keep], y_true[good][keep]
        if not len(rows):
            return None
    else:
        y_true = y_true[good]
    scores = Scores(
        task=card.task, y_true=y_true, predicted=predicted, proba=proba, classes=card.classes
    )
    return scores, rows


def _class_proba(card: ModelCard, outputs: list[dict[str, Any] | None]) -> np.ndarray | None:
    classes = card.classes or []
    table = []
    for o in outputs:
        probs = (o or {}).get("probabilities")
        if not isinstance(probs, dict) or any(c not in probs for c in classes):
            return None
        table.append([float(probs[c]) for c in classes])
    return np.asarray(table, dtype=float)


def _take(pair: tuple[Scores, np.ndarray], keep: np.ndarray) -> Scores:
    scores, rows = pair
    return scores.take(np.flatnonzero(np.isin(rows, keep)))
