"""The Client's retraining methods: retrain now or if a trigger fires, and where it stands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pgmlops.client.references import default_actor

if TYPE_CHECKING:
    from pgmlops.services.context import Context
    from pgmlops.services.retraining.runs import RetrainOutcome
    from pgmlops.services.training import Progress


class Retraining:
    """Retraining runs and their status; mixed into `Client`."""

    if TYPE_CHECKING:
        # Provided by Client; declared so the methods below type-check on their own.
        @property
        def context(self) -> Context: ...

        def _name(self, model_name: str | None) -> str: ...

    def retrain(
        self,
        model_name: str | None = None,
        *,
        force: bool = False,
        if_needed: bool = False,
        allow_feedback_only: bool | None = None,
        actor: str | None = None,
        progress: Progress | None = None,
    ) -> RetrainOutcome:
        """Retrain now (force=True: even on the same rows), or only if a trigger fires
        (if_needed=True); the promotion gates decide whether the candidate goes to production.

        `allow_feedback_only` (default `retraining.allow_feedback_only`) trains from feedback
        and live rows when the original data source cannot be read.
        """
        from pgmlops.services.retraining.runs import mode_of, retrain

        mode = mode_of(force=force, if_needed=if_needed)  # refused before any database work
        return retrain(
            self.context,
            self._name(model_name),
            mode=mode,
            allow_feedback_only=allow_feedback_only,
            actor=actor or default_actor(),
            progress=progress,
        )

    def retrain_status(self, model_name: str | None = None, limit: int = 10) -> dict[str, Any]:
        """Where each retraining trigger stands, the newest ``limit`` runs and unfinished jobs.

        A run whose process died is marked failed first.
        """
        from pgmlops.services.retraining.runs import retrain_status

        return retrain_status(self.context, self._name(model_name), limit)

    def retrain_triggers(self, model_name: str | None = None) -> dict[str, Any]:
        """Where each retraining trigger stands now, changing nothing ("3,000 of 5,000 ...")."""
        from pgmlops.services.retraining.triggers import trigger_status

        return trigger_status(self.context, self._name(model_name)).to_dict()
