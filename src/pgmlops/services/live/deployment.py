"""Deploy a challenger beside production (shadow or canary), stop it, or move any other alias.

Every change is one audited alias move (actor, reason, mode) that NOTIFYs every worker and
host; the mode is stored on the alias row so all of them read the same version and share.
"""

from __future__ import annotations

from typing import Any

from pgmlops.domain.live.modes import CHALLENGER, Deployment, check_alias, parse_share
from pgmlops.domain.registry.records import PRODUCTION, AliasEvent, ModelVersion
from pgmlops.errors import ConfigError, NotFoundError
from pgmlops.services.context import Context
from pgmlops.services.promotion import verify_servable


def _sticky_key_ok(ctx: Context, key: str, versions: list[ModelVersion]) -> None:
    """The sticky key must reach every served version's record: a feature or the key column."""
    if key == ctx.settings.serving.key_column:
        return
    for v in versions:
        if key not in v.card.feature_schema.names and key != v.card.feature_schema.key_column(
            ctx.settings.serving.key_column
        ):
            raise ConfigError(
                f"sticky key {key!r} is not a feature of {v.model_name} v{v.version} "
                "nor the serving key column: a canary can stick only by a field every "
                "request carries"
            )


def deploy(
    ctx: Context,
    name: str,
    version: int | None = None,
    *,
    shadow: bool = False,
    canary: str | float | None = None,
    sticky_key: str | None = None,
    stop: bool = False,
    alias: str | None = None,
    actor: str,
    reason: str | None = None,
) -> AliasEvent:
    """Set the challenger (shadow, or canary with a share), stop it, or move `alias`."""
    modes = [m for m, on in (("shadow", shadow), ("canary", canary is not None)) if on]
    if stop:
        modes.append("stop")
    if alias is not None:
        modes.append("alias")
    if len(modes) != 1:
        raise ConfigError(
            "deploy needs exactly one of shadow, canary (a share), stop or alias (a name)"
            + (f" (got {' and '.join(modes)})" if modes else "")
        )
    if sticky_key is not None and canary is None:
        raise ConfigError("a sticky key applies to a canary only")
    registry = ctx.registry
    states = registry.alias_states(name)
    if not states:
        registry.list_models(name)  # NotFoundError for a model that is not registered
    current = states.get(CHALLENGER)
    if stop:
        if version is not None:
            raise ConfigError("stop takes no version: it stops the challenger, whichever it is")
        if current is None:
            raise NotFoundError(f"model {name!r} has no challenger deployed: nothing to stop")
        return registry.remove_alias(
            name,
            CHALLENGER,
            expected_version=current.version,
            action="stop",
            actor=actor,
            reason=reason or f"stopped v{current.version}",
        )
    if alias is not None:
        check_alias(alias)
        target = registry.get_version(name, version) if version else registry.latest_version(name)
        verify_servable(ctx, target)
        before = states.get(alias)
        return registry.move_alias(
            name,
            alias,
            new_version=target.version,
            expected_version=before.version if before else None,
            action="set",
            actor=actor,
            reason=reason,
        )
    production = states.get(PRODUCTION)
    if production is None:
        raise ConfigError(
            f"model {name!r} has no production version: a challenger is compared with "
            "production, promote one first"
        )
    if version is not None:
        target = registry.get_version(name, version)
    elif current is not None:
        # Changing the mode or the share keeps the deployed challenger.
        target = registry.get_version(name, current.version)
    else:
        target = registry.latest_version(name)
    if target.version == production.version:
        raise ConfigError(
            f"{name} v{target.version} is production already: a challenger must be another "
            "version (name one)"
        )
    if shadow:
        deployment = Deployment("shadow")
    else:
        share = parse_share(canary)  # type: ignore[arg-type]
        if sticky_key is not None:
            if not sticky_key.strip() or len(sticky_key) > 200:
                raise ConfigError("a sticky key must name a field (1 to 200 characters)")
            prod_version = registry.get_version(name, production.version)
            _sticky_key_ok(ctx, sticky_key, [prod_version, target])
        deployment = Deployment("canary", share, sticky_key)
    if current is None or current.version != target.version:
        # A version workers could not load is refused here, not discovered by each worker.
        verify_servable(ctx, target)
    return registry.move_alias(
        name,
        CHALLENGER,
        new_version=target.version,
        expected_version=current.version if current else None,
        action=deployment.mode,
        actor=actor,
        reason=reason or deployment.describe(),
        deployment=deployment.to_dict(),
    )


def deploy_summary(event: AliasEvent) -> dict[str, Any]:
    """An alias move made by deploy as JSON-ready data."""
    mode = Deployment.from_dict(event.deployment)
    return {
        "model_name": event.model_name,
        "alias": event.alias,
        "action": event.action,
        "previous_version": event.previous_version,
        "new_version": event.new_version,
        "deployment": event.deployment,
        "mode": mode.describe() if mode else None,
        "actor": event.actor,
        "reason": event.reason,
        "at": event.created_at.isoformat(),
    }
