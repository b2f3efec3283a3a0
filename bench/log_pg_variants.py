"""Variants of bench/log_pg_cost.py: ways to write the same logged rows into PostgreSQL."""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import Json, Jsonb

from pgmlops.domain.registry.records import PredictionRecord
from pgmlops.store.prediction_log.predictions import insert_json_sql
from pgmlops.store.prediction_log.spill import EncodedRecord, json_array
from pgmlops.store.tables import PredictionRow

COLUMNS = [c.name for c in PredictionRow.__table__.columns]


# -- variants ---------------------------------------------------------------------------------


@dataclass
class Variant:
    name: str
    what: str
    write: Callable[[psycopg.Connection, list[EncodedRecord]], None]
    batch: int = 500
    setup: Sequence[str] = ()
    # Hand the writer PredictionRecords (as the thread writer has them), decoded untimed.
    decoded: bool = False
    # Pack the rows before the clock starts (the COPY variants: PostgreSQL's side alone).
    pack: Callable[[list[Any]], list[bytes]] | None = None
    runs: list[dict[str, float]] = field(default_factory=list)


def insert_into(table: str) -> Callable[[psycopg.Connection, list[EncodedRecord]], None]:
    statement = insert_json_sql().replace("INSERT INTO predictions ", f"INSERT INTO {table} ", 1)

    def write(conn: psycopg.Connection, batch: list[EncodedRecord]) -> None:
        conn.execute(statement, (Jsonb(batch, dumps=json_array),))  # type: ignore[arg-type]

    return write


def insert_json_doc() -> Callable[[psycopg.Connection, list[EncodedRecord]], None]:
    """The writer's INSERT with the document as json (json_to_recordset), not jsonb."""
    statement = insert_json_sql().replace("jsonb_to_recordset(%s)", "json_to_recordset(%s)")

    def write(conn: psycopg.Connection, batch: list[EncodedRecord]) -> None:
        conn.execute(statement, (Json(batch, dumps=json_array),))  # type: ignore[arg-type]

    return write


def parse_only() -> Callable[[psycopg.Connection, list[EncodedRecord]], None]:
    """Only the document's conversion to jsonb."""

    def write(conn: psycopg.Connection, batch: list[EncodedRecord]) -> None:
        conn.execute("SELECT jsonb_typeof(%s)", (Jsonb(batch, dumps=json_array),))  # type: ignore[arg-type]

    return write


_UNNEST_SQL = (
    "INSERT INTO predictions ({}) SELECT u.id, u.m, u.v, u.t, f.value, u.p, u.pr, u.c, "
    "u.o::jsonb, u.l, u.r, u.e FROM unnest(%s::uuid[], %s::varchar[], %s::int[], "
    "%s::timestamptz[], %s::text[], %s::float8[], %s::float8[], %s::text[], %s::float8[], "
    "%s::varchar[], %s::varchar[]) WITH ORDINALITY AS u(id, m, v, t, p, pr, c, o, l, r, e, n) "
    "JOIN jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS f(value, n) USING (n)"
)


def insert_unnest() -> Callable[[psycopg.Connection, list[Any]], None]:
    """Columns as typed arrays (binary parameters), the features as one jsonb array."""
    statement = _UNNEST_SQL.format(", ".join(COLUMNS))

    def write(conn: psycopg.Connection, batch: list[PredictionRecord]) -> None:
        b = batch
        conn.execute(
            statement,
            (
                [r.id for r in b],
                [r.model_name for r in b],
                [r.version for r in b],
                [r.created_at for r in b],
                [r.prediction for r in b],
                [r.probability for r in b],
                [r.confidence for r in b],
                [None if r.output is None else orjson.dumps(r.output).decode() for r in b],
                [r.latency_ms for r in b],
                [r.request_id for r in b],
                [r.entity_key for r in b],
                Jsonb([r.features for r in b], dumps=orjson.dumps),
            ),
        )

    return write


