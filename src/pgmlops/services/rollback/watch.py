"""Automatic rollback: the watch after every promotion, run by `pgmlops worker`.

For a model whose latest production move is a promotion made less than
`rollback.watch_hours` ago and not judged yet, four signals compare the new production
version with the one it replaced: error rate (serving_counts), p99 latency and labelled
performance (the prediction log and its feedback, store/live/figures.py) and prediction drift
(the previous version re-scores the new one's logged inputs; the drift tests of monitoring
judge the two output distributions). When any crosses its limit the previous version is
restored through `rollback` (its artifacts verified like a promotion's), audited with actor
`pgmlops-worker` and the numbers; a target that fails verification is not restored and the
refusal is stored and logged. The restored version is never judged (the latest move is then
a rollback), and nothing is ever promoted here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pgmlops.domain.registry.records import PRODUCTION, AliasEvent
from pgmlops.domain.rollback_limits import (
    SignalVerdict,
    reason_text,
)
from pgmlops.errors import ArtifactError, ConflictError, NotFoundError
from pgmlops.services.context import Context
from pgmlops.store.rollback.verdicts import RollbackVerdict, RollbackVerdictStore

log = logging.getLogger(__name__)
ROLLBACK_ACTOR = "pgmlops-worker"
# Every production move is a promotion (promote, force, a retrain's or a live promotion)
# except a rollback, manual or automatic, which is never judged.
_NOT_WATCHED = frozenset({"rollback"})


@dataclass(frozen=True)
class WatchResult:
    """One model's check: what the watch found and what it did."""

    model_name: str
    status: str  # off, not-watched, healthy, rolled_back, refused
    message: str
    version: int | None = None
    target: int | None = None
    signals: list[SignalVerdict] = field(default_factory=list)
    event: AliasEvent | None = None


def watched_move(ctx: Context, name: str, now: datetime) -> tuple[AliasEvent, int] | str:
    """The production move under watch and its rollback target, or why there is none."""
    # Imported here, as in check_rollback: refused_rollbacks (`pgmlops models --history`)
    # reads stored verdicts and should not load promotion's scikit-learn.
    from pgmlops.services.promotion import production_stack

    history = ctx.registry.alias_history(name, PRODUCTION)
    if not history:
        return "no production version"
    last = history[-1]
    if last.action in _NOT_WATCHED or last.new_version is None:
        return f"the latest production move is a {last.action}: not watched"
    watch = timedelta(hours=ctx.settings.rollback.watch_hours)
    if now - last.created_at > watch:
        return f"v{last.new_version}'s watch ended {last.created_at + watch:%Y-%m-%d %H:%M} UTC"
    stack = production_stack(history)
    if len(stack) < 2:
        return f"v{last.new_version} is the first production version: nothing to restore"
    return last, stack[-2]


def check_rollback(ctx: Context, name: str, now: datetime | None = None) -> WatchResult:
    """Judge one model's latest promotion; roll back when a signal crosses its limit."""
    from pgmlops.services.promotion import rollback
    from pgmlops.services.rollback.signals import watch_signals

    cfg = ctx.settings.rollback
    if not cfg.auto_rollback:
        return WatchResult(name, "off", "automatic rollback is off (rollback.auto_rollback)")
    now = now or datetime.now(UTC)
    found = watched_move(ctx, name, now)
    if isinstance(found, str):
        return WatchResult(name, "not-watched", found)
    move, target = found
    version = int(move.new_version)  # type: ignore[arg-type]
    verdicts = RollbackVerdictStore(ctx.db)
    judged = verdicts.for_move(move.id)
    if judged is not None:
        return WatchResult(
            name, "not-watched", f"v{version} was judged already ({judged.outcome})", version
        )
    new = ctx.registry.get_version(name, version)
    old = ctx.registry.get_version(name, target)
    signals = watch_signals(ctx, new, old, move.created_at, now, cfg)
    crossed = [s for s in signals if s.crossed]
    if not crossed:
        summary = "; ".join(s.detail for s in signals)
        return WatchResult(name, "healthy", summary, version, target, signals)
    reason = reason_text(version, target, crossed, cfg.watch_hours)
    figures = {s.signal: s.figures for s in signals}
    try:
        event = rollback(ctx, name, actor=ROLLBACK_ACTOR, reason=reason)
    except (ArtifactError, NotFoundError) as exc:
        refused = (
            f"{reason}; NOT restored: v{target} failed artifact verification ({exc.message}); "
            f"production stays v{version}"
        )
        log.warning("%s: %s", name, refused)
        _record(verdicts, name, move, version, target, "refused", crossed, refused, figures, None)
        return WatchResult(name, "refused", refused, version, target, signals)
    except ConflictError as exc:
        return WatchResult(name, "not-watched", f"production moved meanwhile: {exc.message}")
    log.warning("%s: %s", name, reason)
    _record(verdicts, name, move, version, target, "rolled_back", crossed, reason, figures, event)
    return WatchResult(name, "rolled_back", reason, version, target, signals, event)


def _record(
    store: RollbackVerdictStore,
    name: str,
    move: AliasEvent,
    version: int,
    target: int,
    outcome: str,
    crossed: list[SignalVerdict],
    reason: str,
    figures: dict[str, Any],
    event: AliasEvent | None,
) -> RollbackVerdict | None:
    try:
        return store.record(
            RollbackVerdict(
                id=0,
                model_name=name,
                promotion_event_id=move.id,
                version=version,
                target_version=target,
                outcome=outcome,
                signal=crossed[0].signal,
                reason=reason,
                figures=figures,
                actor=ROLLBACK_ACTOR,
                rollback_event_id=event.id if event else None,
                created_at=datetime.now(UTC),
            )
        )
    except ConflictError:
        return None  # another worker judged the same move first


def rollback_totals(ctx: Context) -> list[tuple[str, str, str, int]]:
    """(model, signal, outcome, count) of every automatic rollback verdict, for /metrics."""
    return RollbackVerdictStore(ctx.db).totals()


def refused_rollbacks(ctx: Context, name: str) -> list[RollbackVerdict]:
    """Automatic rollbacks that were not made because the target failed verification."""
    return [v for v in RollbackVerdictStore(ctx.db).for_model(name) if v.outcome == "refused"]
