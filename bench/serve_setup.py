"""serve_bench.py's set-up: a fresh PostgreSQL database, the demo model trained and promoted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgmlops.domain import demo_data

# Read in serve_machine before it clears PGMLOPS_* from the environment. A script that sets
# DB_NAME for itself sets it here (serve_setup.DB_NAME), where db_url and set_up read it.
from serve_machine import ADMIN_URL, DB_NAME, say

MODEL = "default"
# The demo data's feature columns: everything but the identifier and the target.
FEATURES = tuple(c for c in demo_data.COLUMNS if c not in ("CustomerId", demo_data.TARGET))

# -- database and set-up ------------------------------------------------------------------


def admin_engine():
    """An AUTOCOMMIT engine on the admin database, to create and drop the bench's database."""
    from sqlalchemy import create_engine

    from pgmlops.store.db import normalize_url

    return create_engine(normalize_url(ADMIN_URL), isolation_level="AUTOCOMMIT")


def db_url() -> str:
    from sqlalchemy.engine import make_url

    return make_url(ADMIN_URL).set(database=DB_NAME).render_as_string(False)


def recreate_database() -> None:
    from sqlalchemy import text

    engine = admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{DB_NAME}"'))
    engine.dispose()


def drop_database() -> None:
    from sqlalchemy import text

    engine = admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)'))
    engine.dispose()


def pgmlops_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "pgmlops"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "pgmlops.cli"]


def base_env(workdir: Path, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGMLOPS_")}
    env.update(
        PGMLOPS_DATABASE_URL=database_url,
        PGMLOPS_ARTIFACT_ROOT=str(workdir / "artifacts"),
        PGMLOPS_MODEL_NAME=MODEL,
    )
    return env


def run_cli(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 900) -> Any:
    proc = subprocess.run(
        [*pgmlops_cmd(), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pgmlops {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout) if "--json" in args else proc.stdout


@dataclass
class Setup:
    workdir: Path
    env: dict[str, str]
    version: int
    train_seconds: float
    records: list[dict[str, Any]]
    ctx: Any = None
    model_version: Any = None


def set_up(workdir: Path) -> Setup:
    from pgmlops.config import Settings
    from pgmlops.domain.demo_data import make_churn
    from pgmlops.services.context import Context

    recreate_database()
    frame = make_churn(20_000, seed=7)
    frame.to_csv(workdir / "churn.csv", index=False)
    records = [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
        for r in frame[list(FEATURES)].to_dict("records")
    ]
    env = base_env(workdir, db_url())
    t0 = time.perf_counter()
    trained = run_cli(
        ["train", "--data", "churn.csv", "--target", "Exited", "--json"], env, workdir
    )
    train_s = time.perf_counter() - t0
    promoted = run_cli(["promote", "--version", str(trained["version"]), "--json"], env, workdir)
    if promoted["action"] != "promote":
        raise RuntimeError(f"promotion did not happen: {promoted}")
    settings = Settings(
        database_url=env["PGMLOPS_DATABASE_URL"],
        artifact_root=env["PGMLOPS_ARTIFACT_ROOT"],
        model_name=MODEL,
    )
    ctx = Context(settings)
    version = ctx.registry.get_version(MODEL, trained["version"])
    if not (version.card.onnx.present and "onnx" in version.files):
        raise RuntimeError(f"v{version.version} has no ONNX copy: {version.card.onnx}")
    say(
        f"trained + promoted {MODEL} v{version.version} "
        f"({version.card.estimator.rsplit('.', 1)[-1]},"
        f" ONNX max |diff| {version.card.onnx.max_abs_diff:.2g}) in {train_s:.1f} s"
    )
    return Setup(workdir, env, version.version, train_s, records, ctx, version)
