"""The `dispatchbot` console script as an operator uses it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from bot.cli import app

DISPATCHBOT = shutil.which("dispatchbot", path=str(Path(sys.executable).parent))


def _run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    assert DISPATCHBOT, "the dispatchbot console script is installed beside this python"
    return subprocess.run(  # noqa: S603 - our own console script
        [DISPATCHBOT, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def operator_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_"))}
    env["DISPATCHBOT_DATA_DIR"] = str(tmp_path / "data")
    return env


def test_help_lists_the_commands(operator_env: dict[str, str], tmp_path: Path) -> None:
    result = _run("--help", env=operator_env, cwd=tmp_path)

    assert result.returncode == 0
    for command in ("db", "config"):
        assert command in result.stdout


def _all_command_paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    # Typer bundles its own click, so groups are recognised by their `commands` mapping.
    paths = [prefix]
    for name, sub in getattr(command, "commands", {}).items():
        paths += _all_command_paths(sub, (*prefix, name))
    return paths


def test_every_command_has_help() -> None:
    runner = CliRunner()
    paths = _all_command_paths(typer.main.get_command(app))
    assert ("db", "upgrade") in paths

    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output


@pytest.mark.slow  # three child processes
def test_db_upgrade_creates_the_store_on_a_fresh_machine(
    operator_env: dict[str, str], tmp_path: Path
) -> None:
    before = _run("db", "status", env=operator_env, cwd=tmp_path)
    assert before.returncode == 1
    assert "dispatchbot db upgrade" in before.stdout

    upgraded = _run("db", "upgrade", env=operator_env, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert (tmp_path / "data" / "dispatchbot.db").exists()

    after = _run("db", "status", "--json", env=operator_env, cwd=tmp_path)
    assert after.returncode == 0, after.stderr
    report = json.loads(after.stdout)
    assert report["current"] is True
    assert set(report["rows"]) == {
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
    assert all(count == 0 for count in report["rows"].values())


@pytest.mark.slow  # a child process
def test_unreachable_database_is_a_clear_error(
    operator_env: dict[str, str], tmp_path: Path
) -> None:
    # Port 9 (discard) on loopback: nothing listens, so the connection is refused at once.
    operator_env["DATABASE_URL"] = "postgresql+psycopg://bot:pw@127.0.0.1:9/none"
    result = _run("db", "upgrade", env=operator_env, cwd=tmp_path)

    assert result.returncode == 3
    assert "DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr
    assert ":pw@" not in result.stderr


@pytest.mark.slow  # a child process
def test_config_shows_settings_without_secrets(
    operator_env: dict[str, str], tmp_path: Path
) -> None:
    operator_env["SLACK_BOT_TOKEN"] = "xoxb-do-not-print"
    result = _run("config", "--json", env=operator_env, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["SLACK_BOT_TOKEN"] == "********"
    assert shown["DATABASE_URL"].endswith("/data/dispatchbot.db")
    assert "xoxb-do-not-print" not in result.stdout
