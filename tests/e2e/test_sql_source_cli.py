"""`pgmlops train --data <database URL> --query`: no password printed, SQL errors in one line."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from pgmlops.cli import app as cli_app
from tests.conftest import fresh_postgres_database

pytestmark = pytest.mark.e2e

PASSWORD = "s3cret-never-shown"


@pytest.fixture
def source_url(tmp_path):
    """A PostgreSQL data source whose URL carries a password (trust auth ignores it)."""
    with fresh_postgres_database() as url:
        yield make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


def _train(tmp_path, monkeypatch, *args: str):
    monkeypatch.setenv("PGMLOPS_DATABASE_URL", f"sqlite:///{tmp_path / 'registry.db'}")
    monkeypatch.setenv("PGMLOPS_ARTIFACT_ROOT", str(tmp_path / "artifacts"))
    return CliRunner().invoke(cli_app, ["train", *args])


def test_a_source_url_password_is_never_printed(tmp_path, monkeypatch, source_url) -> None:
    result = _train(
        tmp_path, monkeypatch, "--data", source_url, "--query", "SELECT 1 AS a", "--target", "b"
    )
    assert result.exit_code != 0
    assert PASSWORD not in result.output and PASSWORD not in result.stderr
    assert "***" in result.output + result.stderr


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("SELEC nonsense", 'syntax error at or near "SELEC"'),
        ("SELECT * FROM no_such_table", 'relation "no_such_table" does not exist'),
    ],
)
def test_a_bad_query_is_one_line_naming_the_problem(
    tmp_path, monkeypatch, source_url, query: str, named: str
) -> None:
    result = _train(tmp_path, monkeypatch, "--data", source_url, "--query", query, "--target", "y")
    assert result.exit_code == 3, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: SQL data source failed: {named}"], result.stderr
    assert "internal error" not in result.output + result.stderr
    assert PASSWORD not in result.output + result.stderr
