"""A policy changed while the bot runs on the embedded store is answered from at once.

`dispatchbot run` holds the embedded store; `dispatchbot ingest` and `documents delete`,
run beside it as an operator would, reach it through its socket. The next question in
Slack cites the new version, then (after the version is deleted) the one before it; the
bot is never restarted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
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
    event_callback,
    has_buttons,
    mention,
)
from vllm_support import RunningServer, free_port

QUESTION = "who approves a 30,000 lb load?"


@pytest.fixture
def running_bot(
    tmp_path: Path, mock_slack: MockSlack, vllm_server: RunningServer
) -> Iterator[tuple[subprocess.Popen[str], str, dict[str, str]]]:
    """`dispatchbot run` on a data dir holding the sample load policy (version 3)."""
    env = operator_environment(tmp_path / "data")
    for step in (("db", "upgrade"), ("ingest", str(POLICIES / "load-approval.md"))):
        result = dispatchbot(*step, env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    env |= {
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": mock_slack.api_url,
        "SLACK_NATIVE_STREAMING": "false",  # read from the placeholder's edits
        "LLM_BASE_URL": vllm_server.base_url,
        "LLM_MAX_TOKENS": "32",
    }
    port = free_port()
    process = start_http_bot(port, env=env, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process)
        yield process, url, env
    finally:
        stop(process)


def new_version(folder: Path, version: int, shift_lead_extension: str) -> Path:
    """The sample load policy as a new version: the shift lead moved to another extension."""
    text = (POLICIES / "load-approval.md").read_text(encoding="utf-8")
    text = text.replace("version: 3", f"version: {version}", 1)
    text = text.replace("effective_from: 2026-03-01", "effective_from: 2026-04-01", 1)
    text = text.replace("Dispatch desk, ext. 4411", f"Dispatch desk, ext. {shift_lead_extension}")
    path = folder / f"load-approval-v{version}.md"
    path.write_text(text, encoding="utf-8")
    return path


def ask_in_slack(url: str, mock_slack: MockSlack, text: str) -> str:
    """Mention the bot and return the final answer's blocks as JSON text."""
    calls_before = len(mock_slack.calls_to("chat.update"))
    question = mention(text)
    SlackSender(f"{url}/slack/events").event(event_callback(question))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        finals = [
            call for call in mock_slack.calls_to("chat.update")[calls_before:] if has_buttons(call)
        ]
        if finals:
            return json.dumps(finals[-1].args["blocks"])
        time.sleep(0.05)
    pytest.fail("no final answer within 120 s")


def test_a_new_version_ingested_beside_the_running_bot_is_cited_by_the_next_answer(
    running_bot: tuple[subprocess.Popen[str], str, dict[str, str]],
    mock_slack: MockSlack,
    tmp_path: Path,
) -> None:
    process, url, env = running_bot
    before = ask_in_slack(url, mock_slack, QUESTION)
    changed = new_version(tmp_path, 4, "4477")

    started = time.monotonic()
    ingested = dispatchbot("ingest", str(changed), env=env, cwd=tmp_path)
    after = ask_in_slack(url, mock_slack, QUESTION)
    answered_in_s = time.monotonic() - started

    deleted = dispatchbot(
        "documents", "delete", "LOAD-APPROVAL", "--version", "4", "-y", env=env, cwd=tmp_path
    )
    reverted = ask_in_slack(url, mock_slack, QUESTION)

    assert process.poll() is None, "the bot kept running throughout"
    assert ingested.returncode == 0, ingested.stderr
    assert "running bot" in ingested.stderr
    assert "updated" in ingested.stdout
    assert "v3" in before
    assert "v4" not in before
    assert "v4" in after, "the next answer cites the version just ingested"
    assert "4477" in after, "the policy's own words come from the new version"
    print(f"policy change answered in Slack {answered_in_s:.1f} s after ingest started")
    assert deleted.returncode == 0, deleted.stderr
    assert "v3" in reverted
    assert "v4" not in reverted


def test_ingest_refuses_clearly_when_the_store_is_held_by_a_process_that_takes_no_changes(
    tmp_path: Path,
) -> None:
    from retrieval.edge_store import EdgeStore

    env = operator_environment(tmp_path / "data")
    holder = EdgeStore(tmp_path / "data" / "qdrant" / "edge", "policies")
    try:
        result = dispatchbot("ingest", str(POLICIES / "load-approval.md"), env=env, cwd=tmp_path)
    finally:
        holder.close()

    assert result.returncode == 3
    assert "does not take changes" in result.stderr
    assert "Traceback" not in result.stderr
    shutil.rmtree(tmp_path / "data")
