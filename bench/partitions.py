"""The partitioned prediction log: sustained insert rate, and gc over 100 partitions.

Run: ``nice -n 10 python bench/partitions.py [--rows N] [--rounds R] [--out FILE]``.

Insert rate: two fresh databases on PGMLOPS_BENCH_POSTGRES_URL (default
postgres@127.0.0.1:5432), both migrated to head; in the second the log is taken back to the
unpartitioned table of migration 0001 (downgrade, then stamped at head so pgmlops accepts
it). Each round writes N demo predictions (10 features each) through
``PredictionStore.write_batch`` in batches of 500 — the serving writer's statement and batch
size — into one and then the other, alternating which goes first; rows/s per round and the
same-round ratio. Migration: a database at 0001 with M rows over the last 100 days (made
in SQL), timed ``pgmlops db upgrade`` to the partitioned table. gc: a database with daily
partitions, 100 of them older than 90 days holding K rows each (K = 100 and K = 2,000),
timed ``drop_old_predictions(90 days)``: the time should not grow with K. Writes a
Markdown table to --out.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from pgmlops.config import Settings
from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.registry.records import PredictionRecord
from pgmlops.domain.serving.partitions import TimeRange, period_of
from pgmlops.services.context import Context
from pgmlops.services.retention import drop_old_predictions
from pgmlops.services.serving.prediction import prediction_ids
from pgmlops.store.db import Database, normalize_url
from pgmlops.store.prediction_log.partitions import PartitionStore
from pgmlops.store.prediction_log.predictions import PredictionStore

ADMIN_URL = os.environ.get(
    "PGMLOPS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BATCH = 500


def _admin():
    return create_engine(normalize_url(ADMIN_URL), isolation_level="AUTOCOMMIT")


def _url(name: str) -> str:
    return make_url(normalize_url(ADMIN_URL)).set(database=name).render_as_string(False)


def _fresh(name: str) -> str:
    engine = _admin()
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    db = Database(_url(name))
    db.upgrade()
    db.dispose()
    return _url(name)


def _drop(name: str) -> None:
    engine = _admin()
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def _unpartition(url: str) -> None:
    """Back to 0001's plain table, stamped at head so the store writes into it."""
    from alembic import command

    db = Database(url)
    head = db.revisions()[1]
    with db.engine.begin() as conn:
        cfg = db.alembic_config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})
        assert (
            conn.execute(
                text("SELECT relkind FROM pg_class WHERE relname = 'predictions'")
            ).scalar()
            == "r"
        )
    db.dispose()


def _template(n: int) -> list[PredictionRecord]:
    frame = make_churn(n, seed=7).drop(columns=["CustomerId", "Exited"])
    now = datetime.now(UTC)
    rows = frame.to_dict("records")
    return [
        PredictionRecord("", "churn", 1, now, row, "0", 0.2, 0.6, None, 0.3, None) for row in rows
    ]


def _write(store: PredictionStore, template: list[PredictionRecord]) -> float:
    """Rows/s writing the template once with fresh ids (ids made outside the clock)."""
    ids = prediction_ids(len(template))
    now = datetime.now(UTC)
    records = [replace(r, id=i, created_at=now) for r, i in zip(template, ids, strict=True)]
    started = time.perf_counter()
    for start in range(0, len(records), BATCH):
        store.write_batch(records[start : start + BATCH])
    return len(records) / (time.perf_counter() - started)


def insert_rate(rows: int, rounds: int) -> dict:
    names = {"partitioned": f"pgmlops_bench_part_{uuid.uuid4().hex[:6]}"}
    names["unpartitioned"] = names["partitioned"].replace("part_", "flat_")
    urls = {k: _fresh(v) for k, v in names.items()}
    _unpartition(urls["unpartitioned"])
    stores = {k: PredictionStore(Database(u)) for k, u in urls.items()}
    template = _template(rows)
    try:
        for store in stores.values():  # warm: connection, catalog caches
            _write(store, template[:BATCH])
        per_round = []
        for i in range(rounds):
            order = ["partitioned", "unpartitioned"][:: 1 if i % 2 == 0 else -1]
            got = {k: _write(stores[k], template) for k in order}
            got["ratio"] = got["partitioned"] / got["unpartitioned"]
            per_round.append(got)
            print(
                f"round {i + 1}: partitioned {got['partitioned']:,.0f} rows/s, "
                f"unpartitioned {got['unpartitioned']:,.0f} rows/s, ratio {got['ratio']:.3f}",
                flush=True,
            )
    finally:
        for store in stores.values():
            store.close()
            store.db.dispose()
        for name in names.values():
            _drop(name)
    return {
        "rows": rows,
        "rounds": per_round,
        "median": {
            k: statistics.median(r[k] for r in per_round)
            for k in ("partitioned", "unpartitioned", "ratio")
        },
    }


