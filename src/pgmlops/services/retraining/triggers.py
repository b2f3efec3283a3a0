"""Should a model be retrained now? Each configured trigger answers with a reason.

A check that cannot be evaluated (too few logged rows, no production version, live source
down) does not fire and says why; it never stops the other checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pgmlops.errors import PgmlopsError
from pgmlops.services.context import Context
from pgmlops.store.prediction_log.labels import LabelStore
from pgmlops.store.retraining import RetrainingRunStore


@dataclass(frozen=True)
class Check:
    """One trigger's verdict and the line that explains it."""

    name: str
    fired: bool
    detail: str
    # Where the trigger stands, for `retrain --status`: counts, next due time, which run.
    state: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "fired": self.fired, "detail": self.detail}
        if self.state:
            out["state"] = self.state
        return out


@dataclass
class TriggerReport:
    """Every check run for a model; `reasons` are the lines of those that fired."""

    model_name: str
    checks: list[Check] = field(default_factory=list)
    monitoring_run_id: int | None = None

    @property
    def fired(self) -> list[Check]:
        return [c for c in self.checks if c.fired]

    @property
    def reasons(self) -> list[str]:
        return [c.detail for c in self.fired]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "fired": bool(self.fired),
            "reasons": self.reasons,
            "checks": [c.to_dict() for c in self.checks],
            "monitoring_run_id": self.monitoring_run_id,
        }


def last_training(ctx: Context, name: str) -> datetime | None:
    """When the model's newest version was registered."""
    try:
        return ctx.registry.latest_recorded(name).created_at
    except PgmlopsError:
        return None


def next_due(schedule: float | str, after: datetime) -> datetime:
    """The first scheduled moment after `after` (interval seconds, or cron in UTC)."""
    if isinstance(schedule, int | float):
        return after + timedelta(seconds=float(schedule))
    from croniter import croniter

    return croniter(schedule, after.astimezone(UTC)).get_next(datetime)


def schedule_anchor(ctx: Context, name: str) -> datetime | None:
    """The later of the last retraining run's start and the newest version's registration."""
    moments = [
        m
        for m in (RetrainingRunStore(ctx.db).last_started(name), last_training(ctx, name))
        if m is not None
    ]
    return max(moments) if moments else None


def _percent(count: int, needed: int) -> str:
    return f"{count:,} of {needed:,} ({count / needed:.1%})"


def new_labels_check(ctx: Context, name: str, needed: int) -> Check:
    """Labelled rows since the last training: feedback plus live rows past the watermark."""
    since = last_training(ctx, name)
    count = LabelStore(ctx.db).count_since(name, since)
    where = "feedback"
    live_cfg = ctx.settings.retraining.live_source
    if live_cfg is not None:
        from pgmlops.services.retraining.live_source import LiveSource

        try:
            count += LiveSource(ctx, name, live_cfg).count_new()
            where = "feedback + live source"
        except PgmlopsError as exc:
            where = f"feedback only; live source not counted: {exc}"
    fired = count >= needed
    verb = "reached" if fired else "not yet"
    return Check(
        "new_labels",
        fired,
        f"new labelled rows since the last training: {_percent(count, needed)} — {verb} ({where})",
        {
            "count": count,
            "needed": needed,
            "percent": round(100 * count / needed, 1),
            "since": since.isoformat() if since else None,
            "counted": where,
        },
    )


def schedule_check(ctx: Context, name: str, now: datetime) -> Check | None:
    schedule = ctx.settings.retraining.schedule
    if schedule is None:
        return None
    anchor = schedule_anchor(ctx, name)
    if anchor is None:
        return Check("schedule", False, "schedule: the model has never been trained")
    due = next_due(schedule, anchor)
    state = {"schedule": schedule, "anchor": anchor.isoformat(), "next_due": due.isoformat()}
    if now >= due:
        return Check(
            "schedule", True, f"schedule ({schedule}): retraining due since {due:%c} UTC", state
        )
    return Check(
        "schedule", False, f"schedule ({schedule}): next retraining at {due:%c} UTC", state
    )


def _wanted_signals(ctx: Context) -> list[str]:
    switches = ctx.settings.retraining.triggers
    enabled = [
        ("drift", switches.drift),
        ("confidence", switches.confidence),
        ("estimated_performance", switches.estimated_performance),
        ("labelled_performance", switches.labelled_performance),
    ]
    return [key for key, on in enabled if on]


def monitoring_checks(ctx: Context, name: str, report: TriggerReport) -> None:
    """Run monitoring once (stored as a monitoring run) and read each enabled signal."""
    wanted = _wanted_signals(ctx)
    if not wanted:
        return
    try:
        from pgmlops.services.monitoring.run import run_monitor

        result = run_monitor(ctx, name, store_run=True)
    except PgmlopsError as exc:
        signals = ", ".join(_label(key) for key in wanted)
        report.checks.append(Check("monitoring", False, f"{signals}: not evaluated: {exc}"))
        return
    report.monitoring_run_id = getattr(result, "run_id", None)
    report.checks.extend(signal_checks(ctx, result, wanted))


