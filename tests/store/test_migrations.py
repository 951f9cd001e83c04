"""Migrations create the documented schema on SQLite and PostgreSQL, and undo it."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from store import schema
from store.database import Database
from store.models import Base

INTERFACE_TABLES = {
    "conversations",
    "messages",
    "answers",
    "citations",
    "feedback",
    "escalations",
    "model_versions",
    "slack_events",
    "activity_daily",
    "job_locks",
    "verified_answers",
}


def _tables(database: Database) -> set[str]:
    return set(inspect(database.engine).get_table_names()) - {"alembic_version"}


def test_upgrade_creates_every_documented_table(empty_database: Database) -> None:
    schema.upgrade(empty_database)

    assert _tables(empty_database) == INTERFACE_TABLES
    assert schema.current_revision(empty_database.engine) == schema.head_revision()


def test_queried_columns_are_indexed_or_unique(database: Database) -> None:
    inspector = inspect(database.engine)

    def unique_sets(table: str) -> set[tuple[str, ...]]:
        found = {tuple(c["column_names"]) for c in inspector.get_unique_constraints(table)}
        found |= {tuple(i["column_names"]) for i in inspector.get_indexes(table) if i["unique"]}
        return found

    def index_sets(table: str) -> set[tuple[str, ...]]:
        return {tuple(i["column_names"]) for i in inspector.get_indexes(table)}

    assert ("team_id", "channel_id", "thread_ts") in unique_sets("conversations")
    assert ("answer_id", "user_id") in unique_sets("feedback")
    assert ("status", "created_at") in index_sets("escalations")
    assert ("conversation_id", "created_at") in index_sets("messages")
    assert inspector.get_pk_constraint("slack_events")["constrained_columns"] == ["event_id"]


def test_foreign_keys_tie_rows_to_their_parents(database: Database) -> None:
    inspector = inspect(database.engine)
    referred = {
        (table, fk["referred_table"])
        for table in INTERFACE_TABLES
        for fk in inspector.get_foreign_keys(table)
    }
    assert referred >= {
        ("messages", "conversations"),
        ("answers", "messages"),
        ("answers", "model_versions"),
        ("citations", "answers"),
        ("feedback", "answers"),
        ("escalations", "conversations"),
    }


def test_models_and_migrations_agree(database: Database) -> None:
    # A model change without a migration (or the reverse) shows up as a diff here.
    with database.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


def test_downgrade_to_base_removes_everything_and_upgrade_restores_it(
    database: Database,
) -> None:
    schema.downgrade(database, "base")
    assert _tables(database) == set()
    assert schema.current_revision(database.engine) is None

    schema.upgrade(database)
    assert _tables(database) == INTERFACE_TABLES


def test_app_refuses_a_database_without_the_schema(empty_database: Database) -> None:
    with pytest.raises(schema.SchemaOutOfDate, match="Run `dispatchbot db upgrade`"):
        schema.ensure_schema_current(empty_database)


def test_app_refuses_a_database_that_is_behind(database: Database) -> None:
    schema.downgrade(database, "base")
    command.stamp(schema.alembic_config(database), "base")

    with pytest.raises(schema.SchemaOutOfDate, match="dispatchbot db upgrade"):
        schema.open_current_database(database.url.render_as_string(hide_password=False))


def test_app_refuses_a_database_from_a_newer_release(database: Database) -> None:
    with database.engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'ffff9999'")

    with pytest.raises(schema.SchemaOutOfDate, match="newer dispatchbot"):
        schema.ensure_schema_current(database)


def test_app_opens_a_current_database(database: Database) -> None:
    opened = schema.open_current_database(database.url.render_as_string(hide_password=False))
    try:
        assert _tables(opened) == INTERFACE_TABLES
    finally:
        opened.dispose()
