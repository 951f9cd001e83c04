"""`dispatchbot promote` and `dispatchbot rollback`: which trained adapter answers."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer
from rich.console import Console

from bot.commands.common import EXIT_UNAVAILABLE, command_database, fail, settings_of
from serving.promotion import ActiveVersions, PromotionError, active_versions
from serving.promotion import promote as promote_version
from serving.promotion import rollback as roll_back
from store.settings import Settings

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
    that wrote it, so `dispatchbot model report` compares versions.
    """
    settings = settings_of(ctx)
    with command_database(settings) as database:
        try:
            with database.transaction() as session:
                promote_version(
                    session,
                    name,
                    endpoints=_endpoints(settings),
                    canary_share=canary,
                    force=force,
                    api_key=settings.llm_api_key.get_secret_value(),
                )
                active = active_versions(session)
        except PromotionError as error:
            fail(str(error), EXIT_UNAVAILABLE if "cannot reach" in str(error) else 2)
    _report(active, as_json)


def rollback(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print the versions now answering."),
) -> None:
    """Stop the canary if there is one; else return to the version promoted before.

    The version rolled back from is marked rejected.
    """
    settings = settings_of(ctx)
    with command_database(settings) as database:
        try:
            with database.transaction() as session:
                active = roll_back(
                    session,
                    endpoints=_endpoints(settings),
                    api_key=settings.llm_api_key.get_secret_value(),
                )
        except PromotionError as error:
            fail(str(error), EXIT_UNAVAILABLE if "cannot reach" in str(error) else 2)
    _report(active, as_json)


def _endpoints(settings: Settings) -> list[str]:
    return [settings.llm_base_url, *settings.llm_fallback_urls]


def _report(active: ActiveVersions, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(asdict(active)))
        return
    console.print(f"Answering: {active.promoted or 'the base model'}", highlight=False)
    if active.canary:
        console.print(
            f"Canary: {active.canary} on {active.canary_share:.0%} of questions", highlight=False
        )
