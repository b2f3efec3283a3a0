"""Use cases shared by the CLI and the HTTP API; each returns JSON-ready data."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError as PydanticValidationError

from pgmlops.config import TrainingConfig, describe_validation_error
from pgmlops.domain.live.modes import CHALLENGER, Deployment
from pgmlops.domain.redact import redact_secrets
from pgmlops.domain.registry.card import engine_label, onnx_rejection
from pgmlops.domain.registry.records import (
    PRODUCTION,
    AliasEvent,
    AliasState,
    ModelOverview,
    ModelVersion,
)
from pgmlops.errors import ConfigError
from pgmlops.services.context import Context

# Training, promotion and the rollback watch (pandas, scikit-learn, SciPy) are imported by the
# functions that use them: each CLI process imports this module, and a registry command (models,
# rollback) should not pay seconds of imports for the ML stack it never runs.
if TYPE_CHECKING:
    import pandas as pd

    from pgmlops.services.promotion import PromotionResult
    from pgmlops.services.training import Progress, TrainResult

KEY_METRICS = {
    "binary": ["roc_auc", "pr_auc", "recall", "precision", "f1"],
    "multiclass": ["f1_macro", "accuracy", "roc_auc_ovr"],
    "regression": ["rmse", "mae", "r2"],
}


def training_config(base: TrainingConfig, overrides: dict[str, Any]) -> TrainingConfig:
    """Settings' training section with CLI flags on top, validated as one."""
    merged = {**base.model_dump(), **overrides}
    try:
        return TrainingConfig.model_validate(merged)
    except PydanticValidationError as exc:
        raise ConfigError(describe_validation_error(exc, "training options")) from exc


def version_summary(v: ModelVersion) -> dict[str, Any]:
    card = v.card
    return {
        "model_name": v.model_name,
        "version": v.version,
        "aliases": list(v.aliases),
        "task": card.task,
        "estimator": card.estimator,
        "metrics": {k: card.metrics.get(k) for k in KEY_METRICS[card.task] if k in card.metrics},
        "threshold": card.threshold,
        "onnx": card.onnx.present,
        "engine": engine_label(card.onnx),
        "rows": card.data.rows,
        "data_sha256": card.data.sha256,
        "created_at": v.created_at.isoformat(),
        "created_by": v.created_by,
    }


def train_version(
    ctx: Context,
    *,
    data: str | pd.DataFrame,
    target: str,
    model_name: str | None,
    query: str | None = None,
    params: Mapping[str, Any] | list[str] | None = None,
    drop: list[str] | tuple[str, ...] = (),
    overrides: dict[str, Any] | None = None,
    onnx: bool = True,
    actor: str,
    progress: Progress | None = None,
    sep: str | None = None,
    encoding: str | None = None,
    decimal: str | None = None,
) -> TrainResult:
    """Load data (a path, a query's rows or a DataFrame), train with settings + options.

    `sep`/`encoding`/`decimal`: a CSV's delimiter, encoding and decimal mark, sniffed when
    not given.
    """
    import pandas as pd

    from pgmlops.domain.training.pipeline import parse_params
    from pgmlops.services.datasets import frame_dataset, load_dataset
    from pgmlops.services.training import train_model

    base = ctx.settings.training
    extra: dict[str, Any] = dict(overrides or {})
    if params:
        given = parse_params(params) if isinstance(params, list) else dict(params)
        extra["params"] = {**base.params, **given}
    if drop:
        extra["drop"] = [*base.drop, *drop]
    if not onnx:
        extra["onnx"] = False
    cfg = training_config(base, extra)
    name = model_name or ctx.settings.model_name
    if cfg.engine == "dask":
        if isinstance(data, pd.DataFrame):
            raise ConfigError(
                "training.engine dask reads Parquet files or a database table, not a DataFrame"
            )
        from pgmlops.services.training.dask.train import train_on_dask

        return train_on_dask(
            ctx, data, target, cfg, query=query, model_name=name, actor=actor, progress=progress
        )
    if isinstance(data, pd.DataFrame):
        if query:
            raise ConfigError("query= reads from a database URL, not from a DataFrame")
        if sep is not None or encoding is not None or decimal is not None:
            raise ConfigError("sep=, encoding= and decimal= read a CSV file, not a DataFrame")
        dataset = frame_dataset(data)
    else:
        if progress:
            # A database URL may carry a password: never print it.
            progress(f"reading {redact_secrets(data)}")
        dataset = load_dataset(data, query, sep=sep, encoding=encoding, decimal=decimal)
    return train_model(ctx, dataset, target, cfg, model_name=name, actor=actor, progress=progress)