def signal_checks(ctx: Context, result: Any, wanted: list[str]) -> list[Check]:
    """Each wanted monitoring signal of one monitoring result, as a trigger verdict."""
    policy = ctx.settings.retraining.triggers.drift_policy
    created = getattr(result, "created_at", None)
    state = {
        "monitoring_run_id": getattr(result, "run_id", None),
        "as_of": created.isoformat() if created else None,
    }
    reasons: list[str] = list(result.reasons)
    checks = []
    for key in wanted:
        if key == "drift":
            fired, detail = drift_trigger(result, policy)
            checks.append(Check(key, fired, detail, state))
            continue
        fired = _degraded(result, key)
        why = next((r for r in reasons if r.startswith(_PREFIX[key])), None)
        if fired:
            detail = why or f"{_label(key)}: degraded"
        else:
            detail = f"{_label(key)}: {_steady(result, key)}"
        checks.append(Check(key, fired, detail, state))
    return checks


_PREFIX = {
    "drift": "data drift",
    "confidence": "confidence decay",
    "estimated_performance": "estimated performance",
    "labelled_performance": "labelled performance",
}


def _label(key: str) -> str:
    return _PREFIX[key]


def drift_trigger(result: Any, policy: Literal["any", "harmful"]) -> tuple[bool, str]:
    """Does a monitoring result's dataset drift start a retrain under ``policy``? (fired, why)

    ``any``: dataset drift alone fires. ``harmful``: it fires only when the drift also costs
    more than ``monitoring.performance_drop``, significantly at ``alarm_alpha``: labelled or
    estimated (CBPE/DLE) performance degraded, or confidence degraded. Each of those already
    requires both the tolerance and the significance test against the labelled metric's null.
    The estimate's own, narrower null with no tolerance (used before issue 24) retrained on
    31% of harmless real-shift windows. Where no harm signal can be evaluated (no labels, no
    calibration, no confidences) ``harmful`` cannot judge harm, so the drift fires as under
    ``any`` and the reason says so.
    """
    if not result.dataset_drift:
        return False, f"{_PREFIX['drift']}: {_steady(result, 'drift')}"
    drift = f"{_PREFIX['drift']}: {result.drift.reason}"
    shown = ", ".join(result.drift.drifted_features[:8])
    if shown:
        drift += f" ({shown})"
    if policy == "any":
        return True, f"{drift} [drift_policy any]"
    harms, judged = [], []
    for key in ("labelled_performance", "estimated_performance", "confidence"):
        part = getattr(result, key, None) or {}
        if part.get("drop") is None or part.get("note"):
            continue
        judged.append(_PREFIX[key])
        if part.get("degraded"):
            harms.append(f"{_PREFIX[key]} {part['drop']:.1%} worse (limit {part['limit']:.0%})")
    if harms:
        return True, f"{drift}, and it is harmful: {'; '.join(harms)} [drift_policy harmful]"
    if not judged:
        return True, (
            f"{drift}; harm cannot be judged without estimated performance or confidence, so "
            "it counts as under drift_policy any [drift_policy harmful]"
        )
    return False, (
        f"{drift}, but not harmful: {' and '.join(judged)} within limits [drift_policy harmful]"
    )


def _degraded(result: Any, key: str) -> bool:
    if key == "drift":
        return bool(result.dataset_drift)
    part = getattr(result, key, None) or {}
    return bool(part.get("degraded"))


def _steady(result: Any, key: str) -> str:
    rows = (getattr(result, "window", None) or {}).get("rows")
    scope = f" over the last {rows:,} predictions" if rows else ""
    if key == "drift":
        return f"no dataset drift{scope}"
    part = getattr(result, key, None) or {}
    if part.get("note"):
        return str(part["note"])
    if key == "labelled_performance" and part.get("n_labels", 0) < part.get("min_labels", 0):
        return f"not judged: {part.get('n_labels', 0):,} labels, needs {part['min_labels']:,}"
    return f"within limits{scope}"


def _cheap_checks(ctx: Context, name: str, now: datetime, report: TriggerReport) -> None:
    """The triggers that only count rows or read the clock."""
    needed = ctx.settings.retraining.triggers.new_labels or ctx.settings.monitoring.new_rows_trigger
    if needed:
        report.checks.append(new_labels_check(ctx, name, needed))
    scheduled = schedule_check(ctx, name, now)
    if scheduled is not None:
        report.checks.append(scheduled)


def _none_configured(report: TriggerReport) -> TriggerReport:
    if not report.checks:
        report.checks.append(
            Check("none", False, "no retraining trigger is configured (retraining.triggers)")
        )
    return report


def evaluate_triggers(ctx: Context, name: str, *, now: datetime | None = None) -> TriggerReport:
    """Every configured trigger for `name`; nothing is changed except a stored monitoring run."""
    report = TriggerReport(name)
    _cheap_checks(ctx, name, now or datetime.now(UTC), report)
    monitoring_checks(ctx, name, report)
    return _none_configured(report)


def trigger_status(ctx: Context, name: str, *, now: datetime | None = None) -> TriggerReport:
    """Where each trigger stands now, changing nothing (monitoring from the newest stored run)."""
    # Running monitoring here would make a status request as slow as a check, and store a run.
    report = TriggerReport(name)
    _cheap_checks(ctx, name, now or datetime.now(UTC), report)
    wanted = _wanted_signals(ctx)
    if wanted:
        from pgmlops.services.monitoring.run import latest_run

        try:
            result = latest_run(ctx, name)
        except PgmlopsError as exc:
            result = None
            note = f"not readable: {exc}"
        else:
            note = "no monitoring run yet (`pgmlops monitor` or the worker's checks store one)"
        if result is None:
            signals = ", ".join(_label(key) for key in wanted)
            report.checks.append(Check("monitoring", False, f"{signals}: {note}"))
        else:
            report.monitoring_run_id = result.run_id
            report.checks.extend(signal_checks(ctx, result, wanted))
    return _none_configured(report)
