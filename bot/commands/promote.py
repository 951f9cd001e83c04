"""`dispatchbot promote` and `dispatchbot rollback`: which trained adapter answers."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer
from rich.console import Console

from bot.commands.common import command_database, settings_of, stderr
from serving.promotion import ActiveVersions, apply_promotion, apply_rollback

console = Console(soft_wrap=True)


def promote(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The model version (adapter) to promote."),
    canary: float | None = typer.Option(
        None,
        "--canary",
        min=0.01,
        max=0.99,
        help="Answer only this share of questions with it (0.1 = 10%), beside the promoted one.",
    ),
    force: bool = typer.Option(False, "--force", help="Promote without a passed evaluation gate."),
    as_json: bool = typer.Option(False, "--json", help="Print the versions now answering."),
) -> None:
    """Load an adapter into the model server(s) and make it answer.

    The bot picks it up within seconds, without a restart. Each answer records the adapter
    that wrote it, so `dispatchbot model report` compares versions. On the local vLLM the
    promoted version is merged into the base weights and gets a vLLM of its own (about 30 s),
    which answers as fast as the base model; a canary is loaded as an adapter.
    """
    settings = settings_of(ctx)
    with command_database(settings) as database:
        active = apply_promotion(
            settings, database, name, canary_share=canary, force=force, report=_progress
        )
    _report(active, as_json)


def rollback(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the versions now answering."),
) -> None:
    """Stop the canary if there is one; else return to the version promoted before.

    The version rolled back from is marked rejected; on the local vLLM its vLLM of merged
    weights stops once the switch is made.
    """
    settings = settings_of(ctx)
    with command_database(settings) as database:
        active = apply_rollback(settings, database, report=_progress)
    _report(active, as_json)


def _progress(step: str) -> None:
    stderr.print(f"• {step}", highlight=False)  # stdout stays the report (--json)


def _report(active: ActiveVersions, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(asdict(active)))
        return
    where = f" (merged weights, at {active.promoted_endpoint})" if active.promoted_endpoint else ""
    console.print(f"Answering: {active.promoted or 'the base model'}{where}", highlight=False)
    if active.canary:
        console.print(
            f"Canary: {active.canary} on {active.canary_share:.0%} of questions", highlight=False
        )
