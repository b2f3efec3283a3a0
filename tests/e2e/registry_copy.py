"""A registry trained once per session and database kind, copied into each test's own store.

The e2e fixtures' registries (`trained`: two churn versions, each with cross-fitted reference
scores, an ONNX copy and signed files) were trained anew for every test that used them, and
that training was the bulk of the e2e tests' time. A snapshot is trained once per pytest
worker with the real train and promote commands; each test then gets a copy of it: its own
database (a PostgreSQL `CREATE DATABASE ... TEMPLATE`, or a copy of the SQLite file), its
own artifact folder and signing key file, so a test that tampers with one never touches
another's. Rows name artifacts by absolute path, so the copy's rows are pointed at the
copy's folder; a signature covers a file's model, version, role, digest and size, not its
path, so the signatures stay valid.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import make_url

from pgmlops.services.context import Context
from pgmlops.store.keys import default_key_file
from pgmlops.store.tables import ModelVersionRow
from tests.conftest import fresh_postgres_database, replace_postgres_database


@dataclass(frozen=True)
class Snapshot:
    """A trained registry at rest: its database, its artifact folder, what the build returned."""

    database_url: str
    artifact_root: Path
    built: Any


class Snapshots:
    """Builds each (name, database kind) snapshot on first use; restores it into a test's store."""

    def __init__(self, stack: ExitStack, folder: Path) -> None:
        self._stack = stack
        self._folder = folder
        self._made: dict[tuple[str, str, str], Snapshot] = {}

    def restore(self, ctx: Context, name: str, build: Callable[[Context], Any]) -> Any:
        """Put the snapshot `name` (made by `build` on first use) into ctx's empty store."""
        kind = ctx.db.dialect
        # Keyed by the other settings too: a test with its own settings gets its own snapshot.
        other = ctx.settings.model_dump_json(exclude={"database_url", "artifact_root"})
        if (name, kind, other) not in self._made:
            self._made[(name, kind, other)] = self._build(ctx, name, build)
        snap = self._made[(name, kind, other)]
        ctx.db.dispose()  # the copy replaces the database under the engine's feet
        target = make_url(ctx.db.url).database
        if kind == "sqlite":
            _copy_sqlite(make_url(snap.database_url).database, target)
        else:
            replace_postgres_database(target, make_url(snap.database_url).database)
        root = Path(ctx.settings.artifact_root)
        shutil.copytree(snap.artifact_root, root, dirs_exist_ok=True)
        key = default_key_file(str(snap.artifact_root))
        if key is not None and key.exists():  # none when the settings configure the key
            shutil.copy2(key, default_key_file(str(root)))  # copy2 keeps its 0600 mode
        _point_rows_at(ctx, snap.artifact_root, root)
        return snap.built

    def _build(self, ctx: Context, name: str, build: Callable[[Context], Any]) -> Snapshot:
        folder = self._folder / f"{name}-{ctx.db.dialect}-{len(self._made)}"
        folder.mkdir()
        if ctx.db.dialect == "sqlite":
            url = f"sqlite:///{folder / 'pgmlops.db'}"
        else:
            url = self._stack.enter_context(fresh_postgres_database())
        root = folder / "artifacts"
        settings = ctx.settings.model_copy(update={"database_url": url, "artifact_root": str(root)})
        source = Context(settings)
        try:
            built = build(source)
        finally:
            source.close()
        return Snapshot(database_url=url, artifact_root=root, built=built)


def _copy_sqlite(source: str, target: str) -> None:
    """A consistent copy through SQLite's backup API (the source is in WAL mode)."""
    for suffix in ("", "-wal", "-shm"):
        Path(target + suffix).unlink(missing_ok=True)
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def _point_rows_at(ctx: Context, old_root: Path, new_root: Path) -> None:
    """Rewrite the artifact paths in model_versions from the snapshot's folder to the copy's."""
    old = os.path.realpath(old_root) + os.sep
    new = os.path.realpath(new_root) + os.sep

    def moved(value: Any) -> Any:
        return None if value is None else json.loads(json.dumps(value).replace(old, new))

    with ctx.db.session() as session:
        for row in session.scalars(select(ModelVersionRow)):
            row.artifact_uri = row.artifact_uri.replace(old, new)
            row.files, row.card, row.source = moved(row.files), moved(row.card), moved(row.source)
