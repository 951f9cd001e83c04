"""Checks every Block Kit test applies: Slack's own models and Slack's limits."""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import Block

from bot.blocks import SlackMessage

MESSAGE_TEXT_BUDGET = 11_000


def block_text(block: Any) -> int:
    """Characters of text a block shows, counted independently of the code under test."""
    if isinstance(block, dict):
        return sum(
            len(value) if key == "text" and isinstance(value, str) else block_text(value)
            for key, value in block.items()
        )
    if isinstance(block, list):
        return sum(block_text(item) for item in block)
    return 0


def assert_valid(message: SlackMessage) -> None:
    assert 1 <= len(message.blocks) <= 50
    for block in message.blocks:
        Block.parse(block).validate_json()
        if block["type"] == "section":
            # slack_sdk lets an empty text through; Slack does not.
            assert block["text"]["text"].strip()
            assert len(block["text"]["text"]) <= 3_000
    assert block_text(message.blocks) <= MESSAGE_TEXT_BUDGET
