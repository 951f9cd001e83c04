"""`dispatchbot db ...`: create, migrate and inspect the conversation store."""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextlib import AbstractContextManager

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, inspect, select

from bot.commands.common import command_database, settings_of
from store import schema
from store.database import Database
from store.models import Base

app = typer.Typer(help="Create, migrate and inspect the conversation store.", no_args_is_help=True)
console = Console()


def _database(ctx: typer.Context) -> AbstractContextManager[Database]:
    return command_database(settings_of(ctx), current_schema=False)


@app.command()
def upgrade(
    ctx: typer.Context,
    revision: str = typer.Option("head", help="Target revision; the newest by default."),
) -> None:
    """Create the tables, or migrate them to the schema this version needs."""
    with _database(ctx) as database:
        schema.upgrade(database, revision)
        current = schema.current_revision(database.engine)
        console.print(f"Database {database.display_url()} is at revision {current}.")


@app.command()
def downgrade(
    ctx: typer.Context,
    revision: str = typer.Argument(..., help="Revision to go back to ('base' drops everything)."),
) -> None:
    """Undo migrations down to REVISION (data in dropped tables is lost)."""
    with _database(ctx) as database:
        schema.downgrade(database, revision)
        current = schema.current_revision(database.engine) or "base"
        console.print(f"Database {database.display_url()} is at revision {current}.")


@app.command()
def status(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object instead of a table."),
) -> None:
    """Show the schema revision, whether it is current, and row counts per table.

    Exits with status 1 when the database needs `dispatchbot db upgrade`.
    """
    with _database(ctx) as database:
        current = schema.current_revision(database.engine)
        head = schema.head_revision()
        present = set(inspect(database.engine).get_table_names())
        counts: dict[str, int | None] = {}
        with database.engine.connect() as connection:
            for table in Base.metadata.sorted_tables:
                counts[table.name] = (
                    connection.scalar(select(func.count()).select_from(table))
                    if table.name in present
                    else None
                )
        report = {
            "database": database.display_url(),
            "revision": current,
            "head": head,
            "current": current == head,
            "rows": counts,
        }
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_status(report)
    if current != head:
        raise typer.Exit(1)


def _print_status(report: Mapping[str, object]) -> None:
    state = (
        "[green]current[/]" if report["current"] else "[red]behind: run `dispatchbot db upgrade`[/]"
    )
    console.print(f"{report['database']}: revision {report['revision'] or 'none'} ({state})")
    table = Table("table", "rows")
    rows = report["rows"]
    assert isinstance(rows, dict)
    for name, count in rows.items():
        table.add_row(name, "missing" if count is None else str(count))
    console.print(table)
