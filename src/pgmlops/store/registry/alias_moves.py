"""Registry writes that move aliases, and their append-only audit: alias and promotion events."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from pgmlops.domain.registry.records import AliasEvent, PromotionEvent
from pgmlops.errors import ConflictError, NotFoundError
from pgmlops.store.tables import (
    AliasEventRow,
    ModelAliasRow,
    ModelVersionRow,
    PromotionEventRow,
    RegisteredModelRow,
    utcnow,
)

if TYPE_CHECKING:
    from pgmlops.store.db import Database

ALIAS_CHANNEL = "pgmlops_alias"
# Told of every alias move after its transaction has committed (the MLflow mirror).
AliasListener = Callable[[AliasEvent], None]
log = logging.getLogger(__name__)


def _alias_event(row: AliasEventRow, name: str) -> AliasEvent:
    return AliasEvent(
        id=row.id,
        model_name=name,
        alias=row.alias,
        action=row.action,
        previous_version=row.previous_version,
        new_version=row.new_version,
        actor=row.actor,
        reason=row.reason,
        created_at=row.created_at,
        promotion_event_id=row.promotion_event_id,
        deployment=row.deployment,
    )


class AliasMoves:
    """Alias moves and removals, each one audited transaction; mixed into `RegistryStore`."""

    db: Database
    alias_listeners: list[AliasListener]

    if TYPE_CHECKING:
        # Provided by RegistryStore.
        def _model(self, s: Session, name: str, *, lock: bool = False) -> RegisteredModelRow: ...

    def _announce(self, event: AliasEvent) -> AliasEvent:
        """Tell each listener of a committed move; a listener's failure never undoes it."""
        for listener in self.alias_listeners:
            try:
                listener(event)
            except Exception:
                log.exception("alias listener %r failed after %s moved", listener, event.alias)
        return event

    def move_alias(
        self,
        name: str,
        alias: str,
        *,
        new_version: int,
        expected_version: int | None,
        action: str,
        actor: str,
        reason: str | None,
        decision: dict[str, Any] | None = None,
        deployment: dict[str, Any] | None = None,
    ) -> AliasEvent:
        """Point `alias` at `new_version` if it still points at `expected_version`.

        The alias row, the alias event and (when given) the promotion decision are written
        in one transaction; if another writer moved the alias first, nothing is written.
        `deployment` (the challenger's mode) is stored on the alias and in the event.
        """
        with self.db.session() as s:
            model = self._model(s, name, lock=True)
            current_row = s.get(ModelAliasRow, (model.id, alias))
            current = self._check_expected(name, alias, current_row, expected_version)
            exists = s.scalars(
                select(ModelVersionRow.id).where(
                    ModelVersionRow.model_id == model.id, ModelVersionRow.version == new_version
                )
            ).one_or_none()
            if exists is None:
                raise NotFoundError(f"model {name!r} has no version {new_version}")
            now = utcnow()
            promotion_id = None
            if decision is not None:
                promotion_id = self._add_promotion(s, model.id, decision, actor, reason, now)
            if current_row is None:
                s.add(
                    ModelAliasRow(
                        model_id=model.id,
                        alias=alias,
                        version=new_version,
                        updated_at=now,
                        deployment=deployment,
                    )
                )
            else:
                current_row.version = new_version
                current_row.updated_at = now
                current_row.deployment = deployment
            event = AliasEventRow(
                model_id=model.id,
                alias=alias,
                action=action,
                previous_version=current,
                new_version=new_version,
                promotion_event_id=promotion_id,
                actor=actor,
                reason=reason,
                created_at=now,
                deployment=deployment,
            )
            s.add(event)
            s.flush()
            self._notify(s, name, alias, new_version)
            moved = _alias_event(event, name)
        return self._announce(moved)

    @staticmethod
    def _check_expected(
        name: str, alias: str, row: ModelAliasRow | None, expected: int | None
    ) -> int | None:
        current = row.version if row else None
        if current != expected:
            raise ConflictError(
                f"{name!r} alias {alias!r} moved to version {current} while this change was "
                f"being decided (expected {expected}); nothing was changed, re-run it"
            )
        return current

    def _notify(self, s: Session, name: str, alias: str, version: int | None) -> None:
        if self.db.is_postgres:
            # Delivered at commit, so listeners never see a move that was rolled back.
            s.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                {"channel": ALIAS_CHANNEL, "payload": f"{name}:{alias}:{version or ''}"},
            )

    def remove_alias(
        self,
        name: str,
        alias: str,
        *,
        expected_version: int,
        action: str,
        actor: str,
        reason: str | None,
    ) -> AliasEvent:
        """Delete an alias if it still points at `expected_version`; audited like a move."""
        with self.db.session() as s:
            model = self._model(s, name, lock=True)
            row = s.get(ModelAliasRow, (model.id, alias))
            current = self._check_expected(name, alias, row, expected_version)
            s.delete(row)
            event = AliasEventRow(
                model_id=model.id,
                alias=alias,
                action=action,
                previous_version=current,
                new_version=None,
                actor=actor,
                reason=reason,
                created_at=utcnow(),
            )
            s.add(event)
            s.flush()
            self._notify(s, name, alias, None)
            removed = _alias_event(event, name)
        return self._announce(removed)

    def _add_promotion(
        self,
        s: Session,
        model_id: int,
        decision: dict[str, Any],
        actor: str,
        reason: str | None,
        now: datetime,
    ) -> int:
        row = PromotionEventRow(
            model_id=model_id,
            candidate_version=decision["candidate_version"],
            champion_version=decision.get("champion_version"),
            decision=decision["decision"],
            primary_metric=decision["primary_metric"],
            details=decision,
            actor=actor,
            reason=reason,
            created_at=now,
        )
        s.add(row)
        s.flush()
        return row.id

    def record_refusal(self, name: str, decision: dict[str, Any], actor: str) -> int:
        """Keep a refused decision in the audit trail; aliases are untouched."""
        with self.db.session() as s:
            model = self._model(s, name)
            return self._add_promotion(s, model.id, decision, actor, None, utcnow())

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Every alias move, oldest first."""
        with self.db.session() as s:
            model = self._model(s, name)
            stmt = select(AliasEventRow).where(AliasEventRow.model_id == model.id)
            if alias is not None:
                stmt = stmt.where(AliasEventRow.alias == alias)
            return [_alias_event(r, name) for r in s.scalars(stmt.order_by(AliasEventRow.id))]

    def promotion_events(self, name: str) -> list[PromotionEvent]:
        """Every promotion decision, oldest first."""
        with self.db.session() as s:
            model = self._model(s, name)
            rows = s.scalars(
                select(PromotionEventRow)
                .where(PromotionEventRow.model_id == model.id)
                .order_by(PromotionEventRow.id)
            )
            return [
                PromotionEvent(
                    id=r.id,
                    model_name=name,
                    candidate_version=r.candidate_version,
                    champion_version=r.champion_version,
                    decision=r.decision,
                    primary_metric=r.primary_metric,
                    details=r.details,
                    actor=r.actor,
                    reason=r.reason,
                    created_at=r.created_at,
                )
                for r in rows
            ]
