"""Personal data stays out of the logs, out of training rows, and, with REDACT_BEFORE_MODEL,
out of what the model sees, while the store keeps what people wrote."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from policy_store_support import ingested_search
from sqlalchemy import select
from vllm_support import CannedChatServer, make_client

from bot.logs import bind_request_id, log_handler
from bot.services import assistant_settings
from retrieval.search import PolicySearch
from serving.assistant import Assistant, ThreadKey
from serving.dataset_export import export_dataset
from store import repository, schema
from store.database import Database
from store.models import Answer, Message, MessageRole
from store.settings import Settings

POLICIES = Path(__file__).resolve().parents[2] / "examples" / "policies"
EMAIL, PHONE = "jane.doe@example.com", "555-010-2233"
CARD, SSN = "4111 1111 1111 1111", "123-45-6789"
PERSONAL = (EMAIL, PHONE, CARD, SSN)
FIRST = f"who approves a 30,000 lb load? I'm on {PHONE}, or mail {EMAIL}"
FOLLOW_UP = f"and the fuel for it goes on card {CARD}? my SSN is {SSN}"


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, io.StringIO, io.StringIO]]:
    """A logger writing through the bot's text and JSON handlers, as `dispatchbot run` does."""
    text, json_lines = io.StringIO(), io.StringIO()
    logger = logging.getLogger("dispatchbot.test.privacy")
    handlers = [log_handler("text", text), log_handler("json", json_lines)]
    for handler in handlers:
        logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, text, json_lines
    for handler in handlers:
        logger.removeHandler(handler)
    bind_request_id(None)


@pytest.mark.parametrize("level", [logging.DEBUG, logging.INFO, logging.ERROR])
def test_personal_data_in_a_log_line_is_redacted_in_both_formats(
    logged: tuple[logging.Logger, io.StringIO, io.StringIO], level: int
) -> None:
    logger, text, json_lines = logged
    bind_request_id("req-7")

    logger.log(level, "question from %s: %s (retry %d)", "U0ALICE", f"{FIRST}. {FOLLOW_UP}", 2)

    line = text.getvalue()
    entry = json.loads(json_lines.getvalue())
    for shown in (line, entry["message"]):
        assert not any(personal in shown for personal in PERSONAL), shown
        for placeholder in ("[email]", "[phone]", "[card]", "[ssn]"):
            assert placeholder in shown
        assert "question from U0ALICE: who approves a 30,000 lb load?" in shown
        assert shown.rstrip().endswith("(retry 2)")
    assert "[request=req-7]" in line
    assert entry["request_id"] == "req-7"


def test_a_traceback_is_redacted_and_metadata_lines_are_left_alone(
    logged: tuple[logging.Logger, io.StringIO, io.StringIO],
) -> None:
    logger, text, json_lines = logged

    try:
        raise ValueError(f"[parameters: ('{FOLLOW_UP}', '{EMAIL}')]")
    except ValueError:
        logger.exception("could not store the question")
    logger.info("answered conversation=%d load=%s cited=%d model_ms=%.0f", 4411, "26,001", 2, 950.4)

    written = text.getvalue() + json_lines.getvalue()
    assert "ValueError" in written
    assert not any(personal in written for personal in PERSONAL), written
    exception = json.loads(json_lines.getvalue().splitlines()[0])["exception"]
    assert "[card]" in exception
    assert "[ssn]" in exception
    assert "answered conversation=4411 load=26,001 cited=2 model_ms=950" in text.getvalue()


@pytest.fixture(scope="module")
def policy_search(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolicySearch]:
    corpus = [POLICIES / "load-approval.md"]
    with ingested_search(tmp_path_factory.mktemp("store"), corpus) as search:
        yield search


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'store.db'}")
    schema.upgrade(database)
    yield database
    database.dispose()


@pytest.fixture
def model() -> Iterator[CannedChatServer]:
    server = CannedChatServer(["The shift lead on duty approves it [1]."])
    yield server
    server.close()


def _ask_twice(
    redact_setting: str,
    policy_search: PolicySearch,
    database: Database,
    model: CannedChatServer,
    monkeypatch: pytest.MonkeyPatch,
) -> int:
    """A question and a follow-up in one thread, with REDACT_BEFORE_MODEL as given; the
    follow-up's answer id."""
    monkeypatch.setenv("REDACT_BEFORE_MODEL", redact_setting)
    settings = assistant_settings(Settings(_env_file=None))
    assistant = Assistant(
        search=policy_search,
        model=make_client([model.url], max_tokens=16),
        database=database,
        settings=replace(settings, min_relevance=0.0, reserved_for_answer=16),
    )
    thread = ThreadKey("T1", "C1", "1.0001")
    assistant.answer(FIRST, thread=thread, user_id="U0ALICE")
    return assistant.answer(FOLLOW_UP, thread=thread, user_id="U0ALICE").answer_id


def test_with_redact_before_model_the_model_sees_no_personal_data_but_the_store_keeps_it(
    policy_search: PolicySearch,
    database: Database,
    model: CannedChatServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answer_id = _ask_twice("true", policy_search, database, model, monkeypatch)

    sent = model.requests[-1]["messages"]
    seen = json.dumps(sent, ensure_ascii=False)
    assert not any(personal in seen for personal in PERSONAL), seen
    assert sent[1]["content"] == "who approves a 30,000 lb load? I'm on [phone], or mail [email]"
    assert sent[-1]["content"].endswith("goes on card [card]? my SSN is [ssn]")
    with database.transaction() as session:
        # answers.prompt is what the model saw; the messages are what people wrote.
        assert json.loads(session.get_one(Answer, answer_id).prompt) == sent
        asked = session.scalars(
            select(Message.text).where(Message.role == MessageRole.USER).order_by(Message.id)
        ).all()
        assert asked == [FIRST, FOLLOW_UP]


def test_without_it_the_model_sees_the_question_as_written_and_the_export_redacts_it(
    policy_search: PolicySearch,
    database: Database,
    model: CannedChatServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    answer_id = _ask_twice("false", policy_search, database, model, monkeypatch)

    seen = json.dumps(model.requests[-1]["messages"], ensure_ascii=False)
    assert all(personal in seen for personal in PERSONAL)

    # A 👍 makes the answer a training row; the prompt it carries is redacted on the way out.
    with database.transaction() as session:
        repository.record_feedback(session, answer_id=answer_id, user_id="U0ALICE", value=1)
    report = export_dataset(database, tmp_path / "export", heldout_fraction=0.0)

    rows = (tmp_path / "export" / "sft.train.jsonl").read_text("utf-8")
    with database.transaction() as session:
        shown = session.get_one(Answer, answer_id).shown_text  # what the 👍 was given to
    assert json.loads(rows.splitlines()[0])["messages"][-1]["content"] == shown
    assert not any(personal in rows for personal in PERSONAL)
    assert all(p in rows for p in ("[email]", "[phone]", "[card]", "[ssn]"))
    assert report.redactions >= 4
