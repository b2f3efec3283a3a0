"""End-to-end time of monitoring 1,000,000 logged predictions in PostgreSQL.

Run: ``python bench/monitor_speed.py [--rows N] [--labelled F] [--repeats R] [--keep]
[--reuse] [--cli-only]``.
Creates a fresh database (``pgmlops_bench_monitor``, or PGMLOPS_BENCH_DB, on
PGMLOPS_BENCH_POSTGRES_URL, default postgres@127.0.0.1:5432), trains and promotes a churn
model, logs N predictions of it (with a mild numeric shift, and feedback labels on a fraction
F of them, 2% by default) through the prediction store's batch write and feedback write, and
nothing else: no VACUUM or ANALYZE of its own, and autovacuum kept off these tables, as on a
freshly bulk-loaded database before autovacuum catches up. It then times the first
``run_monitor`` over the whole window on that never-analysed log, ``read_window`` alone,
``run_monitor`` again (median of R, each run stored) and the ``pgmlops monitor --json``
command once as a user would run it. Prints the breakdown, the peak RSS (this process's, and
the command's own) and the verdicts; drops the database at the end unless ``--keep``.
``--cli-only`` times only the command, R times. ``--worker`` first lets the worker's
summariser catch up with the log's closed hours, as a running `pgmlops worker` does hour by
hour (timed and reported on its own; it runs no ANALYZE), so the command then reads stored
hours; ``--cold-after`` then deletes the stored hours and times the command once more, as
on a log no worker has summarised.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from pgmlops.config import Settings
from pgmlops.domain.demo_data import make_churn
from pgmlops.domain.registry.records import PredictionRecord
from pgmlops.domain.schema import coerce_features
from pgmlops.domain.serving.partitions import period_of
from pgmlops.services.commands import promote_command, train_command
from pgmlops.services.context import Context
from pgmlops.services.monitoring.aggregates.hours import summarise_closed_hours
from pgmlops.services.monitoring.run import run_monitor
from pgmlops.services.promotion import version_engine
from pgmlops.store.db import normalize_url
from pgmlops.store.monitoring.prediction_windows import read_window
from pgmlops.store.prediction_log.partitions import PartitionStore
from pgmlops.store.prediction_log.predictions import PredictionStore

ADMIN_URL = os.environ.get(
    "PGMLOPS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DB_NAME = os.environ.get("PGMLOPS_BENCH_DB", "pgmlops_bench_monitor")
CHUNK = 100_000


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _admin():
    return create_engine(normalize_url(ADMIN_URL), isolation_level="AUTOCOMMIT")


def _db_url() -> str:
    return make_url(normalize_url(ADMIN_URL)).set(database=DB_NAME).render_as_string(False)


def _recreate_database() -> None:
    engine = _admin()
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{DB_NAME}"'))
    engine.dispose()


def _drop_database() -> None:
    engine = _admin()
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
    engine.dispose()


def _train(ctx: Context, workdir: Path) -> int:
    data = workdir / "churn.csv"
    make_churn(20_000, seed=1).to_csv(data, index=False)
    trained = train_command(
        ctx, data=str(data), target="Exited", model_name="churn", actor="bench", onnx=False
    )
    promote_command(
        ctx, model_name="churn", version=trained["version"], force=False, reason=None, actor="bench"
    )
    return int(trained["version"])


def _log_predictions(ctx: Context, version: int, rows: int, labelled: float) -> None:
    """Score demo customers and log them with times spread over the last day."""
    mv = ctx.registry.get_version("churn", version)
    card = mv.card
    engine = version_engine(ctx, mv)
    names = card.feature_schema.names
    store = PredictionStore(ctx.db)
    now = datetime.now(UTC)
    labels: list[tuple[str, str]] = []
    for start in range(0, rows, CHUNK):
        n = min(CHUNK, rows - start)
        frame = make_churn(n, seed=100 + start // CHUNK, numeric_shift=0.3)
        out = engine.predict_frame(coerce_features(frame, card.feature_schema))
        proba = out.proba
        predicted = out.predicted.tolist()
        features = frame[names].astype(object).where(frame[names].notna(), None)
        features = features.to_dict("records")
        truth = frame["Exited"].astype(str).tolist()
        records = []
        for i in range(n):
            p = float(proba[i])
            pid = str(uuid.uuid4())
            records.append(
                PredictionRecord(
                    id=pid,
                    model_name="churn",
                    version=version,
                    created_at=now - timedelta(seconds=86_000 * (1 - (start + i) / rows)),
                    features={k: _plain(v) for k, v in features[i].items()},
                    prediction=str(predicted[i]),
                    probability=p,
                    confidence=abs(p - 0.5) * 2.0,
                    output=None,
                    latency_ms=1.0,
                    request_id=None,
                )
            )
            if int((start + i + 1) * labelled) > int((start + i) * labelled):
                labels.append((pid, truth[i]))
        store.write_batch(records)
        _autovacuum_off(ctx)
        print(f"  logged {start + n:,} predictions", flush=True)
    for start in range(0, len(labels), 5_000):
        store.add_feedback(labels[start : start + 5_000])
    print(f"  {len(labels):,} feedback labels", flush=True)


def _autovacuum_off(ctx: Context) -> None:
    """Keep autovacuum off the log's tables: a partitioned table takes no storage options,
    so each leaf partition (created as rows arrive) gets it."""
    with ctx.db.engine.begin() as conn:
        leaves = conn.execute(
            text(
                "SELECT c.relname FROM pg_class c WHERE c.relkind = 'r' AND (c.relname = "
                "'feedback' OR c.oid IN (SELECT relid FROM pg_partition_tree('predictions') "
                "WHERE isleaf)) AND NOT coalesce('autovacuum_enabled=false' = ANY(c.reloptions), "
                "false)"
            )
        ).scalars()
        for name in list(leaves):
            conn.execute(text(f'ALTER TABLE "{name}" SET (autovacuum_enabled = false)'))


def _grow(ctx: Context, target: int) -> int:
    """Copy the logged rows until there are ``target``: new ids, a day earlier per copy."""
    partitions = PartitionStore(ctx.db)
    # Copies are inserted before the first one is read back: the originals are the rows of
    # the newest day (logged over 86,000 s), every copy at least a day older. One
    # transaction per copy: an open one keeps the partitions it first saw, not those
    # `cover` attaches meanwhile.
    with ctx.db.engine.connect() as conn:
        have = conn.execute(text("SELECT count(*) FROM predictions")).scalar_one()
        originals = conn.execute(
            text(
                "SELECT count(*) FROM predictions WHERE created_at > "
                "(SELECT max(created_at) FROM predictions) - interval '86400 seconds'"
            )
        ).scalar_one()
        k = -(-have // max(originals, 1)) - 1  # copies made by an earlier --grow-to
        newest = conn.execute(text("SELECT max(created_at) FROM predictions")).scalar_one()
        while have < target:
            k += 1
            # No DEFAULT partition: the copy's month(s) must exist before it is inserted.
            partitions.cover({period_of(newest - timedelta(days=k + d), "month") for d in (0, 1)})
            take = min(originals, target - have)
            have += take
            # md5 of (id, copy) gives each copy's id, so its labels follow it.
            conn.execute(
                text(
                    "INSERT INTO predictions (id, model_name, version, created_at, features, "
                    "prediction, probability, confidence, output, latency_ms, request_id) "
                    "SELECT md5(id::text || :k)::uuid, model_name, version, "
                    "created_at - make_interval(days => :k), features, prediction, probability, "
                    "confidence, output, latency_ms, request_id FROM "
                    "(SELECT * FROM predictions WHERE created_at > "
                    "(SELECT max(created_at) FROM predictions) - interval '86400 seconds' "
                    "ORDER BY id LIMIT :take) p"
                ),
                {"k": k, "take": take},
            )
            conn.execute(
                text(
                    "INSERT INTO feedback (prediction_id, label, created_at) "
                    "SELECT md5(f.prediction_id::text || :k)::uuid, f.label, f.created_at "
                    "FROM feedback f JOIN (SELECT id FROM predictions WHERE created_at > "
                    "(SELECT max(created_at) FROM predictions) - interval '86400 seconds' "
                    "ORDER BY id LIMIT :take) p "
                    "ON p.id = f.prediction_id WHERE f.superseded_at IS NULL"
                ),
                {"k": k, "take": take},
            )
            conn.commit()
            _autovacuum_off(ctx)
        return int(conn.execute(text("SELECT count(*) FROM predictions")).scalar_one())


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--labelled", type=float, default=0.02, help="fraction of predictions given a label"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--reuse", action="store_true", help="reuse a kept database")
    parser.add_argument(
        "--grow-to",
        type=int,
        default=None,
        help="copy the logged rows (and their labels) in SQL, a day earlier each time, until "
        "the log holds this many: large logs without scoring every row in Python",
    )
    parser.add_argument(
        "--worker",
        action="store_true",
        help="before timing, run the worker's summariser until the closed hours are stored",
    )
    parser.add_argument(
        "--cold-after",
        action="store_true",
        help="after the timed runs, delete the stored hours and time the command once more",
    )
    parser.add_argument(
        "--cli-only",
        action="store_true",
        help="only time `pgmlops monitor` (R times): no in-process runs inflating this process",
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="pgmlops-bench-"))
    artifacts = Path(os.environ.get("PGMLOPS_BENCH_ARTIFACTS", workdir / "artifacts"))
    settings = Settings(database_url=_db_url(), artifact_root=str(artifacts), model_name="churn")
    if not args.reuse:
        _recreate_database()
    ctx = Context(settings)
    try:
        if not args.reuse:
            started = time.perf_counter()
            version = _train(ctx, workdir)
            print(f"trained and promoted churn v{version} in {time.perf_counter() - started:.1f} s")
            started = time.perf_counter()
            _log_predictions(ctx, version, args.rows, args.labelled)
            print(f"logged {args.rows:,} predictions in {time.perf_counter() - started:.1f} s")
        else:
            version = ctx.registry.alias_version("churn", "production") or 1
        if args.grow_to:
            started = time.perf_counter()
            args.rows = _grow(ctx, args.grow_to)
            print(f"grew the log to {args.rows:,} rows in {time.perf_counter() - started:.1f} s")
        never = _never_analysed(ctx)
        if args.worker:
            _catch_up(ctx)
        if args.cli_only:
            state = "never analysed" if never else "already analysed"
            print(f"log {state} before the first `pgmlops monitor`")
            for _ in range(args.repeats):
                _time_cli(settings, args.rows, workdir)
            if args.cold_after:
                with ctx.db.engine.begin() as conn:
                    conn.execute(text("DELETE FROM log_summaries"))
                print("stored hours deleted: the next command scans every row of the window")
                _time_cli(settings, args.rows, workdir)
            return
        started = time.perf_counter()
        result = run_monitor(ctx, "churn", last=args.rows)
        first = time.perf_counter() - started
        state = "never analysed" if never else "already analysed"
        print(f"run_monitor, first run on a log {state}: {first:.2f} s")
        _time_read(ctx, version, args.rows)
        times = []
        for run in range(args.repeats):
            started = time.perf_counter()
            result = run_monitor(ctx, "churn", last=args.rows)
            times.append(time.perf_counter() - started)
            print(f"run_monitor {run + 1}: {times[-1]:.2f} s ({result.window['rows']:,} rows)")
        print(f"run_monitor median: {statistics.median(times):.2f} s")
        print(f"peak RSS of this process: {_peak_rss_mb():.0f} MB")
        print(f"dataset drift: {result.dataset_drift} ({result.drift.reason})")
        print(f"drifted: {', '.join(result.drift.drifted_features) or 'none'}")
        print(f"labelled rows: {result.labelled_performance['n_labels']:,}")
        for reason in result.reasons:
            print(f"  reason: {reason}")
        _time_cli(settings, args.rows, workdir)
    finally:
        ctx.close()
        if not args.keep:
            _drop_database()


def _catch_up(ctx: Context) -> None:
    """What a running worker does over its ticks: store every closed hour of the log."""
    started = time.perf_counter()
    hours = 0
    while stored := summarise_closed_hours(ctx, "churn"):
        hours += stored
    seconds = time.perf_counter() - started
    with ctx.db.engine.connect() as conn:
        rows = conn.execute(text("SELECT coalesce(sum(rows), 0) FROM log_summaries")).scalar_one()
    print(
        f"worker summariser: {hours:,} hours ({int(rows):,} rows) stored in {seconds:.1f} s "
        f"({int(rows) / max(seconds, 1e-9):,.0f} rows/s)"
    )


def _never_analysed(ctx: Context) -> list[str]:
    """The log's tables PostgreSQL has no statistics for (reltuples -1 before an ANALYZE)."""
    with ctx.db.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT relname FROM pg_class WHERE (relname = 'feedback' OR oid IN "
                "(SELECT relid FROM pg_partition_tree('predictions'))) AND reltuples < 0"
            )
        )
        return [r[0] for r in rows]


