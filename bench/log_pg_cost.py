"""PostgreSQL's CPU per logged prediction row, for the writer's path and variants of it.

Run: ``.venv/bin/python bench/log_pg_cost.py [--rows 40000] [--rounds 3] [--only a,b]``.

A fresh database (``pgmlops_bench_log_pg_cost``, or PGMLOPS_BENCH_DB; dropped at the end) on
PGMLOPS_BENCH_POSTGRES_URL (default postgres@127.0.0.1:5432). Rows are what the serving path
logs for the demo churn model (features of `make_churn` rows, seed 7, time-ordered ids,
created_at now, no entity key), already encoded as the logging process holds them
(`EncodedRecord`). Each variant writes the same rows (fresh ids) in batches on a connection
of its own, in autocommit as the writer does; variants are interleaved per round, in a
rotating order. Per variant and round:

- backend CPU: utime+stime of the connection's backend (/proc/<pg_backend_pid()>/stat),
- WAL writer + background writer + checkpointer CPU over the same span (shared by every
  session of the server: other sessions' writes show there too),
- this process's CPU (the writer's side: encoding, the driver),
- wall time; all divided by the rows written. Medians of rounds, and every round.

PostgreSQL must run on this machine (its processes' /proc entries are read).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import struct
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from psycopg import sql
from psycopg.types.json import Json, Jsonb

from pgmlops.domain import demo_data
from pgmlops.domain.records import PredictionRecord
from pgmlops.services.prediction import prediction_ids
from pgmlops.store.db import Database
from pgmlops.store.predictions import PredictionStore, _insert_json_sql
from pgmlops.store.spill import EncodedRecord, as_record, json_array
from pgmlops.store.tables import PredictionRow

ADMIN_URL = os.environ.get(
    "PGMLOPS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DB_NAME = os.environ.get("PGMLOPS_BENCH_DB", "pgmlops_bench_log_pg_cost")
CLK = os.sysconf("SC_CLK_TCK")
AUX = ("walwriter", "background writer", "checkpointer")
COLUMNS = [c.name for c in PredictionRow.__table__.columns]
FEATURES = tuple(c for c in demo_data.COLUMNS if c not in ("CustomerId", demo_data.TARGET))


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def db_url() -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + DB_NAME


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def aux_pids() -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                cmd = fh.read().decode(errors="replace")
        except OSError:
            continue
        if cmd.startswith("postgres: ") and any(a in cmd for a in AUX):
            out.append(int(name))
    return out


def aux_cpu(pids: Sequence[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += cpu_s(pid)
    return total


def make_rows(n: int) -> list[dict[str, Any]]:
    """The feature dicts the API logs: one per demo churn row (seed 7)."""
    frame = demo_data.make_churn(n, seed=7)
    return orjson.loads(frame[list(FEATURES)].to_json(orient="records"))


def encode(features: list[dict[str, Any]]) -> list[EncodedRecord]:
    """Fresh ids, now, as the serving path makes its records, encoded as the pipe carries them."""
    now = datetime.now(UTC)
    ids = prediction_ids(len(features))
    out = []
    for k, f in enumerate(features):
        p = ((k * 7919) % 1000) / 1000
        r = PredictionRecord(
            ids[k], "default", 1, now, f, str(int(p > 0.5)), p, abs(p - 0.5) * 2, None, 0.4, None
        )
        out.append(EncodedRecord(orjson.dumps(r)))
    return out


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
    runs: list[dict[str, float]] = field(default_factory=list)


def insert_into(table: str) -> Callable[[psycopg.Connection, list[EncodedRecord]], None]:
    statement = _insert_json_sql().replace("INSERT INTO predictions ", f"INSERT INTO {table} ", 1)

    def write(conn: psycopg.Connection, batch: list[EncodedRecord]) -> None:
        conn.execute(statement, (Jsonb(batch, dumps=json_array),))  # type: ignore[arg-type]

    return write


def insert_json_doc() -> Callable[[psycopg.Connection, list[EncodedRecord]], None]:
    """The writer's INSERT with the document as json (json_to_recordset), not jsonb."""
    statement = _insert_json_sql().replace("jsonb_to_recordset(%s)", "json_to_recordset(%s)")

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
    statement = _insert_json_sql().split(" SELECT ", 1)[1]
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


