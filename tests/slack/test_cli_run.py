"""`dispatchbot run` as an operator starts it: clear errors first, then a real process
answering signed Slack events and stopping cleanly on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from bot_process import (
    POLICIES,
    dispatchbot,
    operator_environment,
    start_http_bot,
    stop,
    wait_until_healthy,
)
from slack_mock import (
    BOT_TOKEN,
    SIGNING_SECRET,
    MockSlack,
    SlackSender,
    assert_valid_blocks,
    event_callback,
    has_buttons,
    mention,
)
from vllm_support import RunningServer, free_port


@pytest.fixture
def operator_env(tmp_path: Path) -> dict[str, str]:
    return operator_environment(tmp_path / "data")


@pytest.mark.parametrize(
    ("mode", "given", "missing"),
    [
        ("http", {}, "SLACK_BOT_TOKEN"),
        ("http", {"SLACK_BOT_TOKEN": BOT_TOKEN}, "SLACK_SIGNING_SECRET"),
        ("socket", {"SLACK_BOT_TOKEN": BOT_TOKEN}, "SLACK_APP_TOKEN"),
        ("socket", {"SLACK_APP_TOKEN": "xapp-1"}, "SLACK_BOT_TOKEN"),
    ],
)
def test_a_missing_token_is_named(
    operator_env: dict[str, str], tmp_path: Path, mode: str, given: dict[str, str], missing: str
) -> None:
    result = dispatchbot("run", "--mode", mode, env=operator_env | given, cwd=tmp_path)

    assert result.returncode == 2
    assert f"{missing} is not set" in result.stderr
    assert "slack-app-manifest.yml" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def bot_process(
    operator_env: dict[str, str],
    tmp_path: Path,
    mock_slack: MockSlack,
    vllm_server: RunningServer,
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    env = operator_env | {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": mock_slack.api_url,
        "LLM_BASE_URL": vllm_server.base_url,
        "LLM_MAX_TOKENS": "48",
    }
    for step in (("db", "upgrade"), ("ingest", str(POLICIES / "load-approval.md"))):
        assert dispatchbot(*step, env=env, cwd=tmp_path).returncode == 0
    process = start_http_bot(port, env=env, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process)
        yield process, url
    finally:
        stop(process)


def test_run_http_answers_a_signed_event_and_stops_cleanly(
    bot_process: tuple[subprocess.Popen[str], str], mock_slack: MockSlack
) -> None:
    process, url = bot_process
    question = mention("who approves a 30,000 lb load?")

    response = SlackSender(f"{url}/slack/events").event(event_callback(question))
    final = mock_slack.wait_for("chat.update", has_buttons)[0]
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)

    assert response.status_code == 200
    assert mock_slack.calls_to("chat.postMessage")[0].args["thread_ts"] == question["ts"]
    assert_valid_blocks(final.args["blocks"])
    assert process.returncode == 0
    assert "listening on http://127.0.0.1:" in output
    assert BOT_TOKEN not in output
    assert SIGNING_SECRET not in output
