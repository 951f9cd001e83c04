"""`dispatchbot retention purge` as an operator runs it, against a SQLite store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner, Result

from bot.cli import app
from store import repository, schema
from store.database import Database
from store.models import ActivityDaily, Conversation, EscalationTrigger
from store.types import utcnow


@pytest.fixture
def cli_env(tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)  # no stray .env from wherever the tests run
    return {
        "DATABASE_URL": sqlite_url,
        "DISPATCHBOT_DATA_DIR": str(tmp_path / "data"),
        "QDRANT_URL": "",
        "COLUMNS": "200",
    }


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Database]:
    """Three threads: one 100 days quiet, one 100 days quiet but escalated, one from today."""
    database = Database(sqlite_url)
    schema.upgrade(database)
    long_ago = utcnow() - timedelta(days=100)
    with database.transaction() as session:
        for thread_ts in ("old", "old-escalated", "today"):
            conversation = repository.find_or_open_conversation(
                session, team_id="T1", channel_id="C1", thread_ts=thread_ts, user_id="U1"
            )
            question = repository.record_user_message(
                session, conversation, text="who approves a 30k lb load?", user_id="U1"
            )
            if thread_ts != "today":
                conversation.started_at = question.created_at = long_ago
            if thread_ts == "old-escalated":
                repository.open_escalation(session, conversation, trigger=EscalationTrigger.ASKED)
    yield database
    database.dispose()


def _purge(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(app, ["retention", "purge", *args], env=env)


def _threads(database: Database) -> set[str]:
    with database.transaction() as session:
        return set(session.scalars(select(Conversation.thread_ts)))


def test_a_dry_run_shows_what_would_go_and_deletes_nothing(
    cli_env: dict[str, str], store: Database
) -> None:
    result = _purge(cli_env, "--older-than", "30", "--dry-run")

    assert result.exit_code == 0, result.output
    assert "would delete" in result.stdout
    assert "Kept 1 older conversation(s) with an open or claimed escalation" in result.stdout
    assert "Dry run: nothing was changed." in result.stdout
    assert _threads(store) == {"old", "old-escalated", "today"}


def test_json_reports_what_went_and_what_was_kept(cli_env: dict[str, str], store: Database) -> None:
    result = _purge(cli_env, "--older-than", "30", "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dry_run"] is False
    assert report["older_than_days"] == 30
    assert report["removed"] == {
        "conversations": 1,
        "messages": 1,
        "answers": 0,
        "citations": 0,
        "feedback": 0,
        "escalations": 0,
        "slack_events": 0,
    }
    assert report["kept_unresolved"] == 1
    assert report["days_counted"] == 1
    assert _threads(store) == {"old-escalated", "today"}
    with store.transaction() as session:
        assert session.scalar(select(func.sum(ActivityDaily.conversations))) == 1


def test_the_table_says_what_was_deleted(cli_env: dict[str, str], store: Database) -> None:
    result = _purge(cli_env, "--older-than", "30")

    assert result.exit_code == 0, result.output
    assert "deleted" in result.stdout
    assert "conversations │ 1" in result.stdout
    assert "added to activity_daily" in result.stdout


def test_a_store_without_the_schema_is_a_clear_error(cli_env: dict[str, str]) -> None:
    result = _purge(cli_env, "--older-than", "30")

    assert result.exit_code == 3
    assert "dispatchbot db upgrade" in result.stderr
    assert "Traceback" not in result.output


def test_the_window_is_at_least_one_day(cli_env: dict[str, str], store: Database) -> None:
    result = _purge(cli_env, "--older-than", "0")

    assert result.exit_code == 2
    assert _threads(store) == {"old", "old-escalated", "today"}
