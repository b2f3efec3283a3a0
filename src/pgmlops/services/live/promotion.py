"""Opt-in live promotion (`live.promotion: true`), run by `pgmlops worker`.

The challenger becomes production when the live interval of its gain on the primary metric
excludes 0 in its favour, with at least `live.min_labels` labelled records a side, AND the
offline promotion gates still approve it (services/promotion.py `promote`, unchanged). The
live numbers go into the decision record (`evidence`) and the reason text, so the alias and
promotion history say why. After a promotion the challenger alias is removed (audited,
action "stop"): it pointed at the version that is now production, and the next challenger
is a deliberate `pgmlops deploy`; the previous production stays the rollback target.
"""

from __future__ import annotations

import contextlib
from collections.abc import Container
from dataclasses import dataclass
from typing import Any

from pgmlops.domain.live.comparison import GainInterval
from pgmlops.domain.live.modes import CHALLENGER
from pgmlops.domain.registry.records import PRODUCTION, AliasEvent
from pgmlops.errors import ConflictError, PromotionRefused
from pgmlops.services.context import Context
from pgmlops.services.live.comparison import live_comparison
from pgmlops.services.promotion import promote


@dataclass(frozen=True)
class LiveDecision:
    """What one live-promotion check decided for one model."""

    model_name: str
    # off, no_challenger, waiting, refused (offline gates), promoted
    status: str
    message: str
    challenger_version: int | None = None
    production_version: int | None = None
    gain: GainInterval | None = None
    event: AliasEvent | None = None


def live_evidence(gain: GainInterval, production: int, challenger: int) -> dict[str, Any]:
    """The live numbers a decision record keeps."""
    return {
        "kind": "live",
        "production_version": production,
        "challenger_version": challenger,
        **gain.to_dict(),
        "describe": gain.describe(),
    }


def check_live_promotion(
    ctx: Context,
    name: str,
    *,
    actor: str,
    refused_before: Container[tuple[int, int]] = (),
) -> LiveDecision:
    """Promote the challenger if the live evidence and the offline gates both say so.

    `refused_before` holds (production, challenger) pairs the gates refused already: the
    offline gates give the same answer on the same pair, so they are not asked (and the
    refusal not audited) again until an alias moves.
    """
    policy = ctx.settings.live
    if not policy.promotion:
        return LiveDecision(name, "off", "live promotion is off (live.promotion: false)")
    states = ctx.registry.alias_states(name)
    challenger, production = states.get(CHALLENGER), states.get(PRODUCTION)
    if challenger is None or production is None or challenger.version == production.version:
        # A challenger promoted by hand still has its alias: there is nothing to compare.
        return LiveDecision(name, "no_challenger", f"{name}: no challenger deployed")
    version = challenger.version
    comparison = live_comparison(ctx, name, challenger_version=version, policy=policy)
    gain = comparison.best_gain()
    base = {"challenger_version": version, "production_version": production.version}
    if (production.version, version) in refused_before:
        return LiveDecision(
            name,
            "refused",
            f"{name}: the offline gates refused v{version} against v{production.version} "
            "already; not asked again until production or the challenger moves",
            **base,
        )
    if gain is None:
        return LiveDecision(
            name, "waiting", f"{name}: no labelled live traffic of v{version} yet", **base
        )
    if not gain.favours_challenger:
        why = gain.describe() if gain.enough else gain.note
        return LiveDecision(
            name,
            "waiting",
            f"{name}: v{version} not promoted on live evidence: {why}",
            gain=gain,
            **base,
        )
    reason = (
        f"live promotion: v{version} beat v{production.version} on live traffic, "
        f"{gain.describe()}: {gain.production_value:.4f} -> {gain.challenger_value:.4f}"
    )
    evidence = live_evidence(gain, production.version, version)
    try:
        result = promote(ctx, name, version, actor=actor, reason=reason, evidence=evidence)
    except PromotionRefused as exc:
        return LiveDecision(
            name,
            "refused",
            f"{name}: live evidence favours v{version} ({gain.describe()}) but the offline "
            f"gates refuse: {exc.message}",
            gain=gain,
            **base,
        )
    # Someone who moved the challenger meanwhile (ConflictError) keeps their move.
    with contextlib.suppress(ConflictError):
        ctx.registry.remove_alias(
            name,
            CHALLENGER,
            expected_version=version,
            action="stop",
            actor=actor,
            reason=f"v{version} promoted to production on live evidence",
        )
    return LiveDecision(
        name, "promoted", f"{name}: {reason}", gain=gain, event=result.event, **base
    )