def train_summary(result: TrainResult) -> dict[str, Any]:
    """A trained version as JSON-ready data, with what training noticed and how long it took."""
    summary = version_summary(result.version)
    rejected = onnx_rejection(result.version.card.onnx)
    # A rejected ONNX copy means the slower pipeline serves this version: say so loudly.
    onnx_note = [f"ONNX copy rejected, this version will serve on the pipeline: {rejected}"]
    summary["warnings"] = [*result.warnings, *(onnx_note if rejected else [])]
    summary["seconds"] = round(result.seconds, 2)
    summary["all_metrics"] = result.version.card.metrics
    summary["onnx_detail"] = result.version.card.onnx.model_dump()
    summary["dropped_columns"] = result.version.card.feature_schema.dropped
    summary["mlflow_run_id"] = result.mlflow_run_id
    summary["mlflow_model_version"] = result.mlflow_model_version
    return summary


def train_command(ctx: Context, **kwargs: Any) -> dict[str, Any]:
    """Train a candidate (see train_version) and summarise it as JSON-ready data."""
    return train_summary(train_version(ctx, **kwargs))


def promotion_summary(result: PromotionResult) -> dict[str, Any]:
    """A promotion (or forced promotion) as JSON-ready data."""
    return {
        "model_name": result.model_name,
        "candidate_version": result.candidate,
        "previous_version": result.champion,
        "action": result.event.action,
        "decision": result.decision.to_dict() if result.decision else None,
        "actor": result.event.actor,
        "reason": result.event.reason,
        "at": result.event.created_at.isoformat(),
    }


def promote_command(
    ctx: Context,
    *,
    model_name: str | None,
    version: int | None,
    force: bool,
    reason: str | None,
    actor: str,
) -> dict[str, Any]:
    """Promote through the gates and summarise the outcome."""
    from pgmlops.services.promotion import promote

    name = model_name or ctx.settings.model_name
    result = promote(ctx, name, version, actor=actor, force=force, reason=reason)
    return promotion_summary(result)


def rollback_summary(event: AliasEvent) -> dict[str, Any]:
    """A rollback as JSON-ready data."""
    return {
        "model_name": event.model_name,
        "previous_version": event.previous_version,
        "new_version": event.new_version,
        "actor": event.actor,
        "reason": event.reason,
        "at": event.created_at.isoformat(),
    }


def rollback_command(
    ctx: Context, *, model_name: str | None, reason: str | None, actor: str
) -> dict[str, Any]:
    """Roll production back one step and summarise the move."""
    from pgmlops.services.promotion import rollback

    name = model_name or ctx.settings.model_name
    return rollback_summary(rollback(ctx, name, actor=actor, reason=reason))


def model_overviews(ctx: Context) -> list[ModelOverview]:
    """One line per registered model: production, how many versions, last trained, metric."""
    out = []
    for m in ctx.registry.list_models():
        production = m.aliases.get(PRODUCTION)
        latest = m.versions[0] if m.versions else None
        shown = next((v for v in m.versions if v.version == production), latest)
        metric = value = None
        if shown is not None:
            metric = ctx.settings.promotion.primary_for(shown.card.task)
            value = shown.card.metrics.get(metric)
        out.append(
            ModelOverview(
                name=m.name,
                production_version=production,
                versions=len(m.versions),
                latest_version=latest.version if latest else None,
                last_trained=latest.created_at if latest else None,
                primary_metric=metric,
                primary_value=value,
            )
        )
    return out