def _time_read(ctx: Context, version: int, rows: int) -> None:
    card = ctx.registry.get_version("churn", version).card
    columns = [(f.name, f.kind) for f in card.feature_schema.features]
    started = time.perf_counter()
    window = read_window(ctx.db, "churn", version, columns, last=rows)
    print(f"read_window alone: {time.perf_counter() - started:.2f} s for {len(window):,} rows")


def _time_cli(settings: Settings, rows: int, workdir: Path) -> None:
    env = {
        **os.environ,
        "PGMLOPS_DATABASE_URL": settings.database_url,
        "PGMLOPS_ARTIFACT_ROOT": settings.artifact_root,
    }
    exe = Path(sys.executable).with_name("pgmlops")
    cmd = [str(exe), "monitor", "--model-name", "churn", "--last", str(rows), "--json"]
    # GNU time execs the command from its own small image: a child forked from this process
    # (large after --worker) counts this process's pages in its peak RSS before its exec.
    gnu_time = Path("/usr/bin/time")
    rss_file = workdir / "monitor.rss"
    if gnu_time.exists():
        cmd = [str(gnu_time), "-f", "%M %U %S", "-o", str(rss_file), *cmd]
    # Output to files, not pipes: wait4 below must not wait on a child blocked on a full pipe.
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(cmd, env=env, cwd=workdir, stdout=out, stderr=err)
        _, status, own = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode(errors="replace")
    code = child.returncode
    state = "ok" if code == 0 else f"exit {code}: {stderr.strip()}"
    print(f"`pgmlops monitor --last {rows} --json` end to end: {seconds:.2f} s ({state})")
    if gnu_time.exists():
        kb, user, system = rss_file.read_text().split()[-3:]
        print(f"peak RSS of this `pgmlops monitor`: {int(kb) / 1024:.0f} MB (GNU time)")
        print(f"CPU of this `pgmlops monitor`: {float(user) + float(system):.1f} s")
    else:
        print(f"peak RSS of this `pgmlops monitor`: {own.ru_maxrss / 1024:.0f} MB (wait4)")
        print(f"CPU of this `pgmlops monitor`: {own.ru_utime + own.ru_stime:.1f} s")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"CPU of `pgmlops monitor` processes so far: {usage.ru_utime + usage.ru_stime:.1f} s")


if __name__ == "__main__":
    main()
