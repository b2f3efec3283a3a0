"""`pgmlops worker`: run queued jobs and the configured schedule until told to stop.

Each tick claims queued jobs ("retrain", "monitor") one at a time, then, for every watched
model whose check is due, runs `retrain --if-needed` (the triggers decide) and, when
`monitoring.schedule_seconds` is set, a stored monitoring run. It also keeps the prediction
log's partitions created ahead (hourly) and runs retention (`gc`: model backups beyond
`retention.keep`, log partitions older than `retention.predictions_days`) every
`retention.schedule_seconds`, so nobody has to run `pgmlops gc`. Every
`rollback.check_seconds` it also judges each model's promotion under watch and may restore
the previous production version (services/rollback/watch.py). `stop()` (SIGTERM) lets the
job in hand finish and then exits; a worker killed outright leaves its run and job to be
marked failed by the next worker or retrain that starts, or by a running worker within a
minute. Each worker holds a liveness lock while it runs (PostgreSQL: a session advisory lock,
freed the moment its connection dies), so a worker on another host can tell it is gone.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pgmlops.domain.registry.records import PRODUCTION
from pgmlops.errors import ConflictError, PgmlopsError
from pgmlops.services.context import Context
from pgmlops.services.monitoring.aggregates.hours import summarise_closed_hours
from pgmlops.services.retention import collect_garbage, ensure_log_partitions
from pgmlops.services.retraining.runs import recover_stale_runs, retrain
from pgmlops.services.retraining.triggers import next_due, schedule_anchor
from pgmlops.store.jobs import Job, JobStore, worker_identity
from pgmlops.store.locks import holder_gone, named_lock

log = logging.getLogger(__name__)
Say = Callable[[str], None]
KINDS = ("retrain", "monitor")
# Partitions are made `log_partitions_ahead` (>= 1) periods ahead, so an hourly look is
# early enough even for daily partitions, and costs one catalog query.
PARTITION_CHECK = timedelta(hours=1)
# How often a running worker looks for jobs a dead worker (on any host) left `running`.
RECOVER_EVERY = timedelta(minutes=1)
# SQLite has no session locks: a worker's liveness lease, renewed every third of it.
LIVENESS_LEASE = 60.0
# One worker at a time runs the scheduled gc.
RETENTION_LOCK = "retention"
# How often the log's closed hours are summarised (hours close CLOSED_AFTER past the hour).
SUMMARY_EVERY = timedelta(minutes=5)
SUMMARY_LOCK = "log-summaries"


def alive_lock(identity: str) -> str:
    """The lock a worker holds while it lives (PostgreSQL: dies with its connection)."""
    return f"worker-alive:{identity}"


@dataclass
class WorkerStats:
    """What one worker process did."""

    jobs_succeeded: int = 0
    jobs_failed: int = 0
    trigger_checks: int = 0
    monitor_runs: int = 0
    retention_runs: int = 0
    partitions_created: int = 0
    hours_summarised: int = 0
    rollback_checks: int = 0
    rollbacks: int = 0
    recovered_runs: list[int] = field(default_factory=list)
    recovered_jobs: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Worker:
    """One worker loop; several may run against the same database."""

    def __init__(self, ctx: Context, *, say: Say | None = None) -> None:
        self.ctx = ctx
        self.say = say or (lambda msg: log.info("%s", msg))
        self.identity = worker_identity()
        self.jobs = JobStore(ctx.db)
        self.stats = WorkerStats()
        self._stop = threading.Event()
        self._next_check: dict[str, datetime] = {}
        self._next_monitor: dict[str, datetime] = {}
        # Live promotion (opt-in): when each model is next looked at, and the
        # (production, challenger) pairs per model the offline gates refused.
        self._next_live: dict[str, datetime] = {}
        self._live_refused: dict[str, set[tuple[int, int]]] = {}
        self._next_partitions: datetime | None = None
        self._next_gc: datetime | None = None
        self._next_summary: datetime | None = None
        self._next_recover: datetime | None = None
        self._next_watch: datetime | None = None

    # -- control ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Finish the job in hand, then leave the loop."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, *, once: bool = False) -> WorkerStats:
        """Loop until stopped; with `once`, drain the queue and run due checks a single time."""
        cfg = self.ctx.settings.retraining
        # Held while this worker lives, so a worker on another host can tell it is gone.
        with named_lock(self.ctx.db, alive_lock(self.identity), lease_seconds=LIVENESS_LEASE):
            self.recover()
            self._next_recover = datetime.now(UTC) + RECOVER_EVERY
            while not self.stopping:
                self.tick()
                if once:
                    break
                self._stop.wait(cfg.poll_seconds)
        return self.stats

    def recover(self) -> None:
        """Mark runs and jobs left behind by dead processes (on any host) as failed."""
        runs = recover_stale_runs(self.ctx)
        jobs = self.jobs.fail_abandoned(self._worker_gone)
        self.stats.recovered_runs += runs
        self.stats.recovered_jobs += jobs
        for run_id in runs:
            self.say(f"run {run_id} was left running by a dead process: marked failed")
        for job_id in jobs:
            self.say(f"job {job_id} was left running by a dead worker: marked failed")

    def _worker_gone(self, worker: str) -> bool:
        """A dead process on this host, or a worker anywhere whose liveness lock is free."""
        if worker == self.identity:
            return False
        if holder_gone(worker):
            return True
        try:
            with named_lock(self.ctx.db, alive_lock(worker), lease_seconds=1.0):
                return True
        except ConflictError:
            return False

    def tick(self, now: datetime | None = None) -> None:
        while not self.stopping:
            job = self.jobs.claim(KINDS, self.identity)
            if job is None:
                break
            self.run_job(job)
        if not self.stopping:
            self.maintain(now or datetime.now(UTC))
        if not self.stopping:
            self.scheduled(now or datetime.now(UTC))
        if not self.stopping:
            self.watch_promotions(now or datetime.now(UTC))

    # -- jobs ------------------------------------------------------------------------------

    def run_job(self, job: Job) -> None:
        self.say(f"job {job.id}: {job.kind} {job.model_name}")
        try:
            result = self._dispatch(job)
        except PgmlopsError as exc:
            self.jobs.fail(job.id, exc.message)
            self.stats.jobs_failed += 1
            self.say(f"job {job.id} failed: {exc.message}")
            return
        except Exception as exc:
            log.exception("job %s crashed", job.id)
            self.jobs.fail(job.id, f"{type(exc).__name__}: {exc}")
            self.stats.jobs_failed += 1
            return
        self.jobs.finish(job.id, result)
        self.stats.jobs_succeeded += 1
        self.say(f"job {job.id} done: {result.get('message', 'ok')}")

    def _dispatch(self, job: Job) -> dict[str, Any]:
        if job.kind == "retrain":
            outcome = retrain(
                self.ctx,
                job.model_name,
                mode=job.payload.get("mode", "manual"),
                allow_feedback_only=bool(job.payload.get("allow_feedback_only", False)),
                actor=str(job.payload.get("actor") or f"worker {self.identity}"),
            )
            run = outcome.run
            return {
                "status": outcome.status,
                "message": outcome.message,
                "run_id": run.id if run else None,
                "candidate_version": run.candidate_version if run else None,
            }
        if job.kind == "monitor":
            return self._monitor(job.model_name, job.payload.get("last"))
        raise PgmlopsError(f"unknown job kind {job.kind!r} (expected one of {', '.join(KINDS)})")

    def _monitor(self, name: str, last: int | None = None) -> dict[str, Any]:
        from pgmlops.services.monitoring.run import run_monitor

        result = run_monitor(self.ctx, name, last=last, store_run=True)
        self.stats.monitor_runs += 1
        return {
            "run_id": result.run_id,
            "dataset_drift": result.dataset_drift,
            "reasons": list(result.reasons),
            "message": "; ".join(result.reasons) or "no degradation",
        }

    # -- upkeep ----------------------------------------------------------------------------

    def maintain(self, now: datetime) -> None:
        """Recovery, partitions ahead, retention, each when due; a failure is said, not fatal."""
        if self._next_recover is not None and now >= self._next_recover:
            self._next_recover = now + RECOVER_EVERY
            try:
                self.recover()
            except PgmlopsError as exc:
                self.say(f"recovery of abandoned jobs skipped: {exc}")
        if self._next_partitions is None or now >= self._next_partitions:
            try:
                created = ensure_log_partitions(self.ctx, now)
            except PgmlopsError as exc:
                self.say(f"prediction log partitions not created: {exc}")
            else:
                self.stats.partitions_created += len(created)
                if created:
                    self.say(f"prediction log partitions created: {', '.join(created)}")
            self._next_partitions = now + PARTITION_CHECK
        if self._next_summary is None or now >= self._next_summary:
            self._next_summary = now + SUMMARY_EVERY
            self._summarise()
        every = self.ctx.settings.retraining.retention.schedule_seconds
        if every is not None and (self._next_gc is None or now >= self._next_gc):
            self._next_gc = now + timedelta(seconds=every)
            self._retention()

    def _summarise(self) -> None:
        if not self.ctx.db.is_postgres:
            return  # SQLite monitors from rows
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(named_lock(self.ctx.db, SUMMARY_LOCK, lease_seconds=600.0))
            except ConflictError:
                return  # another worker is summarising the same hours
            for name in self.watched_models():
                try:
                    stored = summarise_closed_hours(self.ctx, name)
                except PgmlopsError as exc:
                    self.say(f"{name}: prediction log hours not summarised: {exc}")
                    continue
                self.stats.hours_summarised += stored

    def _retention(self) -> None:
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(named_lock(self.ctx.db, RETENTION_LOCK, lease_seconds=600.0))
            except ConflictError:
                # Several workers share one schedule: whoever holds the lock does it for all.
                self.say("retention: another worker is running it")
                return
            try:
                report = collect_garbage(self.ctx)
            except PgmlopsError as exc:
                self.say(f"retention skipped: {exc}")
                return
        self.stats.retention_runs += 1
        versions = sum(len(m["deleted"]) for m in report["models"])
        log_part = report.get("predictions") or {}
        dropped = [p["name"] for p in log_part.get("partitions_dropped", [])]
        rows = log_part.get("rows_deleted")
        self.say(
            f"retention: deleted {versions} version(s), {report['blobs_deleted']} blob(s)"
            + (f", log partitions {', '.join(dropped)}" if dropped else "")
            + (f", {rows} log row(s)" if rows else "")
        )

    # -- schedule --------------------------------------------------------------------------

    def watched_models(self) -> list[str]:
        cfg = self.ctx.settings.retraining
        if cfg.models is not None:
            return list(cfg.models)
        names = self.ctx.registry.model_names()
        return [n for n in names if self.ctx.registry.alias_version(n, PRODUCTION) is not None]

    def scheduled(self, now: datetime) -> None:
        cfg = self.ctx.settings.retraining
        monitor_every = self.ctx.settings.monitoring.schedule_seconds
        for name in self.watched_models():
            if self.stopping:
                return
            if now >= self._next_check.get(name, now):
                self._check(name)
                self._next_check[name] = self._after_check(name, now, cfg.check_seconds)
            if monitor_every and now >= self._next_monitor.get(name, now):
                try:
                    self._monitor(name)
                except PgmlopsError as exc:
                    self.say(f"{name}: scheduled monitoring skipped: {exc}")
                self._next_monitor[name] = now + timedelta(seconds=monitor_every)
        self.live_checks(now)

    # -- live promotion (opt-in) -------------------------------------------------------------

    def live_checks(self, now: datetime) -> None:
        """`live.promotion`: every `live.check_seconds`, promote a challenger that won live."""
        live = self.ctx.settings.live
        if not live.promotion:
            return
        from pgmlops.services.live.promotion import check_live_promotion

        for name in self.watched_models():
            if self.stopping or now < self._next_live.get(name, now):
                continue
            self._next_live[name] = now + timedelta(seconds=live.check_seconds)
            refused = self._live_refused.setdefault(name, set())
            try:
                decision = check_live_promotion(
                    self.ctx, name, actor=f"worker {self.identity}", refused_before=refused
                )
            except PgmlopsError as exc:
                self.say(f"{name}: live promotion check failed: {exc}")
                continue
            if decision.status == "refused" and decision.challenger_version is not None:
                refused.add((decision.production_version, decision.challenger_version))  # type: ignore[arg-type]
            if decision.status != "no_challenger":
                self.say(decision.message)

    def _after_check(self, name: str, now: datetime, every: float) -> datetime:
        nxt = now + timedelta(seconds=every)
        schedule = self.ctx.settings.retraining.schedule
        anchor = schedule_anchor(self.ctx, name) if schedule is not None else None
        if schedule is not None and anchor is not None:
            soonest = now + timedelta(seconds=self.ctx.settings.retraining.poll_seconds)
            nxt = min(nxt, max(next_due(schedule, anchor), soonest))
        return nxt

    def _check(self, name: str) -> None:
        self.stats.trigger_checks += 1
        try:
            outcome = retrain(self.ctx, name, mode="if-needed", actor=f"worker {self.identity}")
        except PgmlopsError as exc:
            self.say(f"{name}: scheduled retrain check failed: {exc}")
            return
        self.say(f"{name}: {outcome.message}")

    # -- automatic rollback ----------------------------------------------------------------

    def watch_promotions(self, now: datetime) -> None:
        """Every `rollback.check_seconds`: judge each model's promotion under watch."""
        from pgmlops.services.rollback.watch import check_rollback

        cfg = self.ctx.settings.rollback
        if not cfg.auto_rollback or (self._next_watch is not None and now < self._next_watch):
            return
        self._next_watch = now + timedelta(seconds=cfg.check_seconds)
        for name in self.ctx.registry.model_names():
            if self.stopping:
                return
            try:
                result = check_rollback(self.ctx, name, now)
            except PgmlopsError as exc:
                self.say(f"{name}: rollback watch skipped: {exc}")
                continue
            self.stats.rollback_checks += 1
            if result.status in ("rolled_back", "refused"):
                self.stats.rollbacks += result.status == "rolled_back"
                self.say(f"{name}: {result.message}")
