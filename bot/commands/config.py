"""`dispatchbot config`: the effective settings, secrets masked."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from bot.commands.common import settings_of


def show_config(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object instead of a table."),
) -> None:
    """Show the settings in effect (environment, then .env, then defaults); secrets are masked."""
    described = settings_of(ctx).describe()
    if as_json:
        typer.echo(json.dumps(described, indent=2))
        return
    table = Table("variable", "value")
    for name, value in described.items():
        table.add_row(name, "" if value is None else str(value))
    Console().print(table)
