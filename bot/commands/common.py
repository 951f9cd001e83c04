"""What every command needs: the settings for this run and a way to fail clearly."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse
from rich.console import Console
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from bot.services import Services, open_services
from retrieval.errors import RetrievalError, StoreUnavailableError
from store.database import Database
from store.schema import SchemaOutOfDate, open_current_database
from store.settings import Settings

stderr = Console(stderr=True, soft_wrap=True)  # one error, one line: easy to grep

EXIT_USAGE = 2  # bad input or configuration: the message says what to change
EXIT_UNAVAILABLE = 3  # a service we depend on is down or not set up yet


def settings_of(ctx: typer.Context) -> Settings:
    settings = ctx.find_root().obj
    assert isinstance(settings, Settings), "the root callback stores Settings in ctx.obj"
    return settings


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print an actionable error without a traceback and exit."""
    stderr.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def command_services(settings: Settings, *, wait_for_ingest: bool = False) -> Iterator[Services]:
    """`open_services` for a command: a store or collection that is not ready ends it clearly."""
    try:
        with open_services(settings, wait_for_ingest=wait_for_ingest) as services:
            yield services
    except (SchemaOutOfDate, StoreUnavailableError) as error:
        fail(str(error), EXIT_UNAVAILABLE)
    except RetrievalError as error:
        fail(str(error))
    except (ResponseHandlingException, UnexpectedResponse) as error:
        fail(f"the Qdrant server failed the request: {error}", EXIT_UNAVAILABLE)


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
    except SchemaOutOfDate as error:
        fail(str(error), EXIT_UNAVAILABLE)
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