def overview_summary(overviews: list[ModelOverview]) -> dict[str, Any]:
    """Every registered model's overview as JSON-ready data."""
    return {
        "models": [
            {
                "name": o.name,
                "production_version": o.production_version,
                "versions": o.versions,
                "latest_version": o.latest_version,
                "last_trained": o.last_trained.isoformat() if o.last_trained else None,
                "primary_metric": o.primary_metric,
                "primary_value": o.primary_value,
            }
            for o in overviews
        ]
    }


def _parse_time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"at {text!r} is not an ISO time like 2026-11-23T17:00:00Z", params=("at",)
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def model_detail(
    name: str,
    versions: list[ModelVersion],
    events: list[AliasEvent] | None = None,
    at: str | None = None,
    states: dict[str, AliasState] | None = None,
    refusals: list[Any] | None = None,
) -> dict[str, Any]:
    """One model's versions (newest first), its challenger and, given events, alias history.

    `events` may hold every alias's moves; `production_at` replays production's alone.
    `refusals` (automatic rollbacks not made: the target failed verification) join the
    history as `rollback-refused` rows, which move nothing.
    """
    entry: dict[str, Any] = {
        "name": name,
        "aliases": {a: v.version for v in versions for a in v.aliases},
        "versions": [version_summary(v) for v in versions],
    }
    if states is not None:
        entry["challenger"] = challenger_summary(states)
    if events is not None:
        entry["history"] = [
            {
                "at": e.created_at.isoformat(),
                "alias": e.alias,
                "action": e.action,
                "from": e.previous_version,
                "to": e.new_version,
                "actor": e.actor,
                "reason": e.reason,
                "deployment": e.deployment,
            }
            for e in events
        ]
        if refusals:
            entry["history"] = sorted(
                entry["history"] + [_refusal_row(v) for v in refusals], key=lambda h: h["at"]
            )
        if at:
            from pgmlops.services.promotion import production_at

            production = [e for e in events if e.alias == PRODUCTION]
            entry["production_at"] = {
                "at": at,
                "version": production_at(production, _parse_time(at)),
            }
    return entry


def _refusal_row(verdict: Any) -> dict[str, Any]:
    """An automatic rollback the watch wanted but did not make, as a history row."""
    return {
        "at": verdict.created_at.isoformat(),
        "alias": PRODUCTION,
        "action": "rollback-refused",
        "from": verdict.version,
        "to": verdict.version,
        "actor": verdict.actor,
        "reason": verdict.reason,
        "deployment": None,
    }


def challenger_summary(states: dict[str, AliasState]) -> dict[str, Any] | None:
    """The deployed challenger: version, mode, share and sticky key (None if none)."""
    state = states.get(CHALLENGER)
    mode = Deployment.from_dict(state.deployment) if state else None
    if state is None or mode is None:
        return None
    return {"version": state.version, **mode.to_dict(), "describe": mode.describe()}


def models_command(
    ctx: Context, *, model_name: str | None, history: bool = False, at: str | None = None
) -> dict[str, Any]:
    """Registered models, their versions and (optionally) the production history."""
    from pgmlops.services.rollback.watch import refused_rollbacks

    out: dict[str, Any] = {"models": []}
    for m in ctx.registry.list_models(model_name):
        events = ctx.registry.alias_history(m.name) if history or at else None
        states = ctx.registry.alias_states(m.name)
        refusals = refused_rollbacks(ctx, m.name) if events is not None else None
        out["models"].append(model_detail(m.name, m.versions, events, at, states, refusals))
    return out
