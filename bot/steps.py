"""The steps an answer shows while it forms: Slack `task_update` chunks of a streamed message.

Two steps, each a card in the message's timeline: the search, with the policies it found
and links to them, then the check of the answer against those policies, which ends when the
final message does.
"""

from __future__ import annotations

from typing import Any

from bot.blocks import SourceRef, specific_section
from serving.assistant import AssistantAnswer, SourcesFound

SEARCH_STEP = "search"
CHECK_STEP = "check"
STEP_SOURCES_SHOWN = 3
_STEP_TEXT_LIMIT = 256

SEARCHING = "Searching current policy"
CHECKING = "Checking the answer against the policy"
CHECK_PASSED = "Every statement shown is in the cited policy"
CHECK_FAILED = "The wording did not match the policy, so the policy's own words are shown"
NOT_ANSWERED = "Not answered from policy: a person has been asked"


def found_steps(found: SourcesFound, sources: list[SourceRef]) -> list[dict[str, Any]]:
    """The search done, with what it found, and the check under way."""
    shown = _distinct(sources)[:STEP_SOURCES_SHOWN]
    if found.covered and shown:
        output = "Found " + "; ".join(_source_label(source) for source in shown)
    else:
        output = "Nothing in current policy covers this closely"
    search = _task(SEARCH_STEP, SEARCHING, "complete", output=output)
    links = [
        {"type": "url", "url": source.url, "text": _short(_source_label(source))}
        for source in shown
        if source.url and found.covered
    ]
    if links:
        search["sources"] = links
    if not found.covered:
        return [search]
    return [search, _task(CHECK_STEP, CHECKING, "in_progress")]


def checked_step(answer: AssistantAnswer) -> dict[str, Any]:
    """How the check ended, shown as the last step when the answer stops streaming."""
    if answer.shows_policy_words_only:
        return check_done(CHECK_FAILED)
    return check_done(NOT_ANSWERED if answer.needs_human else CHECK_PASSED)


def check_done(output: str) -> dict[str, Any]:
    return _task(CHECK_STEP, CHECKING, "complete", output=output)


def _task(task_id: str, title: str, status: str, *, output: str | None = None) -> dict[str, Any]:
    task: dict[str, Any] = {"type": "task_update", "id": task_id, "title": title, "status": status}
    if output:
        task["output"] = _short(output)
    return task


def _source_label(source: SourceRef) -> str:
    label = f"{' '.join(source.title.split())} v{source.version}"
    section = specific_section(source.title, source.section)
    return f"{label} › {section}" if section else label


def _distinct(sources: list[SourceRef]) -> list[SourceRef]:
    seen: set[tuple[str, str, int]] = set()
    kept = []
    for source in sources:
        key = (source.title, source.section, source.version)
        if key not in seen:
            seen.add(key)
            kept.append(source)
    return kept


def _short(text: str) -> str:
    return text if len(text) <= _STEP_TEXT_LIMIT else text[: _STEP_TEXT_LIMIT - 1] + "…"
