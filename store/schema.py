"""Alembic, driven from code: upgrade, downgrade and the "is this database current?" check."""

from __future__ import annotations

from importlib.resources import files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine

from store.database import Database
from store.errors import Unavailable


class SchemaOutOfDate(Unavailable):
    """The database is behind (or ahead of) the code; the message says what to run."""


def alembic_config(database: Database | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(files("migrations")))
    if database is not None:
        # Hand the engine over directly: a URL string would need '%' escaping for configparser.
        config.attributes["engine"] = database.engine
    return config


def upgrade(database: Database, revision: str = "head") -> None:
    command.upgrade(alembic_config(database), revision)


def downgrade(database: Database, revision: str) -> None:
    command.downgrade(alembic_config(database), revision)


def head_revision() -> str:
    head = _scripts().get_current_head()
    if head is None:
        raise RuntimeError("no migrations found in the migrations package")
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def ensure_schema_current(database: Database) -> None:
    """Refuse to run against a database whose schema is not the one this code expects."""
    current = current_revision(database.engine)
    head = head_revision()
    if current == head:
        return
    where = database.display_url()
    if current is None:
        problem = f"The database at {where} has no dispatchbot tables yet."
    elif not _is_known_revision(current):
        problem = (
            f"The database at {where} was migrated by a newer dispatchbot (revision {current})."
        )
        raise SchemaOutOfDate(f"{problem} Upgrade dispatchbot to a release that knows it.")
    else:
        problem = (
            f"The database at {where} is at schema revision {current}; this code needs {head}."
        )
    raise SchemaOutOfDate(f"{problem} Run `dispatchbot db upgrade` first.")


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def _is_known_revision(revision: str) -> bool:
    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:
        return False


def open_current_database(url: str) -> Database:
    """The app's way in: a database whose schema matches this code, or a clear refusal."""
    database = Database(url)
    try:
        ensure_schema_current(database)
    except Exception:
        database.dispose()
        raise
    return database
