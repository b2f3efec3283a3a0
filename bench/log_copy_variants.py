"""COPY variants of bench/log_pg_cost.py: the writer's binary COPY into copies of the table.

Each variant COPYs the same rows, packed as the writer packs them
(store/prediction_log/copy_rows.py) before the clock starts, into a copy of `predictions` in a
schema of its own that differs in one thing: its indexes, the features column's type (jsonb, json,
text, bytea) or partitioning. What differs in the backend's CPU a row is what that thing costs
PostgreSQL.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from pgmlops.store.prediction_log.copy_rows import COLUMNS, HEADER, TRAILER, binary_rows

_COPY_ROWS = 20_000  # the writer's catch-up batch: one COPY, one commit
_PART_ROWS = 500  # written in parts, as store/prediction_log/predictions.py does
_FEATURES = COLUMNS.index("features")
INDEXES = {
    "pk": "ALTER TABLE {t} ADD PRIMARY KEY (id, created_at)",
    "time": "CREATE INDEX ON {t} (model_name, created_at)",
    "entity": "CREATE INDEX ON {t} (model_name, entity_key, created_at) "
    "WHERE entity_key IS NOT NULL",
    "paired": "CREATE INDEX ON {t} (paired_id) WHERE paired_id IS NOT NULL",
}
ALL = tuple(INDEXES)


def strip_jsonb_version(rows: bytes) -> bytes:
    """Binary COPY rows with the features field's jsonb version byte dropped (json/text/bytea)."""
    out = bytearray()
    pos = 0
    unpack_h, unpack_i = struct.Struct(">h").unpack_from, struct.Struct(">i").unpack_from
    while pos < len(rows):
        (fields,) = unpack_h(rows, pos)
        out += rows[pos : pos + 2]
        pos += 2
        for k in range(fields):
            (n,) = unpack_i(rows, pos)
            if k == _FEATURES and n > 0:
                out += struct.pack(">i", n - 1) + rows[pos + 5 : pos + 4 + n]
            else:
                out += rows[pos : pos + 4 + max(n, 0)]
            pos += 4 + max(n, 0)
    return bytes(out)


def make_table(
    conn: psycopg.Connection,
    schema: str,
    indexes: Sequence[str] = ALL,
    features: str = "jsonb",
    partitioned: bool = True,
) -> str:
    """A copy of `predictions` in `schema`: the given indexes, features type, partitioning."""
    s = sql.Identifier(schema)
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(s))
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(s))
    table = f"{schema}.predictions"
    tail = " PARTITION BY RANGE (created_at)" if partitioned else ""
    conn.execute(f"CREATE TABLE {table} (LIKE public.predictions INCLUDING DEFAULTS){tail}")
    if features != "jsonb":
        using = (
            "convert_to(features::text, 'UTF8')" if features == "bytea" else f"features::{features}"
        )
        conn.execute(f"ALTER TABLE {table} ALTER COLUMN features TYPE {features} USING {using}")
    for name in indexes:
        conn.execute(INDEXES[name].format(t=table))
    if partitioned:
        conn.execute(
            f"CREATE TABLE {schema}.predictions_now PARTITION OF {table} FOR VALUES FROM "
            "(date_trunc('month', now())) TO (date_trunc('month', now()) + interval '1 month')"
        )
    return table


def copy_into(
    table: str, strip: bool = False
) -> tuple[Callable[[list[Any]], list[bytes]], Callable[[psycopg.Connection, list[bytes]], None]]:
    """(pack, write): pack the records untimed into COPY parts; write them, a COPY per batch."""
    statement = f"COPY {table} ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"

    def pack(records: list[Any]) -> list[bytes]:
        parts = [
            binary_rows(records[k : k + _PART_ROWS]) for k in range(0, len(records), _PART_ROWS)
        ]
        return [strip_jsonb_version(p) for p in parts] if strip else parts

    def write(conn: psycopg.Connection, parts: list[bytes]) -> None:
        per_copy = _COPY_ROWS // _PART_ROWS
        for start in range(0, len(parts), per_copy):
            with conn.cursor() as cur, cur.copy(statement) as cp:
                cp.write(HEADER)
                for part in parts[start : start + per_copy]:
                    cp.write(part)
                cp.write(TRAILER)

    return pack, write


# (name, what, table kwargs or None for public.predictions itself)
COPY_VARIANTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("copy_predictions", "binary COPY into `predictions` (the writer, today)", None),
    ("copy_twin", "a fresh copy of the table: the same 4 indexes, jsonb", {}),
    ("copy_no_index", "no index at all (partitioned, jsonb)", {"indexes": ()}),
    ("copy_pk", "the primary key (id, created_at) only", {"indexes": ("pk",)}),
    ("copy_time", "(model_name, created_at) only", {"indexes": ("time",)}),
    ("copy_entity", "the partial entity-key index only", {"indexes": ("entity",)}),
    ("copy_paired", "the partial paired_id index only", {"indexes": ("paired",)}),
    (
        "copy_no_time",
        "every index but (model_name, created_at)",
        {"indexes": ("pk", "entity", "paired")},
    ),
    ("copy_json", "4 indexes, features json (text kept, validated)", {"features": "json"}),
    ("copy_text", "4 indexes, features text (no JSON check)", {"features": "text"}),
    ("copy_bytea", "4 indexes, features bytea", {"features": "bytea"}),
    ("copy_plain", "4 indexes, not partitioned", {"partitioned": False}),
    (
        "copy_plain_bare",
        "no index, not partitioned: the heap and WAL alone",
        {"partitioned": False, "indexes": ()},
    ),
]
