"""`pgmlops gc`: delete old versions nobody needs, the blobs only they used, and old log rows.

Never deleted: a version an alias points at, the version a rollback would return to, a
version that served predictions in the recent window, the candidate of a running retrain,
and the newest K versions without an alias. Artifacts are content-addressed and may be
shared, so a blob goes only when no remaining version (or live-row watermark) uses it.

The prediction log's life cycle lives here too. On PostgreSQL it is partitioned by period
on created_at: the partitions are created ahead (`ensure_log_partitions`, by the server at
start-up and by the worker), and `--predictions-older-than` drops every partition whose
whole range is older, at a cost independent of its rows (so rows up to one period older than
asked may stay). SQLite deletes the rows. Labels go by their own age: those given before the
oldest prediction that remains can only belong to dropped predictions (a label comes after
its prediction), so they are deleted; a late label of a dropped prediction stays until it
is that old itself. Monitoring and retraining join labels to predictions, so such a label
is never read meanwhile.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pgmlops.domain.registry.records import PRODUCTION
from pgmlops.domain.serving.partitions import wanted, wholly_before
from pgmlops.errors import ConfigError, PgmlopsError
from pgmlops.services.context import Context
from pgmlops.services.promotion import production_stack
from pgmlops.store.monitoring.log_summaries import forget_before
from pgmlops.store.prediction_log.partitions import PartitionStore
from pgmlops.store.registry.retention import RetentionStore, VersionFiles
from pgmlops.store.retraining import RetrainingRunStore


def _protected(
    ctx: Context, name: str, versions: list[VersionFiles], keep: int, recent_days: float
) -> dict[int, list[str]]:
    """Every version that must stay, with the reasons."""
    store = RetentionStore(ctx.db)
    why: dict[int, list[str]] = {}

    def add(version: int, reason: str) -> None:
        why.setdefault(version, []).append(reason)

    unaliased = 0
    for v in versions:  # newest first
        if v.aliases:
            add(v.version, "alias " + ", ".join(v.aliases))
        elif unaliased < keep:
            unaliased += 1
            add(v.version, f"one of the newest {keep} without an alias")
    stack = production_stack(ctx.registry.alias_history(name, PRODUCTION))
    if len(stack) >= 2:
        add(stack[-2], "rollback target")
    since = datetime.now(UTC) - timedelta(days=recent_days)
    for version in store.served_since(name, since):
        add(version, f"served predictions in the last {recent_days:g} days")
    for run in RetrainingRunStore(ctx.db).running(name):
        if run.candidate_version is not None:
            add(run.candidate_version, f"candidate of running retrain {run.id}")
    return why


def collect_garbage(
    ctx: Context,
    model_name: str | None = None,
    *,
    keep: int | None = None,
    recent_days: float | None = None,
    predictions_older_than: timedelta | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Delete unprotected versions of one model (or all), their now-unused blobs, old log rows.

    Log rows go only with `predictions_older_than` or `retention.predictions_days` set.
    """
    cfg = ctx.settings.retraining.retention
    if predictions_older_than is None and cfg.predictions_days is not None:
        predictions_older_than = timedelta(days=cfg.predictions_days)
    keep = cfg.keep if keep is None else keep
    recent_days = cfg.recent_days if recent_days is None else recent_days
    if keep < 0:
        raise ConfigError(f"keep must be 0 or more, got {keep}", params=("keep",))
    if recent_days < 0:
        raise ConfigError(f"the recent window must be 0 days or more, got {recent_days}")
    store = RetentionStore(ctx.db)
    names = [model_name] if model_name else ctx.registry.model_names()
    report: dict[str, Any] = {"dry_run": dry_run, "keep": keep, "recent_days": recent_days}
    models: list[dict[str, Any]] = []
    deleted: list[tuple[str, VersionFiles]] = []
    for name in names:
        versions = store.versions(name)
        why = _protected(ctx, name, versions, keep, recent_days)
        doomed = [v for v in versions if v.version not in why]
        if not dry_run:
            doomed = store.delete_versions(name, [v.version for v in doomed])
        deleted += [(name, v) for v in doomed]
        models.append(
            {
                "model_name": name,
                "kept": [{"version": v, "reasons": r} for v, r in sorted(why.items())],
                "deleted": sorted(v.version for v in doomed),
            }
        )
    report["models"] = models
    report.update(_blobs(ctx, store, deleted, dry_run))
    if predictions_older_than is not None:
        report["predictions"] = drop_old_predictions(ctx, predictions_older_than, dry_run=dry_run)
    return report


