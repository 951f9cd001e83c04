"""`dispatchbot slack-docs`: the committed Block Kit JSON is what the builders make today."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from block_checks import assert_valid
from slack_sdk.models.blocks import Block
from slack_sdk.models.messages.chunk import Chunk
from slack_sdk.models.views import View
from typer.testing import CliRunner

from bot.blocks import SlackMessage
from bot.cli import app
from bot.commands.slack_docs import sample_files, write_files

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "slack"
MESSAGES = ("answer.json", "escalation-card.json")
VIEWS = ("member-home-tab.json", "home-tab.json")
CALLS = ("streamed-answer.json", "messages-tab.json")


def test_the_committed_files_are_what_the_command_writes(tmp_path: Path) -> None:
    written = write_files(tmp_path)

    assert sorted(path.name for path in written) == sorted(MESSAGES + VIEWS + CALLS)
    for path in written:
        committed = COMMITTED / path.name
        assert committed.exists(), f"{committed} is missing: run `dispatchbot slack-docs`"
        assert path.read_text("utf-8") == committed.read_text("utf-8"), (
            f"{committed} is out of date: run `dispatchbot slack-docs` and commit the result"
        )
    assert (COMMITTED / "README.md").exists()


@pytest.mark.parametrize("name", MESSAGES)
def test_every_message_is_a_valid_message(name: str) -> None:
    content: dict[str, Any] = json.loads((COMMITTED / name).read_text("utf-8"))

    assert list(content) == ["blocks"]
    assert_valid(SlackMessage(text="-", blocks=content["blocks"]))


@pytest.mark.parametrize("name", VIEWS)
def test_every_home_tab_is_a_valid_view(name: str) -> None:
    view: dict[str, Any] = json.loads((COMMITTED / name).read_text("utf-8"))

    assert view["type"] == "home"
    View(**view).validate_json()
    assert 1 <= len(view["blocks"]) <= 100
    for block in view["blocks"]:
        Block.parse(block).validate_json()


def test_the_answer_shows_the_load_approval_table_as_a_table_block() -> None:
    blocks = sample_files()["answer.json"]["blocks"]

    tables = [block for block in blocks if block["type"] == "table"]
    assert len(tables) == 1
    rows = [[cell["text"] for cell in row] for row in tables[0]["rows"]]
    assert ["26,001 to 40,000 lb", "Shift lead on duty", "Dispatch desk, ext. 4411"] in rows
    assert blocks[-2]["type"] == "context_actions"  # Slack's 👍/👎 close the answer,
    assert blocks[-1]["type"] == "actions"  # then "Ask a person"


def test_the_streamed_answer_is_valid_chunks_and_ends_with_the_same_footer() -> None:
    streamed: dict[str, Any] = json.loads((COMMITTED / "streamed-answer.json").read_text("utf-8"))
    answer = json.loads((COMMITTED / "answer.json").read_text("utf-8"))

    for method in ("chat.startStream", "chat.appendStream", "chat.stopStream"):
        for chunk in streamed[method]["chunks"]:
            assert Chunk.parse(chunk) is not None
    steps = [chunk["title"] for chunk in streamed["chat.startStream"]["chunks"]]
    assert steps == ["Searching current policy", "Checking the answer against the policy"]
    stop_blocks = streamed["chat.stopStream"]["blocks"]
    assert stop_blocks == answer["blocks"][-len(stop_blocks) :]
    assert_valid(SlackMessage(text="-", blocks=stop_blocks))


def test_the_messages_tab_offers_at_most_four_prompts() -> None:
    tab: dict[str, Any] = json.loads((COMMITTED / "messages-tab.json").read_text("utf-8"))

    assert 1 <= len(tab["prompts"]) <= 4
    assert all(set(prompt) == {"title", "message"} for prompt in tab["prompts"])


def test_the_command_writes_into_the_folder_given(tmp_path: Path) -> None:
    out = tmp_path / "new" / "slack"

    result = CliRunner().invoke(app, ["slack-docs", "--out", str(out)])

    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in out.iterdir()) == sorted(MESSAGES + VIEWS + CALLS)
    assert f"wrote {out / 'answer.json'}" in result.output.replace("\n", "")
