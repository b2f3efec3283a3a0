"""The Client's live-deployment methods: deploy a challenger, show it, compare it to production."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pgmlops.client.references import default_actor
from pgmlops.errors import ConfigError

if TYPE_CHECKING:
    from pgmlops.domain.registry.records import AliasEvent, AliasState
    from pgmlops.services.context import Context
    from pgmlops.services.live.comparison import LiveComparison


class LiveDeployments:
    """Challengers beside production (shadow or canary); mixed into `Client`."""

    if TYPE_CHECKING:
        # Provided by Client; declared so the methods below type-check on their own.
        @property
        def context(self) -> Context: ...

        def _name(self, model_name: str | None) -> str: ...

        def aliases(self, model_name: str | None = None) -> dict[str, AliasState]: ...

    def deploy(
        self,
        model_name: str | None = None,
        version: int | None = None,
        *,
        shadow: bool = False,
        canary: str | float | None = None,
        sticky_key: str | None = None,
        stop: bool = False,
        alias: str | None = None,
        reason: str | None = None,
        actor: str | None = None,
    ) -> AliasEvent:
        """Deploy a challenger beside production (shadow=True, or canary="10%"), stop it
        (stop=True), or point another alias (alias="staging") at a version.

        Audited in the alias history; every serving worker and host follows within
        `serving.reload_poll_seconds` (at once on PostgreSQL, by NOTIFY).
        """
        from pgmlops.services.live.deployment import deploy

        return deploy(
            self.context,
            self._name(model_name),
            version,
            shadow=shadow,
            canary=canary,
            sticky_key=sticky_key,
            stop=stop,
            alias=alias,
            actor=actor or default_actor(),
            reason=reason,
        )

    def challenger(self, model_name: str | None = None) -> dict[str, Any] | None:
        """The deployed challenger: version, mode, share, sticky key (None when none)."""
        from pgmlops.services.commands import challenger_summary

        return challenger_summary(self.aliases(model_name))

    def compare(
        self,
        model_name: str | None = None,
        *,
        live: bool = True,
        since: str | datetime | timedelta | None = None,
        version: int | None = None,
    ) -> LiveComparison:
        """Production against the challenger (or `version`) on logged live traffic.

        `since`: '24h', '7d' or an ISO time (default: all logged traffic of the two).
        Shadow traffic is compared record by record (paired bootstrap), canary traffic
        unpaired; see docs/live-deployments.md.
        """
        from pgmlops.services.live.comparison import live_comparison, parse_since

        if not live:
            raise ConfigError(
                "compare is a live comparison (live=True); versions are compared "
                "offline by the promotion gates (promote)"
            )
        start = parse_since(since) if since is not None else None
        return live_comparison(
            self.context, self._name(model_name), challenger_version=version, since=start
        )
