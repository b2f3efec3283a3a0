"""CPU per row of the shadow thread's scoring call, by how many rows one call scores.

Run: ``.venv/bin/python bench/shadow_batch_cost.py [--rows 400] [--repeats 5]``. Trains the
demo churn model (5,000 rows, ONNX) in a temporary SQLite registry, validates records the way
/predict does, then times ``predict_records`` (what ShadowScorer calls) on batches of 1, 10,
40 and 100 rows with this process's CPU clock (medians of the repeats): why the shadow
thread lets jobs gather for ``_SHADOW_LINGER_S`` instead of scoring each request alone.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import orjson

from pgmlops.api.request_body import validate_body
from pgmlops.config import Settings
from pgmlops.domain.demo_data import make_churn
from pgmlops.services.commands import train_command
from pgmlops.services.context import Context
from pgmlops.services.serving.load import load_version
from pgmlops.services.serving.prediction import predict_records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pgmlops-shadow-batch-") as tmp:
        root = Path(tmp)
        make_churn(5_000, seed=7).to_csv(root / "churn.csv", index=False)
        settings = Settings(
            database_url=f"sqlite:///{root / 'm.db'}",
            artifact_root=str(root / "artifacts"),
            model_name="churn",
        )
        ctx = Context(settings)
        try:
            trained = train_command(
                ctx, data=str(root / "churn.csv"), target="Exited", model_name="churn", actor="b"
            )
            model = load_version(ctx, ctx.registry.get_version("churn", trained["version"]))
        finally:
            ctx.close()
        records = make_churn(args.rows, seed=1).drop(columns=["Exited", "CustomerId"])
        rows, _ = validate_body(model, orjson.dumps(records.to_dict("records")), args.rows)
        print(f"engine: {model.engine.name}; load average {Path('/proc/loadavg').read_text()[:15]}")
        for size in (1, 10, 40, 100):
            per_row = []
            for _ in range(args.repeats):
                started = time.process_time()
                for i in range(0, len(rows), size):
                    predict_records(
                        model,
                        rows[i : i + size],
                        settings.serving,
                        request_id=None,
                        started=time.perf_counter(),
                    )
                per_row.append((time.process_time() - started) / len(rows) * 1e6)
            print(f"{size:>4} rows per call: {statistics.median(per_row):6.1f} CPU µs per row")


if __name__ == "__main__":
    main()