def select_only() -> Callable[[psycopg.Connection, list[EncodedRecord]], None]:
    """The batch statement's read half alone: parse the document, take the rows apart."""
    statement = insert_json_sql().split(" SELECT ", 1)[1]
    statement = "SELECT count(*) FROM (SELECT " + statement + ") AS t"

    def write(conn: psycopg.Connection, batch: list[EncodedRecord]) -> None:
        conn.execute(statement, (Jsonb(batch, dumps=json_array),))  # type: ignore[arg-type]

    return write


def copy_rows(binary: bool) -> Callable[[psycopg.Connection, list[EncodedRecord]], None]:
    from uuid import UUID

    fmt = " (FORMAT BINARY)" if binary else ""
    statement = f"COPY predictions ({', '.join(COLUMNS)}) FROM STDIN{fmt}"
    types = ["uuid", "varchar", "int4", "timestamptz", "jsonb", "text", "float8", "float8"]
    types += ["jsonb", "float8", "varchar", "varchar"]

    def write(conn: psycopg.Connection, batch: list[EncodedRecord]) -> None:
        with conn.cursor() as cur, cur.copy(statement) as cp:
            if binary:
                cp.set_types(types)
            for e in batch:
                d = orjson.loads(e.line)
                cp.write_row(
                    (
                        UUID(d["id"]),
                        d["model_name"],
                        d["version"],
                        datetime.fromisoformat(d["created_at"]),
                        Jsonb(d["features"]),
                        d["prediction"],
                        d["probability"],
                        d["confidence"],
                        None if d["output"] is None else Jsonb(d["output"]),
                        d["latency_ms"],
                        d["request_id"],
                        d["entity_key"],
                    )
                )

    return write


_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_NULL = struct.pack(">i", -1)
_EPOCH_2000 = datetime(2000, 1, 1, tzinfo=UTC)


def _text(value: str | None) -> bytes:
    if value is None:
        return _COPY_NULL
    b = value.encode()
    return struct.pack(">i", len(b)) + b


def _float8(value: float | None) -> bytes:
    return _COPY_NULL if value is None else struct.pack(">id", 8, value)


def _jsonb(value: Any) -> bytes:
    if value is None:
        return _COPY_NULL
    b = orjson.dumps(value)
    return struct.pack(">i", len(b) + 1) + b"\x01" + b  # jsonb's binary form: version 1, text


def binary_copy(lines: list[bytes]) -> bytes:
    """COPY's binary format for encoded rows, by hand: one orjson.loads and a few packs a row."""
    out = [_COPY_HEADER]
    stamps: dict[str, bytes] = {}  # rows of one request share created_at
    for line in lines:
        d = orjson.loads(line)
        stamp = stamps.get(d["created_at"])
        if stamp is None:
            delta = datetime.fromisoformat(d["created_at"]) - _EPOCH_2000
            micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
            stamp = stamps[d["created_at"]] = struct.pack(">iq", 8, micros)
        model = d["model_name"].encode()
        out.append(
            b"".join(
                (
                    struct.pack(">hi", 12, 16),
                    bytes.fromhex(d["id"].replace("-", "")),
                    struct.pack(">i", len(model)),
                    model,
                    struct.pack(">ii", 4, d["version"]),
                    stamp,
                    _jsonb(d["features"]),
                    _text(d["prediction"]),
                    _float8(d["probability"]),
                    _float8(d["confidence"]),
                    _jsonb(d["output"]),
                    _float8(d["latency_ms"]),
                    _text(d["request_id"]),
                    _text(d["entity_key"]),
                )
            )
        )
    out.append(struct.pack(">h", -1))
    return b"".join(out)


def copy_built() -> Callable[[psycopg.Connection, list[EncodedRecord]], None]:
    """COPY (FORMAT BINARY) from a buffer built by hand: the cheapest COPY for the child."""
    statement = f"COPY predictions ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"

    def write(conn: psycopg.Connection, batch: list[EncodedRecord]) -> None:
        with conn.cursor() as cur, cur.copy(statement) as cp:
            cp.write(binary_copy([e.line for e in batch]))

    return write


