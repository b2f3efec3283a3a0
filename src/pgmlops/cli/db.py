"""`pgmlops db upgrade` and `pgmlops db current`: schema migrations."""

from __future__ import annotations

import typer

from pgmlops.cli.options import ConfigOpt, handled, open_context

db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)


@db_app.command("upgrade")
@handled
def db_upgrade(config: ConfigOpt = None) -> None:
    """Apply pending schema migrations."""
    ctx = open_context(config)
    before, _head = ctx.db.revisions()
    after = ctx.db.upgrade()
    if before == after:
        typer.echo(f"{ctx.db.describe()}: schema already at {after}")
    else:
        typer.echo(f"{ctx.db.describe()}: schema {before or 'empty'} -> {after}")


@db_app.command("current")
@handled
def db_current(config: ConfigOpt = None) -> None:
    """Show the schema revision of the database and the one this pgmlops needs."""
    ctx = open_context(config)
    current, head = ctx.db.revisions()
    typer.echo(f"{ctx.db.describe()}: at {current or 'empty'}, code expects {head}")


def register(app: typer.Typer) -> None:
    """Add the `db` command group to the main app."""
    app.add_typer(db_app, name="db")
