"""Fixtures: a trained, promoted model and a real server process, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pgmlops.services.commands import promote_command, train_command
from tests.e2e.serverproc import Server, start_server, stop_server


@pytest.fixture(scope="session")
def small_churn_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pgmlops.domain.demo_data import make_churn

    path = tmp_path_factory.mktemp("e2e") / "churn.csv"
    make_churn(3_000, seed=11).to_csv(path, index=False)
    return path


@pytest.fixture
def trained(ctx, small_churn_csv: Path) -> dict:
    """Two registered versions of `churn`; v1 is production."""
    kw = {"data": str(small_churn_csv), "target": "Exited", "model_name": "churn", "actor": "t"}
    v1 = train_command(ctx, **kw, overrides={"params": {"max_iter": 40}})
    promote_command(
        ctx, model_name="churn", version=v1["version"], force=False, reason=None, actor="t"
    )
    v2 = train_command(ctx, **kw, overrides={"params": {"max_iter": 60}, "seed": 1})
    return {"v1": v1["version"], "v2": v2["version"]}


@pytest.fixture
def server(ctx, trained, tmp_path: Path) -> Iterator[Server]:
    running = start_server(ctx.settings, tmp_path)
    yield running
    stop_server(running)
