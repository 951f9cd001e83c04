"""`dispatchbot run` as an operator starts it: clear errors first, then a real process
answering signed Slack events and stopping cleanly on SIGTERM."""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from bot_process import (
    DISPATCHBOT,
    POLICIES,
    dispatchbot,
    operator_environment,
    start_http_bot,
    stop,
    wait_until_healthy,
)
from slack_mock import (
    APP_TOKEN,
    BOT_TOKEN,
    SIGNING_SECRET,
    MockSlack,
    SlackSender,
    assert_valid_blocks,
    event_callback,
    has_buttons,
    mention,
)
from socket_mode_support import SocketModeServer
from vllm_support import RunningServer, free_port


@pytest.fixture
def operator_env(tmp_path: Path) -> dict[str, str]:
    return operator_environment(tmp_path / "data")


@pytest.fixture(scope="module")
def prepared_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir as an operator leaves it before `run`: migrated, one policy ingested."""
    data = tmp_path_factory.mktemp("prepared") / "data"
    env = operator_environment(data)
    for step in (("db", "upgrade"), ("ingest", str(POLICIES / "load-approval.md"))):
        assert dispatchbot(*step, env=env, cwd=data.parent).returncode == 0
    return data


@pytest.fixture
def ready_env(operator_env: dict[str, str], prepared_data: Path) -> dict[str, str]:
    """`operator_env` whose data dir is a copy of `prepared_data`."""
    shutil.copytree(prepared_data, operator_env["DISPATCHBOT_DATA_DIR"])
    return operator_env


@pytest.mark.slow  # a child process each
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
    ready_env: dict[str, str],
    tmp_path: Path,
    mock_slack: MockSlack,
    vllm_server: RunningServer,
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    env = ready_env | {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": mock_slack.api_url,
        "LLM_BASE_URL": vllm_server.base_url,
        "LLM_MAX_TOKENS": "48",
    }
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
    # The default way of answering: Slack's status, then one streamed message.
    final = mock_slack.wait_for("chat.stopStream", has_buttons)[0]
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)

    assert response.status_code == 200
    assert mock_slack.calls_to("assistant.threads.setStatus")[0].args["thread_ts"] == question["ts"]
    assert mock_slack.calls_to("chat.startStream")[0].args["thread_ts"] == question["ts"]
    assert_valid_blocks(final.args["blocks"])
    assert process.returncode == 0
    assert "listening on http://127.0.0.1:" in output
    assert BOT_TOKEN not in output
    assert SIGNING_SECRET not in output


def test_run_in_socket_mode_answers_and_serves_only_the_operations_endpoints(
    ready_env: dict[str, str], tmp_path: Path, mock_slack: MockSlack, vllm_server: RunningServer
) -> None:
    socket_server = SocketModeServer()
    mock_slack.socket_mode_url = socket_server.url
    question = mention("who approves a 30,000 lb load?")
    socket_server.envelopes.put(
        {
            "envelope_id": "cli-envelope",
            "type": "events_api",
            "accepts_response_payload": False,
            "retry_attempt": 0,
            "retry_reason": "",
            "payload": event_callback(question),
        }
    )
    port = free_port()
    env = ready_env | {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_APP_TOKEN": APP_TOKEN,
        "SLACK_API_URL": mock_slack.api_url,
        "LLM_BASE_URL": vllm_server.base_url,
        "LLM_MAX_TOKENS": "24",
        "BOT_HTTP_PORT": str(port),
    }
    process = subprocess.Popen(  # noqa: S603 - our own console script
        [DISPATCHBOT, "run", "--host", "127.0.0.1"],  # type: ignore[list-item]
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process)
        mock_slack.wait_for("chat.stopStream", has_buttons)
        ready = httpx.get(f"{url}/readyz", timeout=10)
        metrics = httpx.get(f"{url}/metrics", timeout=10)
        events = httpx.post(f"{url}/slack/events", content=b"{}", timeout=10)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        stop(process)
        socket_server.close()

    assert socket_server.acks.get(timeout=5)["envelope_id"] == "cli-envelope"
    assert ready.status_code == 200
    assert "dispatchbot_answer_stage_seconds_count" in metrics.text
    assert events.status_code == 404  # events come over the websocket only
    assert process.returncode == 0
    assert "connected to Slack over Socket Mode" in output
    assert APP_TOKEN not in output
    assert BOT_TOKEN not in output
