"""What the injection tests look for in what was shown and stored: the system prompt's words,
found independently of serving/guard.py so a broken guard cannot hide its own failure."""

from __future__ import annotations

import re

from serving.prompts import SYSTEM_PROMPT


def system_prompt_runs(text: str, length: int = 8) -> set[tuple[str, ...]]:
    """Runs of `length` consecutive words that `text` shares with the system prompt."""

    def runs(words: list[str]) -> set[tuple[str, ...]]:
        return {tuple(words[i : i + length]) for i in range(len(words) - length + 1)}

    def words(of: str) -> list[str]:
        return re.findall(r"[a-z0-9]+", of.lower())

    return runs(words(text)) & runs(words(SYSTEM_PROMPT))
