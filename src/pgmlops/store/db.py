"""Database connection, managed sessions and schema migrations."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DataError,
    NoSuchModuleError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.orm import Session, sessionmaker

from pgmlops.domain.redact import redact_secrets, redact_url
from pgmlops.errors import ConfigError, SchemaOutdatedError, StoreError, ValidationError

if TYPE_CHECKING:
    from alembic.config import Config

_MIGRATIONS = Path(__file__).with_name("migrations")


def normalize_url(url: str) -> str:
    """Map the `postgres://` / `postgresql://` URLs hosting platforms hand out to psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _unreachable(db: Database, exc: BaseException) -> StoreError:
    return StoreError(
        f"database {db.describe()} is unreachable: {first_line(exc)}",
        public="database is unreachable",
    )


def _on_sqlite_connect(dbapi_conn, _record) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN instead of pysqlite's implicit one.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


class Database:
    """One engine and its session factory; `session()` commits or rolls back as a unit."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        try:
            parsed = make_url(self.url)
        except ArgumentError as exc:
            raise ConfigError(
                f"PGMLOPS_DATABASE_URL is not a database URL: {redact_url(url)!r}"
            ) from exc
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ConfigError(
                f"PGMLOPS_DATABASE_URL: unsupported database {self.dialect!r} "
                "(use sqlite:///path.db or postgresql://user@host:port/db)"
            )
        if self.dialect == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs: dict = {"pool_pre_ping": True}
        if self.dialect == "postgresql":
            kwargs["connect_args"] = {"connect_timeout": 5}
        try:
            self.engine: Engine = create_engine(self.url, **kwargs)
        except (ArgumentError, NoSuchModuleError) as exc:
            raise ConfigError(
                f"PGMLOPS_DATABASE_URL {redact_url(self.url)!r}: {redact_secrets(str(exc))}"
            ) from exc
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _on_sqlite_connect)
            # SQLite takes its write lock at the first write; BEGIN IMMEDIATE takes it up
            # front so two promotions serialise instead of failing on lock upgrade.
            event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._checked = False
        self._check_lock = threading.Lock()

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def describe(self) -> str:
        return redact_url(self.url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: commit on success, roll back on any error, DB errors translated."""
        self.ensure_schema()
        try:
            with self._sessions() as session, session.begin():
                yield session
        except OperationalError as exc:
            raise _unreachable(self, exc) from exc
        except DataError as exc:
            # The database refused a value we were given (e.g. a NUL character in text on
            # PostgreSQL): bad input, not a broken database.
            raise ValidationError(f"invalid value: {first_line(exc)}") from exc
        except OverflowError as exc:
            # sqlite3 refuses integers beyond 64 bits itself, before SQLAlchemy sees a DB error.
            raise ValidationError(f"invalid value: {exc}") from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"database error: {first_line(exc)}", public="database error") from exc

    def ensure_schema(self) -> None:
        """Create the schema in an empty database; refuse a database left at an older revision."""
        if self._checked:
            return
        with self._check_lock:
            if self._checked:
                return
            current, head = self.revisions()
            if current is None and not self._has_tables():
                self.upgrade()
            elif current != head:
                raise SchemaOutdatedError(
                    f"database {self.describe()} is at schema revision {current or 'none'}, "
                    f"this pgmlops needs {head}: run `pgmlops db upgrade`",
                    public="database schema is outdated: run `pgmlops db upgrade`",
                )
            self._checked = True

    def _has_tables(self) -> bool:
        try:
            with self.engine.connect() as conn:
                return "registered_models" in inspect(conn).get_table_names()
        except OperationalError as exc:
            raise _unreachable(self, exc) from exc

    def revisions(self) -> tuple[str | None, str]:
        """(revision the database is at, revision this code expects)."""
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(self.alembic_config()).get_current_head()
        try:
            with self.engine.connect() as conn:
                current = MigrationContext.configure(conn).get_current_revision()
        except OperationalError as exc:
            raise _unreachable(self, exc) from exc
        return current, head or ""

    def upgrade(self) -> str:
        """Apply every pending migration; returns the new revision."""
        from alembic import command

        try:
            with self.engine.begin() as conn:
                cfg = self.alembic_config()
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except OperationalError as exc:
            raise _unreachable(self, exc) from exc
        self._checked = True
        return self.revisions()[0] or ""

    def alembic_config(self) -> Config:
        """Alembic's configuration for this database (benchmarks and tests migrate with it)."""
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        return cfg

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def dispose(self) -> None:
        self.engine.dispose()


def first_line(exc: BaseException) -> str:
    """The first line of a (database) error, for one-line messages."""
    orig = getattr(exc, "orig", None) or exc
    # A driver may echo the connection string it could not use.
    return redact_secrets((str(orig).strip().splitlines() or [type(orig).__name__])[0])