def leaf_now(conn: psycopg.Connection, parent: str = "predictions") -> str:
    """The partition of `parent` that holds now()."""
    row = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass(%s) AND pg_get_expr(c.relpartbound, c.oid) ~ 'FROM' "
        "AND now() >= substring(pg_get_expr(c.relpartbound, c.oid) FROM $$FROM \\('([^']+)'$$)"
        "::timestamptz AND now() < substring(pg_get_expr(c.relpartbound, c.oid) "
        "FROM $$TO \\('([^']+)'$$)::timestamptz",
        (parent,),
    ).fetchone()
    if row is None:
        raise RuntimeError(f"no partition of {parent} holds now()")
    return str(row[0])


def twin(conn: psycopg.Connection, schema: str, with_time_index: bool, keys: bool = True) -> None:
    """A copy of the predictions table (partitioned, current month) in its own schema."""
    s = sql.Identifier(schema)
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(s))
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(s))
    if not keys:
        # Not partitioned, no key, no index: the heap and its WAL alone.
        conn.execute(
            sql.SQL(
                "CREATE TABLE {}.predictions (LIKE public.predictions INCLUDING DEFAULTS)"
            ).format(s)
        )
        return
    conn.execute(
        sql.SQL(
            "CREATE TABLE {}.predictions (LIKE public.predictions INCLUDING DEFAULTS) "
            "PARTITION BY RANGE (created_at)"
        ).format(s)
    )
    conn.execute(sql.SQL("ALTER TABLE {}.predictions ADD PRIMARY KEY (id, created_at)").format(s))
    if with_time_index:
        conn.execute(sql.SQL("CREATE INDEX ON {}.predictions (model_name, created_at)").format(s))
    conn.execute(
        sql.SQL(
            "CREATE INDEX ON {}.predictions (model_name, entity_key, created_at) "
            "WHERE entity_key IS NOT NULL"
        ).format(s)
    )
    conn.execute(
        sql.SQL(
            "CREATE TABLE {}.predictions_now PARTITION OF {}.predictions FOR VALUES FROM "
            "(date_trunc('month', now())) TO (date_trunc('month', now()) + interval '1 month')"
        ).format(s, s)
    )


def variants(leaf: str) -> list[Variant]:
    writer = insert_into("predictions")
    return [
        Variant("current", "INSERT … jsonb_to_recordset into `predictions` (the writer)", writer),
        Variant(
            "leaf",
            f"the same INSERT into the current partition `{leaf}` (no routing)",
            insert_into(leaf),
        ),
        Variant(
            "async_commit",
            "the writer's INSERT, `SET synchronous_commit = off` on the connection",
            writer,
            setup=("SET synchronous_commit = off",),
        ),
        Variant("copy_text", "COPY … FROM STDIN (text) into `predictions`", copy_rows(False)),
        Variant("copy_binary", "COPY … (FORMAT BINARY) into `predictions`", copy_rows(True)),
        Variant(
            "copy_binary_built",
            "COPY … (FORMAT BINARY) from a buffer built by hand (orjson.loads + struct a row)",
            copy_built(),
        ),
        Variant("batch_100", "the writer's INSERT, 100-row batches", writer, 100),
        Variant("batch_2000", "the writer's INSERT, 2,000-row batches", writer, 2000),
        Variant(
            "twin_all_indexes",
            "the writer's INSERT into a copy of the table with every index (fresh)",
            insert_into("twin_full.predictions"),
        ),
        Variant(
            "twin_no_time_index",
            "the same copy without ix_predictions_model_time (model_name, created_at)",
            insert_into("twin_notime.predictions"),
        ),
        Variant(
            "json_doc",
            "the writer's INSERT with the document as json: `json_to_recordset`",
            insert_json_doc(),
        ),
        Variant(
            "unnest_arrays",
            "INSERT … unnest(typed arrays), features as one jsonb array (from PredictionRecords)",
            insert_unnest(),
            decoded=True,
        ),
        Variant(
            "heap_only",
            "the writer's INSERT into a plain table: no partitions, no key, no index",
            insert_into("twin_heap.predictions"),
        ),
        Variant(
            "parse_only",
            "only the document's conversion to jsonb (`SELECT jsonb_typeof($1)`)",
            parse_only(),
        ),
        Variant(
            "select_only",
            "the writer's statement without the INSERT: parse the document, extract the rows",
            select_only(),
        ),
    ]
