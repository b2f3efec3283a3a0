"""`pgmlops predict --canary`: the challenger answers the canary's share of rows, as /predict.

Which rows go to the challenger is decided by the server's own rule (domain/live/modes.py
`canary_rows`): by the hash of the sticky key when the deployment has one, so a key gets the
same version in a batch as on /predict, else each row at random with the canary's share.
Every output row says which version and role answered it; the log keeps role `canary` for the
challenger's rows (NULL for production's), as /predict does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pgmlops.config import ServingConfig
from pgmlops.domain.live.modes import CHALLENGER, Deployment, canary_rows
from pgmlops.domain.schema import key_text
from pgmlops.errors import ConfigError, PgmlopsError
from pgmlops.services.batch.scoring import ChunkResult, score_chunk
from pgmlops.services.context import Context
from pgmlops.services.serving.load import LoadedModel, load_version

log = logging.getLogger(__name__)

PRODUCTION_ROLE = "production"
CANARY_ROLE = "canary"
ROLE_COLUMNS = ("version", "role")
_ROW = "__pgmlops_row"


@dataclass(frozen=True)
class CanaryPlan:
    """The challenger, its deployment and the input column its sticky key is read from."""

    challenger: LoadedModel
    deployment: Deployment
    sticky_column: str | None
    # How the sticky value is written before hashing, to match /predict's validated field.
    sticky_kind: str | None

    def describe(self) -> dict[str, Any]:
        return {
            "challenger_version": self.challenger.version,
            "share": self.deployment.share,
            "sticky_key": self.deployment.sticky_key,
            "mode": self.deployment.describe(),
        }


def load_canary(
    ctx: Context,
    production: LoadedModel,
    columns: list[str],
    id_column: str | None,
    where: str,
) -> CanaryPlan:
    """The model's canary deployment ready to score, or a one-line error saying why not."""
    name = production.name
    state = ctx.registry.alias_states(name).get(CHALLENGER)
    deployment = Deployment.from_dict(state.deployment) if state else None
    how = "deploy a version as a canary (a share of traffic) first"
    if state is None or deployment is None:
        raise ConfigError(f"canary scoring: model {name!r} has no canary deployed ({how})")
    if deployment.mode != "canary":
        raise ConfigError(
            f"canary scoring: {name} v{state.version} is deployed in {deployment.mode}, not as a "
            f"canary; shadow answers nothing ({how})"
        )
    challenger = load_version(ctx, ctx.registry.get_version(name, state.version))
    if challenger.card.task != production.card.task:
        raise ConfigError(
            f"canary scoring: challenger v{challenger.version} is {challenger.card.task} and "
            f"production v{production.version} is {production.card.task}: one output cannot "
            "hold both"
        )
    column, kind = _sticky_source(production, deployment, columns, id_column, where)
    return CanaryPlan(challenger, deployment, column, kind)


def _sticky_source(
    production: LoadedModel,
    deployment: Deployment,
    columns: list[str],
    id_column: str | None,
    where: str,
) -> tuple[str | None, str | None]:
    key = deployment.sticky_key
    if key is None:
        return None, None
    schema = production.card.feature_schema
    if key in schema.names:
        return key, "numeric" if key in schema.numeric else "text"
    if key in columns:
        return key, "key"
    if key == production.key_column and id_column is not None:
        return id_column, "key"
    raise ConfigError(
        f"the canary sticks by {key!r} but {where} has no column {key!r}: add it (or give the "
        "key column as id_column) so each key gets the version /predict gives it",
        params=("id_column",),
    )


def _sticky_value(value: Any, kind: str) -> Any:
    """A cell as /predict's validated record holds it, so both hash the same text."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if kind == "key":
        return key_text(value.item() if isinstance(value, np.generic) else value)
    if kind == "numeric":
        try:
            return float(value)
        except (TypeError, ValueError):
            return None  # a refused cell: the row is refused anyway
    return value if isinstance(value, str) else str(value)


def choose(plan: CanaryPlan, model_name: str, chunk: pd.DataFrame) -> np.ndarray:
    """Per row, whether the challenger answers it (the server's rule)."""
    keys = None
    if plan.sticky_column is not None:
        kind = plan.sticky_kind or "text"
        keys = [_sticky_value(v, kind) for v in chunk[plan.sticky_column].tolist()]
    return np.asarray(canary_rows(model_name, plan.deployment, keys, len(chunk)), dtype=bool)


def _with_roles(result: ChunkResult, model: LoadedModel, role: str, rows: np.ndarray) -> pa.Table:
    n = result.table.num_rows
    table = result.table.append_column("version", pa.array([model.version] * n, pa.int64()))
    table = table.append_column("role", pa.array([role] * n, pa.string()))
    return table.append_column(_ROW, pa.array(rows, pa.int64()))


def score_canary_chunk(
    production: LoadedModel,
    plan: CanaryPlan,
    chunk: pd.DataFrame,
    serving: ServingConfig,
    *,
    id_column: str | None,
    request_id: str,
    log_rows: bool,
) -> tuple[ChunkResult, dict[str, int]]:
    """Score the canary's rows with the challenger and the rest with production, in order.

    A challenger that fails on its rows (not a refused row: a broken model) hands them to
    production, as /predict does; the count says how many.
    """
    chosen = choose(plan, production.name, chunk)
    counts = {PRODUCTION_ROLE: 0, CANARY_ROLE: 0, "canary_failed": 0}
    parts: list[pa.Table] = []
    records = []
    rejected: dict[int, str] = {}

    def run(model: LoadedModel, positions: np.ndarray, role: str) -> None:
        part = chunk.iloc[positions].reset_index(drop=True)
        result = score_chunk(
            model, part, serving, id_column=id_column, request_id=request_id, log=log_rows
        )
        for pos, reason in result.rejected.items():
            rejected[int(positions[pos])] = reason
        kept = np.delete(positions, sorted(result.rejected))
        parts.append(_with_roles(result, model, role, kept))
        if role == CANARY_ROLE:
            for record in result.records:
                record.role = CANARY_ROLE
        records.extend(result.records)
        counts[role] += len(kept)

    picked = np.flatnonzero(chosen)
    rest = np.flatnonzero(~chosen)
    if len(picked):
        try:
            run(plan.challenger, picked, CANARY_ROLE)
        except PgmlopsError:
            raise  # the rows' own fault (a key too long): production would refuse it too
        except Exception as exc:  # the challenger's failure is never the job's
            log.warning(
                "canary %s v%d failed on %d row(s), production answers them: %s",
                production.name,
                plan.challenger.version,
                len(picked),
                exc,
            )
            counts["canary_failed"] += len(picked)
            rest = np.arange(len(chunk))
    if len(rest):
        run(production, rest, PRODUCTION_ROLE)
    table = pa.concat_tables(parts, promote_options="default")
    table = table.take(pc.sort_indices(table, [(_ROW, "ascending")]))
    return ChunkResult(table.drop_columns([_ROW]), records, rejected), counts
