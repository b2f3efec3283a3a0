"""PostgreSQL's CPU per logged prediction row, for the writer's path and variants of it.

Run: ``.venv/bin/python bench/log_pg_cost.py [--rows 40000] [--rounds 3] [--only a,b] [--copy]``.
With ``--copy``: the writer's binary COPY into copies of the table that differ in indexes,
the features column's type or partitioning (bench/log_copy_variants.py), rows packed untimed.

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
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
from psycopg import sql

from log_copy_variants import COPY_VARIANTS, copy_into, make_table
from log_pg_variants import Variant, leaf_now, twin, variants
from pgmlops.domain import demo_data
from pgmlops.domain.registry.records import PredictionRecord
from pgmlops.services.serving.prediction import prediction_ids
from pgmlops.store.db import Database
from pgmlops.store.prediction_log.predictions import PredictionStore
from pgmlops.store.prediction_log.spill import EncodedRecord, as_record

ADMIN_URL = os.environ.get(
    "PGMLOPS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DB_NAME = os.environ.get("PGMLOPS_BENCH_DB", "pgmlops_bench_log_pg_cost")
CLK = os.sysconf("SC_CLK_TCK")
AUX = ("walwriter", "background writer", "checkpointer")
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


def run_one(v: Variant, rows: list[Any]) -> dict[str, float]:
    n = len(rows)
    if v.decoded:
        rows = [as_record(r) for r in rows]
    if v.pack is not None:
        rows = v.pack(rows)
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
    return {
        "backend_us": (b1 - b0) / n * 1e6,
        "aux_us": (a1 - a0) / n * 1e6,
        "client_us": (c1 - c0) / n * 1e6,
        "wall_us": wall / n * 1e6,
    }


def copy_variants(conn: psycopg.Connection) -> list[Variant]:
    """The COPY variants, their tables made; each writes its rows in one call (COPYs inside)."""
    out = []
    for name, what, table in COPY_VARIANTS:
        target = "predictions" if table is None else make_table(conn, name, **table)
        strip = table is not None and table.get("features", "jsonb") != "jsonb"
        pack, write = copy_into(target, strip=strip)
        out.append(Variant(name, what, write, batch=1 << 30, pack=pack))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=40_000, help="rows per variant per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", help="comma-separated variant names")
    ap.add_argument("--keep", action="store_true", help="keep the database")
    ap.add_argument("--copy", action="store_true", help="the binary COPY variants")
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
            if args.copy:
                chosen = copy_variants(conn)
            else:
                twin(conn, "twin_full", with_time_index=True)
                twin(conn, "twin_notime", with_time_index=False)
                twin(conn, "twin_heap", with_time_index=False, keys=False)
                chosen = variants(leaf)
        if args.only:
            keep = set(args.only.split(","))
            chosen = [v for v in chosen if v.name in keep]
        # Warm-up: one batch each (plans, caches).
        for v in chosen:
            run_one(v, encode(features[: min(v.batch, 500)]))
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
