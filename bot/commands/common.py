"""What every command needs: the settings for this run and a way to fail clearly."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import typer
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse
from rich.console import Console
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from typer.core import TyperGroup

from bot.services import Services, open_services
from retrieval.errors import server_failed
from store.database import Database
from store.errors import DispatchbotError, ErrorKind
from store.schema import open_current_database
from store.settings import Settings

stderr = Console(stderr=True, soft_wrap=True)  # one error, one line: easy to grep

EXIT_USAGE = 2  # bad input or configuration: the message says what to change
EXIT_UNAVAILABLE = 3  # a service we depend on is down or not set up yet
# The one place an error's kind becomes an exit status. A refusal (a state or rule that does
# not allow it) is, like bad input, something the caller must change before trying again.
EXIT_STATUS = {
    ErrorKind.BAD_INPUT: EXIT_USAGE,
    ErrorKind.UNAVAILABLE: EXIT_UNAVAILABLE,
    ErrorKind.REFUSED: EXIT_USAGE,
}


def settings_of(ctx: typer.Context) -> Settings:
    settings = ctx.find_root().obj
    assert isinstance(settings, Settings), "the root callback stores Settings in ctx.obj"
    return settings


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print an actionable error without a traceback and exit."""
    stderr.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def fail_with(error: DispatchbotError, more: str = "") -> NoReturn:
    """End the command on one of dispatchbot's errors, with the status of its kind; `more`
    adds what this command knows (what was kept, what to run next)."""
    fail(f"{error}{more}", EXIT_STATUS[error.kind])


class ReportingGroup(TyperGroup):
    """The root command group: any of dispatchbot's errors that a command lets through ends
    the run as `fail_with` does, so commands catch only what they add words to."""

    # Any: newer typer types the context with the click it vendors and does not export,
    # older typer with click's own.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except DispatchbotError as error:
            fail_with(error)


@contextmanager
def command_services(settings: Settings, *, wait_for_ingest: bool = False) -> Iterator[Services]:
    """`open_services` for a command: a store or collection that is not ready ends it clearly."""
    with (
        qdrant_errors_as_ours(),
        open_services(settings, wait_for_ingest=wait_for_ingest) as services,
    ):
        yield services


@contextmanager
def qdrant_errors_as_ours() -> Iterator[None]:
    """qdrant-client's errors, raised as StoreUnavailableError (which ends a command)."""
    try:
        yield
    except (ResponseHandlingException, UnexpectedResponse) as error:
        raise server_failed(error) from error


@contextmanager
def command_database(settings: Settings, *, current_schema: bool = True) -> Iterator[Database]:
    """The store for a command; a schema that is behind, or a server that is down, ends it.

    `current_schema=False` is for the commands that manage the schema itself.
    """
    try:
        database = (
            open_current_database(settings.database_url)
            if current_schema
            else Database(settings.database_url)
        )
    except OperationalError as error:
        fail(_unreachable(settings, error), EXIT_UNAVAILABLE)
    try:
        yield database
    except OperationalError as error:
        fail(_unreachable(settings, error), EXIT_UNAVAILABLE)
    finally:
        database.dispose()


def _unreachable(settings: Settings, error: OperationalError) -> str:
    shown = make_url(settings.database_url).render_as_string(hide_password=True)
    return (
        f"cannot use the database at {shown}: {error.orig}. "
        "Check DATABASE_URL and that the server is running."
    )
