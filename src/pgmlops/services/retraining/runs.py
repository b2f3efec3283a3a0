"""Retraining runs: triggers decide (or a person does), one run per model at a time.

A run takes the model's lock, records itself in `retraining_runs`, assembles the data
(recorded source + labelled feedback + live rows, validated), trains a candidate with the
production version's spec and lets the promotion gates decide. Production only changes in
promote()'s single transaction at the very end, so a run killed at any point before that
leaves it untouched; the next start finds the orphaned 'running' row (its lock is free) and
marks it failed.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Literal

from pgmlops.config import TrainingConfig
from pgmlops.domain.registry.card import onnx_rejection
from pgmlops.domain.registry.records import PRODUCTION, ModelVersion
from pgmlops.errors import ConfigError, ConflictError, PgmlopsError, PromotionRefused
from pgmlops.services.context import Context
from pgmlops.services.promotion import promote
from pgmlops.services.retraining.data import TrainingData, as_dataset, assemble, nothing_new
from pgmlops.services.retraining.triggers import TriggerReport, evaluate_triggers, trigger_status
from pgmlops.services.training import train_model
from pgmlops.store.jobs import JobStore
from pgmlops.store.locks import named_lock
from pgmlops.store.retraining import (
    FAILED,
    SKIPPED,
    SUCCEEDED,
    RetrainingRun,
    RetrainingRunStore,
)

log = logging.getLogger(__name__)
Mode = Literal["manual", "forced", "if-needed"]
Progress = Callable[[str], None]
STALE = "process {pid} on {host} stopped before the run finished (killed or crashed); " + (
    "production was not changed"
)


@dataclass(frozen=True)
class RetrainOutcome:
    """What a retrain request did: skipped (and why), or the run it recorded."""

    model_name: str
    mode: Mode
    status: str
    message: str
    triggers: TriggerReport | None = None
    run: RetrainingRun | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "mode": self.mode,
            "status": self.status,
            "message": self.message,
            "triggers": self.triggers.to_dict() if self.triggers else None,
            "run": self.run.to_dict() if self.run else None,
        }


def lock_name(model_name: str) -> str:
    return f"retrain:{model_name}"


def mode_of(*, force: bool, if_needed: bool) -> Mode:
    if force and if_needed:
        raise ConfigError(
            "force and if_needed contradict each other: choose one", params=("force", "if_needed")
        )
    return "forced" if force else "if-needed" if if_needed else "manual"


def base_version(ctx: Context, name: str) -> ModelVersion:
    """The version whose spec and data a retrain starts from: production, else the newest."""
    current = ctx.registry.alias_version(name, PRODUCTION)
    if current is not None:
        return ctx.registry.get_version(name, current)
    return ctx.registry.latest_version(name)


def recover_stale_runs(ctx: Context, model_name: str | None = None) -> list[int]:
    """Mark 'running' runs whose process is gone as failed; a live holder is left alone."""
    runs = RetrainingRunStore(ctx.db)
    names = sorted({r.model_name for r in runs.running(model_name)})
    failed: list[int] = []
    for name in names:
        try:
            with named_lock(ctx.db, lock_name(name), lease_seconds=30):
                failed += runs.fail_stale(name, STALE)
        except ConflictError:
            continue
    return failed


def _already_running(ctx: Context, name: str, exc: ConflictError) -> ConflictError:
    running = RetrainingRunStore(ctx.db).running(name)
    if running:
        r = running[-1]
        host = r.triggers.get("host", "?")
        who = f"run {r.id}, pid {r.pid} on {host}, started {r.started_at:%Y-%m-%d %H:%M:%S} UTC"
    else:
        who = str(exc)
    return ConflictError(
        f"retraining of {name!r} is already running ({who}); this request changed nothing"
    )


def training_spec(version: ModelVersion) -> TrainingConfig:
    """The TrainingConfig the version was trained with, fixed to its task and columns."""
    cfg = TrainingConfig.model_validate(version.card.training)
    # The frame holds exactly the version's feature columns, so nothing is left to drop.
    return cfg.model_copy(update={"task": version.card.task, "drop": []})


def retrain_spec(ctx: Context, version: ModelVersion) -> TrainingConfig:
    """The version's spec, trained where this process's settings say.

    `training.engine`, `dask_address` and `dask_workers` are where this process runs, not
    what the version was trained with; `dask_index_column` is the settings' when set, else
    the version's (it names a column of its table).
    """
    here = ctx.settings.training
    cfg = training_spec(version)
    return cfg.model_copy(
        update={
            "engine": here.engine,
            "dask_address": here.dask_address,
            "dask_workers": here.dask_workers,
            "dask_index_column": here.dask_index_column or cfg.dask_index_column,
        }
    )


def retrain(
    ctx: Context,
    model_name: str | None = None,
    *,
    mode: Mode = "manual",
    allow_feedback_only: bool | None = None,
    actor: str,
    progress: Progress | None = None,
) -> RetrainOutcome:
    """Retrain `model_name` now (manual/forced) or only if a trigger fires (if-needed)."""
    name = model_name or ctx.settings.model_name
    step = progress or (lambda _msg: None)
    allow = allow_feedback_only
    if allow is None:
        allow = ctx.settings.retraining.allow_feedback_only
    base = base_version(ctx, name)
    report: TriggerReport | None = None
    if mode == "if-needed":
        step("evaluating retraining triggers")
        report = evaluate_triggers(ctx, name)
        if not report.fired:
            return RetrainOutcome(
                name,
                mode,
                SKIPPED,
                "no trigger fired: " + "; ".join(c.detail for c in report.checks),
                report,
            )
    reasons = report.reasons if report else [f"{mode} retrain requested by {actor}"]
    triggers = {
        "mode": mode,
        "reasons": reasons,
        "checks": [c.to_dict() for c in report.checks] if report else [],
        "actor": actor,
        "host": socket.gethostname(),
        "base_version": base.version,
    }
    locks = ExitStack()
    try:
        held = locks.enter_context(
            named_lock(
                ctx.db, lock_name(name), lease_seconds=ctx.settings.retraining.lock_lease_seconds
            )
        )
    except ConflictError as exc:
        raise _already_running(ctx, name, exc) from None
    with locks:
        runs = RetrainingRunStore(ctx.db)
        # We hold the lock, so any run still marked 'running' belongs to a dead process.
        runs.fail_stale(name, STALE)
        base = base_version(ctx, name)  # production may have moved while we waited
        run = runs.start(name, {**triggers, "base_version": base.version}, os.getpid())
        step(f"retraining run {run.id} for {name} (base v{base.version}): " + "; ".join(reasons))
        finished = _execute(ctx, run, base, mode, allow, actor, step, held.check)
    message = _message(finished)
    return RetrainOutcome(name, mode, finished.status, message, report, finished)


def _execute(
    ctx: Context,
    run: RetrainingRun,
    base: ModelVersion,
    mode: Mode,
    allow_feedback_only: bool,
    actor: str,
    step: Progress,
    still_locked: Callable[[], None],
) -> RetrainingRun:
    runs = RetrainingRunStore(ctx.db)
    started = time.perf_counter()
    data: TrainingData | None = None
    sizes: dict[str, Any] = {}
    warned: list[str] = []
    try:
        cfg = retrain_spec(ctx, base)
        with ExitStack() as cluster:
            rows = None
            if cfg.engine == "dask":
                from pgmlops.services.training.dask.cluster import require_dask

                require_dask()
                from pgmlops.services.retraining.dask import dask_rows

                cfg, rows, fallback = dask_rows(ctx, base, cfg, cluster, step)
                if fallback:
                    warned.append(fallback)
                    log.warning(fallback)
            data = assemble(
                ctx, base, allow_feedback_only=allow_feedback_only, progress=step, rows=rows
            )
            sizes = {**data.summary(), **({"warnings": warned} if warned else {})}
            runs.update(run.id, data=sizes)
            step(_sizes_line(sizes))
            if mode != "forced" and nothing_new(data, base):
                return runs.finish(
                    run.id,
                    SKIPPED,
                    error=f"nothing new to train on since v{base.version} (same rows); "
                    "force it to retrain anyway",
                    data=sizes,
                )
            lineage = {
                "run_id": run.id,
                "base_version": base.version,
                "source_sha256": data.source_sha256,
                "parts": {k: v.used for k, v in data.parts.items()},
            }
            result = _train(ctx, data, base, cfg, lineage, rows, actor, step)
        candidate = result.version.version
        sizes = {**sizes, "training_seconds": round(result.seconds, 3)}
        rejected = onnx_rejection(result.version.card.onnx)
        if rejected is not None:
            note = f"v{candidate}'s ONNX copy was rejected, it would serve on the pipeline: "
            sizes = {**sizes, "warnings": [*warned, note + rejected]}
        runs.update(run.id, candidate_version=candidate, data=sizes)
        still_locked()
        step(f"candidate v{candidate} registered; the promotion gates decide")
        why = f"retraining run {run.id}: " + "; ".join(run.triggers.get("reasons", []))
        decision = _decide(ctx, base.model_name, candidate, actor, why)
        if data.live is not None and data.live_consumed is not None:
            from pgmlops.services.retraining.live_source import LiveSource

            live_cfg = ctx.settings.retraining.live_source
            assert live_cfg is not None
            try:
                LiveSource(ctx, base.model_name, live_cfg).advance(data.live, data.live_consumed)
            except PgmlopsError as exc:
                warned = [*sizes.get("warnings", []), f"live watermark not advanced: {exc}"]
                sizes = {**sizes, "warnings": warned}
        sizes = {**sizes, "seconds": round(time.perf_counter() - started, 3)}
        return runs.finish(run.id, SUCCEEDED, data=sizes, decision=decision)
    except BaseException as exc:
        sizes = {**sizes, "seconds": round(time.perf_counter() - started, 3)}
        try:
            runs.finish(run.id, FAILED, error=_one_line(exc), data=sizes)
        except PgmlopsError as store_exc:
            # The original error matters more; the next start marks the run failed anyway.
            log.warning("could not record run %s as failed: %s", run.id, store_exc)
        raise


def _train(
    ctx: Context,
    data: TrainingData,
    base: ModelVersion,
    cfg: TrainingConfig,
    lineage: dict[str, Any],
    rows: Any,
    actor: str,
    step: Progress,
) -> Any:
    """The candidate, trained where `rows` were read: on the cluster, or in this process."""
    if rows is not None:
        from pgmlops.services.retraining.dask import retrain_on_dask

        return retrain_on_dask(
            ctx, rows.client, data, base, cfg, lineage, actor=actor, step=step,
            started=time.perf_counter(),
        )  # fmt: skip
    return train_model(
        ctx,
        as_dataset(data, lineage),
        base.card.target,
        cfg,
        model_name=base.model_name,
        actor=actor,
        progress=step,
        left_out_before=base.card.feature_schema,
    )


def _decide(ctx: Context, name: str, candidate: int, actor: str, why: str) -> dict[str, Any]:
    champion = ctx.registry.alias_version(name, PRODUCTION)
    try:
        # The reason lands in the production history: who moved it is the retraining run.
        result = promote(ctx, name, candidate, actor=actor, reason=why)
    except PromotionRefused as exc:
        gates = exc.decision.to_dict() if exc.decision is not None else None
        return {
            "decision": "refused",
            "promoted": False,
            "candidate_version": candidate,
            "champion_version": champion,
            "summary": str(exc),
            "gates": gates,
        }
    return {
        "decision": "approved",
        "promoted": True,
        "candidate_version": candidate,
        "champion_version": result.champion,
        "summary": result.decision.summary() if result.decision else "approved",
        "gates": result.decision.to_dict() if result.decision else None,
    }


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        return "interrupted before the run finished; production was not changed"
    if isinstance(exc, PgmlopsError):
        return exc.message
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"


def _sizes_line(sizes: dict[str, Any]) -> str:
    parts = ", ".join(
        f"{k} {v['used']:,}" + (f" (+{v['bad']:,} bad)" if v["bad"] else "")
        for k, v in sizes["parts"].items()
    )
    return f"training rows: {sizes['training_rows']:,} ({parts})"


def _message(run: RetrainingRun) -> str:
    if run.status == SKIPPED:
        return run.error or "skipped"
    decision = run.decision or {}
    verdict = "promoted to production" if decision.get("promoted") else "not promoted"
    return f"run {run.id}: candidate v{run.candidate_version} {verdict} — {decision.get('summary')}"


def enqueue_retrain(
    ctx: Context,
    model_name: str | None,
    *,
    force: bool = False,
    if_needed: bool = False,
    allow_feedback_only: bool = False,
    actor: str,
) -> tuple[int, bool]:
    """Queue a retrain job for a worker (the API never trains). Returns (job id, created)."""
    name = model_name or ctx.settings.model_name
    mode = mode_of(force=force, if_needed=if_needed)
    ctx.registry.latest_recorded(name)  # a job for an unknown model would only fail later
    payload = {"mode": mode, "allow_feedback_only": allow_feedback_only, "actor": actor}
    job, created = JobStore(ctx.db).enqueue("retrain", name, payload)
    return job.id, created


def retrain_status(ctx: Context, model_name: str | None = None, limit: int = 10) -> dict[str, Any]:
    """Where each trigger stands, latest runs (orphans marked failed first), unfinished jobs."""
    if limit < 1:
        raise ConfigError(f"limit must be at least 1, got {limit}")
    recover_stale_runs(ctx, model_name)
    runs = RetrainingRunStore(ctx.db).recent(model_name, limit)
    jobs = JobStore(ctx.db).recent(
        model_name=model_name, statuses=("queued", "running"), limit=limit
    )
    triggers = trigger_status(ctx, model_name).to_dict() if model_name else None
    return {
        "model_name": model_name,
        "triggers": triggers,
        "runs": [r.to_dict() for r in runs],
        "jobs": [j.to_dict() for j in jobs],
    }
