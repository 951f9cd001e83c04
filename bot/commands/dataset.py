"""`dispatchbot dataset ...`: training data for the next adapter, from the store."""

from __future__ import annotations

import typer

app = typer.Typer(help="Training data for the next adapter, from the store.", no_args_is_help=True)
