"""Typer sub-commands of the `dispatchbot` CLI, one module per command group."""
