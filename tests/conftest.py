"""Shared fixtures: every integration test runs on SQLite and on a real PostgreSQL server.

PostgreSQL comes from PGMLOPS_TEST_POSTGRES_URL (default: postgres@127.0.0.1:5432). Each test
gets its own database, cloned from a migrated template made once per session. When the server
is unreachable the PostgreSQL half is skipped loudly, unless PGMLOPS_REQUIRE_POSTGRES=1 (CI),
in which case the run fails — and it also fails if no PostgreSQL test passed at all.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PG_ADMIN_URL = os.environ.get(
    "PGMLOPS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_PG = os.environ.get("PGMLOPS_REQUIRE_POSTGRES") == "1"
# One OpenMP thread per process (this one and the servers and CLIs it starts): with two
# pytest-xdist workers, or a worker beside a server it started, scikit-learn's default of
# one thread per core put 4 spinning threads on 2 cores, and the first e2e fixtures were
# still fitting after four minutes (seen with py-spy and top; not timed by a script).
os.environ.setdefault("OMP_NUM_THREADS", "1")
_state = {"pg_passed": 0, "pg_seen": 0, "pg_error": None, "template": None}


def _admin_engine():
    from sqlalchemy import create_engine

    from pgmlops.store.db import normalize_url

    return create_engine(
        normalize_url(PG_ADMIN_URL), isolation_level="AUTOCOMMIT", pool_pre_ping=True
    )


def _pg_url(dbname: str) -> str:
    from sqlalchemy.engine import make_url

    from pgmlops.store.db import normalize_url

    return make_url(normalize_url(PG_ADMIN_URL)).set(database=dbname).render_as_string(False)


def _pg_template() -> str:
    """A migrated template database, created once per session."""
    if _state["template"] or _state["pg_error"]:
        if _state["pg_error"]:
            raise RuntimeError(_state["pg_error"])
        return _state["template"]
    from sqlalchemy import text

    from pgmlops.store.db import Database

    name = f"pgmlops_tmpl_{uuid.uuid4().hex[:10]}"
    try:
        engine = _admin_engine()
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        db = Database(_pg_url(name))
        db.upgrade()
        db.dispose()
    except Exception as exc:
        _state["pg_error"] = f"PostgreSQL at {PG_ADMIN_URL} unusable: {type(exc).__name__}: {exc}"
        raise RuntimeError(_state["pg_error"]) from exc
    _state["template"] = name
    return name


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _state["template"]:
        from sqlalchemy import text

        engine = _admin_engine()
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{_state["template"]}" WITH (FORCE)'))
        engine.dispose()
    # Counted from the reports, not session.items: under pytest-xdist the controller that
    # decides the exit status collects nothing and only sees the workers' reports.
    if REQUIRE_PG and _state["pg_seen"] and _state["pg_passed"] == 0:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter:
            reporter.write_line(
                "FAILED: PGMLOPS_REQUIRE_POSTGRES=1 but no PostgreSQL test passed", red=True
            )
        session.exitstatus = 1


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "postgresql" not in report.nodeid:
        return
    if report.when == "setup":
        _state["pg_seen"] += 1
    elif report.when == "call" and report.passed:
        _state["pg_passed"] += 1


def pytest_terminal_summary(terminalreporter) -> None:
    if _state["pg_error"]:
        terminalreporter.write_line(
            f"POSTGRESQL HALF SKIPPED: {_state['pg_error']}", red=True, bold=True
        )
    else:
        terminalreporter.write_line(f"PostgreSQL tests passed: {_state['pg_passed']}")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated, empty database of each kind for one test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'pgmlops.db'}"
        return
    with fresh_postgres_database() as url:
        yield url


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A migrated, empty PostgreSQL database cloned from the session's template; dropped after."""
    from sqlalchemy import text

    try:
        template = _pg_template()
    except RuntimeError as exc:
        if REQUIRE_PG:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    name = f"pgmlops_t_{uuid.uuid4().hex[:12]}"
    engine = _admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    engine.dispose()
    try:
        yield _pg_url(name)
    finally:
        # A fresh engine: the test may have restarted the server in between.
        engine = _admin_engine()
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


def replace_postgres_database(name: str, template: str) -> None:
    """Drop the database `name` and create it again as a copy of `template`."""
    from sqlalchemy import text

    engine = _admin_engine()
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    engine.dispose()


@pytest.fixture
def settings(db_url: str, tmp_path: Path):
    from pgmlops.config import Settings

    return Settings(
        database_url=db_url,
        artifact_root=str(tmp_path / "artifacts"),
        model_name="churn",
    )


@pytest.fixture
def ctx(settings):
    from pgmlops.services.context import Context

    context = Context(settings)
    yield context
    context.close()


@pytest.fixture(scope="session")
def churn_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pgmlops.domain.demo_data import make_churn

    path = tmp_path_factory.mktemp("data") / "churn.csv"
    make_churn(6_000, seed=3).to_csv(path, index=False)
    return path