def run_one(v: Variant, rows: list[Any]) -> dict[str, float]:
    if v.decoded:
        rows = [as_record(r) for r in rows]
    with psycopg.connect(db_url(), autocommit=True) as conn:
        for stmt in v.setup:
            conn.execute(stmt)
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        aux = aux_pids()
        conn.execute("SELECT 1")
        b0, a0, c0, t0 = cpu_s(pid), aux_cpu(aux), time.process_time(), time.perf_counter()
        for start in range(0, len(rows), v.batch):
            v.write(conn, rows[start : start + v.batch])
        wall = time.perf_counter() - t0
        b1, a1, c1 = cpu_s(pid), aux_cpu(aux), time.process_time()
    n = len(rows)
    return {
        "backend_us": (b1 - b0) / n * 1e6,
        "aux_us": (a1 - a0) / n * 1e6,
        "client_us": (c1 - c0) / n * 1e6,
        "wall_us": wall / n * 1e6,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=40_000, help="rows per variant per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", help="comma-separated variant names")
    ap.add_argument("--keep", action="store_true", help="keep the database")
    args = ap.parse_args()

    say(f"load average {os.getloadavg()}; database {DB_NAME}")
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB_NAME))
        )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB_NAME)))
    try:
        db = Database(db_url())
        db.ensure_schema()
        features = make_rows(args.rows)
        # The writer's own path once: it makes the partition for now() if none holds it.
        store = PredictionStore(db)
        store.write_batch(encode(features[:10]))
        store.close()
        with psycopg.connect(db_url(), autocommit=True) as conn:
            leaf = leaf_now(conn)
            twin(conn, "twin_full", with_time_index=True)
            twin(conn, "twin_notime", with_time_index=False)
            twin(conn, "twin_heap", with_time_index=False, keys=False)
        chosen = variants(leaf)
        if args.only:
            keep = set(args.only.split(","))
            chosen = [v for v in chosen if v.name in keep]
        # Warm-up: one batch each (plans, caches).
        for v in chosen:
            run_one(v, encode(features[: v.batch]))
        for rnd in range(args.rounds):
            k = rnd % len(chosen)
            for v in chosen[k:] + chosen[:k]:
                rows = encode(features)
                r = run_one(v, rows)
                v.runs.append(r)
                say(
                    f"round {rnd + 1} {v.name}: backend {r['backend_us']:.1f} µs/row, "
                    f"wal/bg/ckpt {r['aux_us']:.1f}, client {r['client_us']:.1f}, "
                    f"wall {r['wall_us']:.1f}; load {os.getloadavg()[0]:.2f}"
                )
        print()
        print(
            f"PostgreSQL CPU per logged row, {args.rows:,} rows per variant per round, "
            f"{args.rounds} rounds (medians; backend per round in brackets); "
            f"load average at end {os.getloadavg()}"
        )
        print()
        print(
            "| variant | what | backend µs/row | rounds | wal/bg/ckpt µs/row | "
            "client µs/row | wall µs/row |"
        )
        print("| --- | --- | ---: | --- | ---: | ---: | ---: |")
        for v in chosen:
            med = {k: statistics.median(r[k] for r in v.runs) for k in v.runs[0]}
            rounds = ", ".join(f"{r['backend_us']:.1f}" for r in v.runs)
            print(
                f"| {v.name} | {v.what} | {med['backend_us']:.1f} | {rounds} | "
                f"{med['aux_us']:.1f} | {med['client_us']:.1f} | {med['wall_us']:.1f} |"
            )
    finally:
        if not args.keep:
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(DB_NAME)
                    )
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