def gc_time(per_partition: int, partitions: int = 100) -> dict:
    name = f"pgmlops_bench_gc_{uuid.uuid4().hex[:6]}"
    url = _fresh(name)
    settings = Settings(database_url=url, artifact_root="/tmp/pgmlops-bench-artifacts")
    settings = settings.model_copy(
        update={"serving": settings.serving.model_copy(update={"log_partition_period": "day"})}
    )
    ctx = Context(settings)
    try:
        first = period_of(datetime.now(UTC) - timedelta(days=91 + partitions), "day")
        days = [
            TimeRange(first.lo + timedelta(days=d), first.lo + timedelta(days=d + 1))
            for d in range(partitions)
        ]
        PartitionStore(ctx.db).cover(days)
        store = PredictionStore(ctx.db, partition_period="day")
        template = _template(per_partition)
        for day in days:
            ids = prediction_ids(per_partition)
            at = day.lo + timedelta(hours=12)
            batch = [replace(r, id=i, created_at=at) for r, i in zip(template, ids, strict=True)]
            for start in range(0, len(batch), 5_000):
                store.write_batch(batch[start : start + 5_000])
        store.close()
        with ctx.db.engine.begin() as conn:
            total = conn.execute(text("SELECT count(*) FROM predictions")).scalar()
        started = time.perf_counter()
        report = drop_old_predictions(ctx, timedelta(days=90))
        seconds = time.perf_counter() - started
        dropped = len(report["partitions_dropped"])
        print(
            f"gc: {dropped} partitions of {per_partition:,} rows ({total:,} rows in the log) "
            f"dropped in {seconds:.2f} s",
            flush=True,
        )
        return {"per_partition": per_partition, "rows": total, "dropped": dropped, "s": seconds}
    finally:
        ctx.close()
        _drop(name)


def migration_time(rows: int) -> dict:
    """Seconds of migration 0002 on a log of `rows` rows spread over 100 days."""
    from alembic import command

    name = f"pgmlops_bench_mig_{uuid.uuid4().hex[:6]}"
    engine = _admin()
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    db = Database(_url(name))
    try:
        with db.engine.begin() as conn:
            cfg = db.alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
            conn.execute(
                text(
                    "INSERT INTO predictions SELECT gen_random_uuid(), 'churn', 1, "
                    "now() - (i::float / :n) * interval '100 days', jsonb_build_object("
                    "'CreditScore', 600 + i % 200, 'Geography', 'France', 'Gender', 'Male', "
                    "'Age', 20 + i % 50, 'Tenure', i % 10, 'Balance', i * 1.5, "
                    "'NumOfProducts', 1 + i % 3, 'HasCrCard', i % 2, 'IsActiveMember', i % 2, "
                    "'EstimatedSalary', 50000 + i % 1000), '0', 0.2, 0.6, NULL, 0.3, NULL "
                    "FROM generate_series(1, :n) i"
                ),
                {"n": rows},
            )
        started = time.perf_counter()
        db.upgrade()
        seconds = time.perf_counter() - started
        print(f"migration 0002: {rows:,} rows in {seconds:.1f} s", flush=True)
        return {"rows": rows, "s": seconds}
    finally:
        db.dispose()
        _drop(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--migrate-rows", type=int, default=500_000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/partitions.md"))
    args = parser.parse_args()
    rate = insert_rate(args.rows, args.rounds)
    gcs = [gc_time(100), gc_time(2_000)]
    migration = migration_time(args.migrate_rows)
    m = rate["median"]
    lines = [
        "# Partitioned prediction log (bench/partitions.py)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} cores, "
        f"`python bench/partitions.py --rows {args.rows} --rounds {args.rounds} "
        f"--migrate-rows {args.migrate_rows}`",
        "",
        f"## Sustained insert rate, {args.rows:,} rows a round through "
        f"`PredictionStore.write_batch` ({BATCH}-row batches)",
        "",
        "| round | partitioned (rows/s) | unpartitioned (rows/s) | ratio |",
        "| --- | --- | --- | --- |",
    ]
    for i, r in enumerate(rate["rounds"], 1):
        lines.append(
            f"| {i} | {r['partitioned']:,.0f} | {r['unpartitioned']:,.0f} | {r['ratio']:.3f} |"
        )
    lines.append(
        f"| median | **{m['partitioned']:,.0f}** | {m['unpartitioned']:,.0f} | "
        f"**{m['ratio']:.3f}** |"
    )
    lines += [
        "",
        "## gc: `drop_old_predictions(90 days)` over 100 daily partitions",
        "",
        "| rows per partition | rows in the log | partitions dropped | seconds |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        f"| {g['per_partition']:,} | {g['rows']:,} | {g['dropped']} | {g['s']:.2f} |" for g in gcs
    ]
    lines += [
        "",
        "## Migration 0002 (`pgmlops db upgrade`) on a populated log",
        "",
        f"{migration['rows']:,} rows over 100 days (4 months with rows, 2 ahead): "
        f"**{migration['s']:.1f} s** ({migration['s'] / migration['rows'] * 1e6:.1f} s per "
        "million rows)",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
