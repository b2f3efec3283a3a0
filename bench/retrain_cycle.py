"""Retraining cycle time on 100,000 demo rows: read source + join feedback, train, decide.

Run: ``python bench/retrain_cycle.py [--rows N] [--feedback N] [--repeats R] [--backend
sqlite|postgresql|both]``. A production version is trained on a demo CSV with the default
spec (HistGradientBoosting + ONNX copy); `feedback` logged predictions get labels; then
``retrain(mode="forced")`` runs `repeats` times and the median of each phase is printed:
assembling the data (read the recorded source, join labelled feedback, validate), training
the candidate (fit, calibrate, evaluate, ONNX, profile, register) and the promotion decision.
PostgreSQL comes from PGMLOPS_TEST_POSTGRES_URL (default postgres@127.0.0.1:5432).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from pgmlops.config import Settings
from pgmlops.domain.demo_data import make_churn
from pgmlops.services.commands import promote_command, train_command
from pgmlops.services.context import Context
from pgmlops.services.retraining.runs import retrain
from pgmlops.services.serving.load import load_version
from pgmlops.services.serving.prediction import predict_records
from pgmlops.store.prediction_log.predictions import PredictionStore

PG_ADMIN = os.environ.get(
    "PGMLOPS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
PHASES = ("assemble", "train", "decide")


def _pg_database() -> tuple[str, Any]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from pgmlops.store.db import normalize_url

    name = f"pgmlops_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(normalize_url(PG_ADMIN), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    url = make_url(normalize_url(PG_ADMIN)).set(database=name).render_as_string(False)
    return url, drop


def _log_feedback(ctx: Context, version: int, rows: int) -> None:
    frame = make_churn(rows, seed=99)
    model = load_version(ctx, ctx.registry.get_version("churn", version))
    names = model.card.feature_schema.names
    records_in = frame[names].astype(object).where(frame[names].notna(), None).to_dict("records")
    _, records = predict_records(
        model, records_in, ctx.settings.serving, request_id=None, started=time.perf_counter()
    )
    store = PredictionStore(ctx.db)
    store.write_batch(records)
    store.add_feedback([(r.id, str(y)) for r, y in zip(records, frame["Exited"], strict=True)])


def _phases() -> tuple[dict[str, float], Any]:
    """A progress callback that turns the retrain's step messages into phase durations."""
    marks: dict[str, float] = {}

    def step(message: str) -> None:
        now = time.perf_counter()
        if message.startswith("retraining run"):
            marks["start"] = now
        elif message.startswith("preparing data"):
            marks.setdefault("train", now)
        elif message.startswith("candidate v"):
            marks["decide"] = now

    return marks, step


def run_backend(backend: str, rows: int, feedback: int, repeats: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="pgmlops-bench-"))
    drop = None
    if backend == "postgresql":
        url, drop = _pg_database()
    else:
        url = f"sqlite:///{folder / 'bench.db'}"
    ctx = Context(
        Settings(database_url=url, artifact_root=str(folder / "artifacts"), model_name="churn")
    )
    try:
        data = folder / "churn.csv"
        make_churn(rows, seed=7).to_csv(data, index=False)
        base = train_command(
            ctx, data=str(data), target="Exited", model_name="churn", actor="bench"
        )
        promote_command(
            ctx,
            model_name="churn",
            version=base["version"],
            force=False,
            reason=None,
            actor="bench",
        )
        if feedback:
            _log_feedback(ctx, base["version"], feedback)
        totals: list[float] = []
        phases: dict[str, list[float]] = {p: [] for p in PHASES}
        decisions: list[str] = []
        for _ in range(repeats):
            marks, step = _phases()
            started = time.perf_counter()
            outcome = retrain(ctx, "churn", mode="forced", actor="bench", progress=step)
            ended = time.perf_counter()
            totals.append(ended - started)
            phases["assemble"].append(marks["train"] - marks["start"])
            phases["train"].append(marks["decide"] - marks["train"])
            phases["decide"].append(ended - marks["decide"])
            decisions.append(str((outcome.run.decision or {}).get("decision")))
            training_rows = outcome.run.data["training_rows"]
        return {
            "backend": backend,
            "rows": rows,
            "feedback_rows": feedback,
            "training_rows": training_rows,
            "estimator": base["estimator"].rsplit(".", 1)[-1],
            "onnx": base["onnx"],
            "runs_seconds": [round(t, 2) for t in totals],
            "median_seconds": round(statistics.median(totals), 2),
            "median_phase_seconds": {p: round(statistics.median(v), 2) for p, v in phases.items()},
            "decisions": decisions,
        }
    finally:
        ctx.close()
        if drop is not None:
            drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--feedback", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    for backend in backends:
        result = run_backend(backend, args.rows, args.feedback, args.repeats)
        print(json.dumps(result))


if __name__ == "__main__":
    main()
