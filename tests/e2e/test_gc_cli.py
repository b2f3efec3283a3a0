"""`pgmlops gc --predictions-older-than`: retention of the prediction log from the command line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pgmlops.domain.serving.partitions import period_of
from pgmlops.store.prediction_log.predictions import PredictionStore
from tests.e2e.test_cli import Cli, assert_one_line_error
from tests.integration.test_log_partitions import _records


@pytest.fixture
def cli(settings, tmp_path: Path) -> Cli:
    return Cli(settings, tmp_path)


def test_gc_drops_old_predictions_and_says_what_it_dropped(cli: Cli, ctx) -> None:
    old_time = datetime.now(UTC) - timedelta(days=200)
    store = PredictionStore(ctx.db)
    store.write_batch(_records(3, old_time) + _records(2, datetime.now(UTC)))

    result = cli("gc", "--predictions-older-than", "90d", "--json")
    assert result.returncode == 0, result.stderr
    log = json.loads(result.stdout)["predictions"]
    if ctx.db.is_postgres:
        assert period_of(old_time, "month").name in {p["name"] for p in log["partitions_dropped"]}
    else:
        assert log["rows_deleted"] == 3
    assert store.count("churn") == 2

    again = cli("gc", "--predictions-older-than", "90d")
    assert again.returncode == 0, again.stderr
    expected = "no prediction log partition" if ctx.db.is_postgres else "deleted 0 predictions"
    assert expected in again.stdout


@pytest.mark.parametrize("age", ["soon", "0d", "-5d"])
def test_gc_refuses_a_bad_age_in_one_line(cli: Cli, age: str) -> None:
    assert_one_line_error(
        cli("gc", f"--predictions-older-than={age}"), 2, "--predictions-older-than"
    )
