"""`pgmlops predict`: score a file or a query in chunks, write the answers, log every row."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from pgmlops.domain.registry.records import PRODUCTION
from pgmlops.errors import ConfigError, NotFoundError, StoreError, ValidationError
from pgmlops.services.batch.canary import (
    ROLE_COLUMNS,
    CanaryPlan,
    load_canary,
    score_canary_chunk,
)
from pgmlops.services.batch.scoring import score_chunk
from pgmlops.services.batch.sinks import check_output, open_output, open_rejects
from pgmlops.services.batch.sources import open_source
from pgmlops.services.context import Context
from pgmlops.services.serving.load import LoadedModel, load_version
from pgmlops.store.prediction_log.predictions import PredictionStore

# Rows per chunk: large enough that per-chunk costs vanish, small enough to bound memory.
DEFAULT_CHUNK_ROWS = 50_000
_MAX_CHUNK_ROWS = 5_000_000
_OUTPUT_COLUMNS = ("prediction_id", "prediction", "confidence", "risk_level", "out_of_range")


@dataclass(frozen=True)
class BatchRequest:
    """What to score, with which version, and where the answers go."""

    data: str
    out: str
    model_name: str | None = None
    version: int | None = None
    alias: str | None = None
    query: str | None = None
    id_column: str | None = None
    log: bool = True
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    on_error: Literal["fail", "skip"] = "fail"
    rejects: Path | None = None
    # A CSV's delimiter, encoding and decimal mark; sniffed when None.
    sep: str | None = None
    encoding: str | None = None
    decimal: str | None = None
    # Answer the canary's share of rows with the challenger, as /predict does.
    canary: bool = False


@dataclass(frozen=True)
class BatchSummary:
    """What a finished job did."""

    model_name: str
    version: int
    rows: int
    written: int
    rejected: int
    logged: int
    seconds: float
    output: str
    rejects: str | None
    request_id: str
    # With --canary: the deployment and how many rows each role answered.
    canary: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        extra = {"canary": self.canary} if self.canary is not None else {}
        return {
            "model_name": self.model_name,
            "version": self.version,
            "rows": self.rows,
            "written": self.written,
            "rejected": self.rejected,
            "logged": self.logged,
            "seconds": round(self.seconds, 3),
            "output": self.output,
            "rejects": self.rejects,
            "request_id": self.request_id,
            **extra,
        }


Progress = Callable[[int, int | None], None]
_RETRY_FIRST_S = 0.2
_RETRY_MAX_S = 2.0


def _write_waiting(store: PredictionStore, records: list[Any], wait_seconds: float) -> None:
    """Write a chunk's log rows; while the database refuses, retry for up to wait_seconds.

    The batch counterpart of serving.log_when_full=wait: a blip does not fail a long job,
    and an outage fails it (the caller says how many rows) rather than dropping rows.
    """
    deadline = time.monotonic() + wait_seconds
    pause = _RETRY_FIRST_S
    while True:
        try:
            store.write_batch(records)
            return
        except StoreError:
            if time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(_RETRY_MAX_S, pause * 2)


def _check_request(req: BatchRequest) -> None:
    if req.version is not None and req.alias is not None:
        raise ConfigError(
            "choose one of version N or alias NAME, not both", params=("version", "alias")
        )
    if req.version is not None and req.version < 1:
        raise ConfigError(f"version must be at least 1, got {req.version}", params=("version",))
    if not 1 <= req.chunk_rows <= _MAX_CHUNK_ROWS:
        raise ConfigError(
            f"chunk_rows must be between 1 and {_MAX_CHUNK_ROWS}", params=("chunk_rows",)
        )
    if req.on_error not in ("fail", "skip"):
        raise ConfigError(
            f"on_error must be fail or skip, got {req.on_error!r}", params=("on_error",)
        )
    skip = ("on_error", "rejects")
    if req.on_error == "skip" and req.rejects is None:
        raise ConfigError("on_error skip needs a rejects file for the refused rows", params=skip)
    if req.on_error == "fail" and req.rejects is not None:
        raise ConfigError("rejects is only used with on_error skip", params=skip)
    if req.canary and (req.version is not None or req.alias is not None):
        raise ConfigError(
            "canary answers with production and the deployed challenger: it takes no "
            "version or alias",
            params=("canary", "version", "alias"),
        )
    check_output(req.out)


def _load(ctx: Context, req: BatchRequest) -> LoadedModel:
    name = req.model_name or ctx.settings.model_name
    number = req.version
    if number is None:
        alias = req.alias or PRODUCTION
        number = ctx.registry.alias_version(name, alias)
        if number is None:
            raise NotFoundError(f"model {name!r} has no version with alias {alias!r}")
    return load_version(ctx, ctx.registry.get_version(name, number))


def _check_columns(
    model: LoadedModel,
    columns: list[str],
    req: BatchRequest,
    where: str,
    also: LoadedModel | None = None,
) -> None:
    """Every feature present; other columns follow serving.extra_fields, as on /predict.

    `also` (the canary's challenger) must find its features too; they are not extra.
    """
    schema = model.card.feature_schema
    if also is not None:
        theirs = also.card.feature_schema
        missing = [n for n in theirs.names if n not in columns]
        if missing:
            raise ValidationError(
                f"{where} has no column {missing[0]!r}, a feature of the canary "
                f"{also.name} v{also.version}"
                + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else "")
            )
    missing = [n for n in schema.names if n not in columns]
    if missing:
        raise ValidationError(
            f"{where} has no column {missing[0]!r}, a feature of {model.name} v{model.version}"
            + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    if req.id_column is not None and req.id_column not in columns:
        raise ConfigError(
            f"id_column {req.id_column!r} is not a column of {where}", params=("id_column",)
        )
    outputs = (*_OUTPUT_COLUMNS, *(ROLE_COLUMNS if req.canary else ()))
    if req.id_column in schema.names or req.id_column in outputs:
        raise ConfigError(
            f"id_column {req.id_column!r} clashes with a feature or output column",
            params=("id_column",),
        )
    # The target and the columns training dropped (ids, constants) are expected in such files.
    known = {*schema.names, schema.target, *schema.dropped, req.id_column}
    if also is not None:
        theirs = also.card.feature_schema
        known |= {*theirs.names, theirs.target, *theirs.dropped}
    extra = [c for c in columns if c not in known]
    if extra and model.record.model_config.get("extra") == "forbid":
        raise ValidationError(
            f"{where} has column {extra[0]!r} that is not a feature of {model.name} "
            f"v{model.version}: Extra inputs are not permitted (serving.extra_fields is reject)"
        )


def _refused_rows(chunk: pd.DataFrame, rejected: dict[int, str], before: int) -> pd.DataFrame:
    """The refused rows' original fields, their row number in the input, and the reason."""
    positions = sorted(rejected)
    bad = chunk.iloc[positions].copy()
    bad.insert(0, "row", [before + p + 1 for p in positions])
    bad["reason"] = [rejected[p] for p in positions]
    return bad


def _settled(pending: Future[None], rows: int, logged: int) -> None:
    """Wait for a chunk's log write; a failure names how many rows the log did not take."""
    try:
        pending.result()
    except StoreError as exc:
        raise StoreError(
            f"prediction log refused {rows} rows ({exc}): the job stops, no output is "
            f"written and the {logged - rows} rows it had logged are removed"
        ) from exc


def run_batch_predict(
    ctx: Context, req: BatchRequest, progress: Progress | None = None
) -> BatchSummary:
    """Score every row of req.data with one version; all-or-nothing unless on_error is skip."""
    _check_request(req)
    started = time.perf_counter()
    model = _load(ctx, req)
    numeric = model.card.feature_schema.numeric
    source = open_source(
        req.data,
        req.query,
        req.chunk_rows,
        numeric=numeric,
        sep=req.sep,
        encoding=req.encoding,
        decimal=req.decimal,
    )
    plan: CanaryPlan | None = None
    if req.canary:
        plan = load_canary(ctx, model, source.columns, req.id_column, source.description)
    challenger = plan.challenger if plan is not None else None
    _check_columns(model, source.columns, req, source.description, challenger)
    by_role: dict[str, int] = {}
    serving = ctx.settings.serving
    request_id = f"batch-{uuid.uuid4().hex[:16]}"
    # A minute of slack: the rows' created_at comes from this machine's clock.
    began = datetime.now(UTC) - timedelta(minutes=1)
    store = PredictionStore(ctx.db) if req.log else None
    sink = open_output(req.out)
    rejects = open_rejects(req.rejects) if req.rejects is not None else None
    # The log insert of one chunk runs while the next is read and scored: the database works
    # on its side while this process computes. At most one write is in flight (bounded memory).
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-log")
    pending: Future[None] | None = None
    rows = written = refused = logged = in_flight = 0
    try:
        for chunk in source.chunks():
            if plan is None:
                result = score_chunk(
                    model,
                    chunk,
                    serving,
                    id_column=req.id_column,
                    request_id=request_id,
                    log=store is not None,
                )
            else:
                result, counts = score_canary_chunk(
                    model,
                    plan,
                    chunk,
                    serving,
                    id_column=req.id_column,
                    request_id=request_id,
                    log_rows=store is not None,
                )
                for role, n in counts.items():
                    by_role[role] = by_role.get(role, 0) + n
            if result.rejected:
                if rejects is None:
                    first = min(result.rejected)
                    raise ValidationError(f"row {rows + first + 1}: {result.rejected[first]}")
                rejects.write(_refused_rows(chunk, result.rejected, rows))
                refused += len(result.rejected)
            sink.write(result.table)
            if store is not None and result.records:
                if pending is not None:
                    _settled(pending, in_flight, logged)
                pending = writer.submit(
                    _write_waiting, store, result.records, serving.log_wait_seconds
                )
                in_flight = len(result.records)
                logged += in_flight
            rows += len(chunk)
            written += result.table.num_rows
            if progress is not None:
                progress(rows, source.total_rows)
        if pending is not None:
            _settled(pending, in_flight, logged)
        if rows == 0:
            raise ValidationError(f"{source.description} has no rows")
        sink.commit()
        if rejects is not None:
            rejects.commit()
    except BaseException:
        sink.abort()
        if rejects is not None:
            rejects.abort()
        writer.shutdown(wait=True)
        if store is not None and logged:
            # The answers were never delivered: their log rows would be predictions nobody
            # saw, counted by monitoring and waiting for labels that cannot come.
            with contextlib.suppress(Exception):
                store.delete_request(request_id, since=began)
        raise
    finally:
        writer.shutdown(wait=True)
        if store is not None:
            store.close()
    return BatchSummary(
        model_name=model.name,
        version=model.version,
        rows=rows,
        written=written,
        rejected=refused,
        logged=logged,
        seconds=time.perf_counter() - started,
        output=sink.description,
        rejects=str(rejects.path) if rejects is not None else None,
        request_id=request_id,
        canary={**plan.describe(), "rows": by_role} if plan is not None else None,
    )
