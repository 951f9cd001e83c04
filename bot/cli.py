"""The `dispatchbot` command line: one Typer app; each command group lives in bot/commands."""

from __future__ import annotations

import logging

import typer
from pydantic import ValidationError

from bot.commands import (
    ask,
    config,
    dataset,
    db,
    docs,
    documents,
    escalations,
    evaluate,
    gaps,
    learn,
    model,
    promote,
    retention,
    run,
    slack_docs,
    train,
    verified,
)
from bot.commands import retrieval as retrieval_commands
from bot.commands.common import ReportingGroup, fail
from bot.logs import configure_logging
from store.settings import Settings

app = typer.Typer(
    name="dispatchbot",
    cls=ReportingGroup,
    help="dispatchbot: answers dispatch and service-ticket questions in Slack from current policy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.add_typer(model.app, name="model")
app.command("config")(config.show_config)
app.command("ingest")(retrieval_commands.ingest)
app.command("search")(retrieval_commands.search)
app.command("ask")(ask.ask)
app.command("run")(run.run)
app.add_typer(documents.app, name="documents")
app.add_typer(evaluate.app, name="evaluate")
app.add_typer(escalations.app, name="escalations")
app.add_typer(verified.app, name="verified")
app.command("gaps")(gaps.gaps)
app.add_typer(dataset.app, name="dataset")
app.add_typer(retention.app, name="retention")
app.command("train")(train.train)
app.command("promote")(promote.promote)
app.command("rollback")(promote.rollback)
app.command("learn")(learn.learn)
app.command("slack-docs")(slack_docs.slack_docs)
app.command("docs")(docs.docs)


@app.callback()
def main(
    ctx: typer.Context,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level."),
) -> None:
    """Read settings from the environment (and .env) once for the whole run."""
    try:
        settings = Settings()
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in issue['loc']).upper()}: {issue['msg']}"
            for issue in error.errors()
        )
        fail(f"invalid settings: {problems}. Fix the environment variable or .env entry.")
    configure_logging(logging.DEBUG if verbose else settings.log_level.upper(), settings.log_format)
    if not verbose:
        # Alembic narrates every connection at INFO; the commands print their own outcome.
        logging.getLogger("alembic").setLevel(logging.WARNING)
    ctx.obj = settings
