"""Alembic environment: runs against the engine dispatchbot hands over, or DATABASE_URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, Engine, text

from store.database import Database
from store.models import Base
from store.settings import Settings

target_metadata = Base.metadata

# Any fixed 64-bit number: the PostgreSQL advisory lock that one `db upgrade` at a time holds.
MIGRATION_LOCK = 0x646973706174  # "dispat"


def _engine() -> Engine:
    engine = context.config.attributes.get("engine")
    if engine is not None:
        return engine
    # Plain `alembic` from a developer's shell: same settings as the app.
    return Database(Settings().database_url).engine


def run_migrations_offline() -> None:
    context.configure(
        url=Settings().database_url,
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    with _engine().connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            _wait_for_other_upgrades(connection)
            context.run_migrations()


def _wait_for_other_upgrades(connection: Connection) -> None:
    """Several pods may run `db upgrade` at once (an init container per replica): on
    PostgreSQL the first takes the lock and migrates, the others wait for its commit, then
    find the schema current and do nothing. SQLite has one writer anyway."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