def parse_age(text: str) -> timedelta:
    """'90d', '12w' or '36h' as a timedelta; ConfigError naming the option otherwise."""
    from pgmlops.services.monitoring.run import parse_duration

    try:
        return parse_duration(text)
    except ConfigError:
        raise ConfigError(
            f"predictions_older_than {text!r} is not an age: use a positive number and a "
            "unit, e.g. 90d, 12w or 36h (at most 36500d)",
            params=("predictions_older_than",),
        ) from None


def ensure_log_partitions(ctx: Context, now: datetime | None = None) -> list[str]:
    """Create the current and the next `log_partitions_ahead` periods' partitions if missing.

    Returns the partitions created (none on SQLite, which has no partitions).
    """
    serving = ctx.settings.serving
    needed = wanted(
        now or datetime.now(UTC), serving.log_partition_period, serving.log_partitions_ahead
    )
    return [r.name for r in PartitionStore(ctx.db).cover(needed)]


def drop_old_predictions(
    ctx: Context, older_than: timedelta, *, dry_run: bool = False, now: datetime | None = None
) -> dict[str, Any]:
    """Drop the log's partitions (SQLite: rows) older than `older_than`, and their labels."""
    if older_than <= timedelta(0):
        raise ConfigError(
            "predictions_older_than must be longer than zero", params=("predictions_older_than",)
        )
    cutoff = (now or datetime.now(UTC)) - older_than
    store = PartitionStore(ctx.db)
    report: dict[str, Any] = {
        "older_than_days": older_than.total_seconds() / 86_400,
        "cutoff": cutoff.isoformat(),
    }
    if not store.partitioned:
        report["rows_deleted"] = None if dry_run else store.delete_predictions_before(cutoff)
        report["labels_deleted"] = None if dry_run else store.delete_feedback_before(cutoff)
        return report
    parts = store.partitions()
    doomed = set(wholly_before([p.range for p in parts], cutoff))
    old = [p for p in parts if p.range in doomed]
    kept = [p for p in parts if p.range not in doomed]
    names = [p.name for p in old] if dry_run else store.drop([p.name for p in old])
    # Every prediction before the oldest kept partition is gone, so are labels given before it.
    bound = min([cutoff] + [p.range.lo for p in kept[:1]])
    report.update(
        partitions_dropped=[
            {
                "name": p.name,
                "from": p.range.lo.isoformat(),
                "to": p.range.hi.isoformat(),
                "approx_rows": p.approx_rows,
            }
            for p in old
            if p.name in names
        ],
        partitions_kept=len(kept),
        oldest_kept=kept[0].range.lo.isoformat() if kept else None,
        labels_deleted=None if dry_run else store.delete_feedback_before(bound),
        # Summaries of hours whose rows are gone would only be found stale by monitoring.
        hour_summaries_deleted=None if dry_run else forget_before(ctx.db, bound),
    )
    return report


def _blobs(
    ctx: Context, store: RetentionStore, deleted: list[tuple[str, VersionFiles]], dry_run: bool
) -> dict[str, Any]:
    """Delete (or, dry, count) the blobs no remaining version or watermark uses."""
    exclude = {(name, v.version) for name, v in deleted} if dry_run else set()
    referenced = store.referenced_digests(exclude)
    orphans = {
        f.sha256: f for _, v in deleted for f in v.files.values() if f.sha256 not in referenced
    }
    errors: list[str] = []
    freed = 0
    for blob in orphans.values():
        try:
            if not dry_run:
                ctx.artifacts.delete(blob)
            freed += blob.size
        except PgmlopsError as exc:
            errors.append(str(exc))
    return {
        "blobs_deleted": len(orphans) - len(errors),
        "bytes_freed": freed,
        "blob_errors": errors,
    }
