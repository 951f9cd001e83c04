"""The spool of questions the store could not take: an append-only journal on disk."""

from __future__ import annotations

import json
from pathlib import Path

from bot.spool import QuestionSpool, SpooledQuestion


def spooled(event_id: str, text: str = "who approves a 30,000 lb load?") -> SpooledQuestion:
    event = {
        "type": "app_mention",
        "user": "U0ALICE",
        "text": f"<@UBOT> {text}",
        "ts": "1700000000.000001",
        "channel": "C0DISPATCH",
        "event_ts": "1700000000.000001",  # not needed to answer: left out
        "team": "T0",
    }
    return SpooledQuestion.from_event(
        event, event_id=event_id, team_id="T0", bot_user_id="UBOT", request_id="3f9a2c1b"
    )


def test_kept_questions_survive_a_new_spool_object_in_order_once_each(tmp_path: Path) -> None:
    spool = QuestionSpool(tmp_path / "spool" / "questions.jsonl")
    spool.keep(spooled("Ev1"))
    spool.keep(spooled("Ev2"))
    spool.keep(spooled("Ev1"))  # kept again (a second failure): still once

    pending = QuestionSpool(spool.path).pending()

    assert [question.key for question in pending] == ["Ev1", "Ev2"]
    assert pending[0].listener == "app_mention"
    assert pending[0].event["text"] == "<@UBOT> who approves a 30,000 lb load?"
    assert "event_ts" not in pending[0].event


def test_done_questions_leave_and_the_file_is_emptied_when_none_wait(tmp_path: Path) -> None:
    spool = QuestionSpool(tmp_path / "questions.jsonl")
    spool.keep(spooled("Ev1"))
    spool.keep(spooled("Ev2"))

    spool.done("Ev1")
    assert [question.key for question in spool.pending()] == ["Ev2"]
    assert len(spool.path.read_text().splitlines()) == 3  # appended, never rewritten

    spool.done("Ev2")
    assert spool.pending() == []
    assert spool.path.read_bytes() == b""


def test_a_line_torn_by_a_crash_is_skipped_and_later_lines_still_read(tmp_path: Path) -> None:
    spool = QuestionSpool(tmp_path / "questions.jsonl")
    spool.keep(spooled("Ev1"))
    with spool.path.open("ab") as journal:
        journal.write(json.dumps({"spooled": {"key": "Ev2"}}).encode()[:20])  # no newline

    spool.keep(spooled("Ev3"))

    assert [question.key for question in spool.pending()] == ["Ev1", "Ev3"]
