"""Fixtures: a trained, promoted model and a real server process, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pgmlops.services.commands import promote_command, train_command
from tests.e2e.registry_copy import Snapshots
from tests.e2e.serverproc import Server, start_server, stop_server


@pytest.fixture(scope="session")
def small_churn_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pgmlops.domain.demo_data import make_churn

    path = tmp_path_factory.mktemp("e2e") / "churn.csv"
    make_churn(3_000, seed=11).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def snapshots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Snapshots]:
    """Registries trained once per session (tests/e2e/registry_copy.py), copied per test."""
    with ExitStack() as stack:
        yield Snapshots(stack, tmp_path_factory.mktemp("snapshots"))


@pytest.fixture
def trained(ctx, small_churn_csv: Path, snapshots: Snapshots) -> dict:
    """Two registered versions of `churn`; v1 is production (this test's own copy)."""

    def build(source) -> dict:
        kw = {"data": str(small_churn_csv), "target": "Exited", "model_name": "churn"}
        v1 = train_command(source, **kw, actor="t", overrides={"params": {"max_iter": 40}})
        promote_command(
            source, model_name="churn", version=v1["version"], force=False, reason=None, actor="t"
        )
        v2 = train_command(
            source, **kw, actor="t", overrides={"params": {"max_iter": 60}, "seed": 1}
        )
        return {"v1": v1["version"], "v2": v2["version"]}

    return dict(snapshots.restore(ctx, "trained", build))


@pytest.fixture
def server(ctx, trained, tmp_path: Path) -> Iterator[Server]:
    running = start_server(ctx.settings, tmp_path)
    yield running
    stop_server(running)


def price_record() -> dict:
    """A record for the `prices` model."""
    return {"area": 80.0, "rooms": 3.0, "district": "north"}


def train_and_promote(ctx, csv: Path, target: str, name: str, **overrides) -> int:
    kw = {"data": str(csv), "target": target, "model_name": name, "actor": "t"}
    version = train_command(ctx, **kw, overrides=overrides or None)["version"]
    promote_command(ctx, model_name=name, version=version, force=True, reason="test", actor="t")
    return version


@pytest.fixture(scope="session")
def prices_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A regression data set whose columns share nothing with churn's."""
    rng = np.random.default_rng(4)
    n = 800
    frame = pd.DataFrame(
        {
            "area": rng.uniform(30, 200, n).round(1),
            "rooms": rng.integers(1, 7, n).astype(float),
            "district": rng.choice(["north", "south", "east"], n),
        }
    )
    frame["price"] = (
        frame["area"] * 3.0 + frame["rooms"] * 10 + (frame["district"] == "north") * 50
    ) + rng.normal(0, 5, n)
    path = tmp_path_factory.mktemp("prices") / "prices.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture
def two_models(ctx, small_churn_csv: Path, prices_csv: Path, snapshots: Snapshots) -> None:
    """`churn` (binary) and `prices` (regression, other columns), v1 of each in production."""

    def build(source) -> None:
        train_and_promote(source, small_churn_csv, "Exited", "churn", params={"max_iter": 40})
        train_and_promote(source, prices_csv, "price", "prices")

    snapshots.restore(ctx, "two_models", build)


@pytest.fixture
def multi(ctx, two_models, tmp_path: Path) -> Iterator[Server]:
    """One server process serving both, `churn` the default."""
    running = start_server(
        ctx.settings, tmp_path, args=("--model-name", "churn", "--model-name", "prices")
    )
    yield running
    stop_server(running)
