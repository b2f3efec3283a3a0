"""`pgmlops gc`: delete old versions nobody needs, and the blobs only they used.

Never deleted: a version an alias points at, the version a rollback would return to, a
version that served predictions in the recent window, the candidate of a running retrain,
and the newest K versions without an alias. Artifacts are content-addressed and may be
shared, so a blob goes only when no remaining version (or live-row watermark) uses it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pgmlops.domain.records import PRODUCTION
from pgmlops.errors import ConfigError, PgmlopsError
from pgmlops.services.context import Context
from pgmlops.services.promotion import production_stack
from pgmlops.store.retention import RetentionStore, VersionFiles
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
    dry_run: bool = False,
) -> dict[str, Any]:
    """Delete unprotected versions of one model (or all) and their now-unused blobs."""
    cfg = ctx.settings.retraining.retention
    keep = cfg.keep if keep is None else keep
    recent_days = cfg.recent_days if recent_days is None else recent_days
    if keep < 0:
        raise ConfigError(f"--keep must be 0 or more, got {keep}")
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
