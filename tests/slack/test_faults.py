"""Faults while the bot runs: the model, Qdrant, the database and Slack itself fail, then
come back. Each time the asker is told what happened, the question is kept, nothing is
answered twice, and the next question is answered without a restart.

A canned model endpoint writes the answers: these tests are about what happens around it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from bot_harness import RunningBot, StartBot
from embedding_support import default_embedder
from fault_support import Gate, QdrantStandIn
from metrics_support import scrape
from policy_store_support import COLLECTION
from qdrant_client import QdrantClient
from slack_mock import SlackCall, block_text, event_callback, has_buttons, mention, message
from sqlalchemy import event, func, select
from sqlalchemy.engine import make_url
from vllm_support import CannedChatServer

from bot.spool import QuestionSpool
from retrieval.collection import ensure_collection
from retrieval.search import PolicySearch
from retrieval.server_store import ServerStore
from store.database import Database
from store.models import Answer, Message, SlackEvent

COVERED = "who approves a 30,000 lb load?"
ANSWER = "The shift lead on duty approves a 30,000 lb load [1]."
KEPT = "I've kept your question and will answer here"
RETRY = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}


@pytest.fixture(scope="module")
def canned_model() -> Iterator[CannedChatServer]:
    server = CannedChatServer([ANSWER])
    yield server
    server.close()


@pytest.fixture
def model(canned_model: CannedChatServer) -> CannedChatServer:
    canned_model.requests.clear()  # each test counts the model calls it caused
    return canned_model


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


@pytest.fixture
def model_gate(model: CannedChatServer) -> Iterator[Gate]:
    gate = Gate("127.0.0.1", _port(model.url))
    yield gate
    gate.close()


def posted_in(bot: RunningBot, thread_ts: str) -> list[SlackCall]:
    return [
        c for c in bot.slack.calls_to("chat.postMessage") if c.args.get("thread_ts") == thread_ts
    ]


def is_answer_in(bot: RunningBot, thread_ts: str) -> Callable[[SlackCall], bool]:
    """An edit that finishes an answer (it has the feedback buttons) in the thread."""

    def matches(call: SlackCall) -> bool:
        posted = {c.response.get("ts") for c in posted_in(bot, thread_ts)}
        return has_buttons(call) and call.args.get("ts") in posted

    return matches


def final_answer(bot: RunningBot, thread_ts: str, nth: int = 1) -> SlackCall:
    return bot.slack.wait_for("chat.update", is_answer_in(bot, thread_ts), count=nth)[nth - 1]


def finals_in(bot: RunningBot, thread_ts: str) -> list[SlackCall]:
    return [c for c in bot.slack.calls_to("chat.update") if is_answer_in(bot, thread_ts)(c)]


def notice_in(bot: RunningBot, thread_ts: str, words: str) -> SlackCall:
    """The bot's placeholder in the thread, once edited to a notice with `words`."""
    posted = bot.slack.wait_for("chat.postMessage", lambda c: c.args.get("thread_ts") == thread_ts)
    ts = posted[0].response["ts"]
    return bot.slack.wait_for(
        "chat.update", lambda c: c.args["ts"] == ts and words in block_text(c)
    )[0]


def reference_in(call: SlackCall) -> str:
    found = re.search(r"`([0-9a-f]{8})`", block_text(call))
    assert found, block_text(call)
    return found.group(1)


def stored(database: Database) -> list[tuple[str, str]]:
    with database.transaction() as session:
        rows = session.scalars(select(Message).order_by(Message.id)).all()
        return [(row.role.value, row.text) for row in rows]


def count(database: Database, table: type) -> int:
    with database.transaction() as session:
        return session.scalar(select(func.count()).select_from(table)) or 0


# --- the model ----------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["down", "hanging"])
def test_a_model_outage_gets_an_apology_and_the_next_question_is_answered(
    start_bot: StartBot, model: CannedChatServer, model_gate: Gate, fault: str
) -> None:
    bot = start_bot(endpoints=[f"http://127.0.0.1:{model_gate.port}/v1"], read_timeout_s=1.0)
    (model_gate.shut if fault == "down" else model_gate.hold)()
    question = mention(COVERED)

    bot.send.event(event_callback(question))
    apology = notice_in(bot, question["ts"], "Your question was saved")
    assert reference_in(apology)
    assert stored(bot.database) == [("user", COVERED)]

    model_gate.open()
    follow_up = message("and for a 41,000 lb load?", thread_ts=question["ts"])
    bot.send.event(event_callback(follow_up))
    final = final_answer(bot, question["ts"])

    # Answered: the canned text is about 30,000 lb, so the policy's row for 41,000 lb stands,
    # as a table.
    [table] = [block for block in final.args["blocks"] if block["type"] == "table"]
    assert "Operations manager" in json.dumps(table["rows"])
    # The failed question is not answered again on its own: the asker was told to ask again.
    bot.wait_idle()
    assert len(model.requests) == 1
    assert len(finals_in(bot, question["ts"])) == 1
    assert [role for role, _ in stored(bot.database)] == ["user", "user", "assistant"]


# --- Qdrant ---------------------------------------------------------------------------------


def test_qdrant_unavailable_gets_an_apology_and_the_next_question_is_answered(
    start_bot: StartBot, policy_search: PolicySearch, model: CannedChatServer
) -> None:
    # The session's policies, copied into a collection that a Qdrant server can serve.
    embedder = default_embedder()
    local = ServerStore(QdrantClient(":memory:"), COLLECTION, "memory")
    ensure_collection(local, embedder.dimension, embedder.name)
    local.upsert(list(policy_search.store.export()))
    qdrant = QdrantStandIn(local.client)
    gate = Gate("127.0.0.1", qdrant.port)
    url = f"http://127.0.0.1:{gate.port}"
    remote = ServerStore(QdrantClient(url=url, check_compatibility=False), COLLECTION, url)
    search = PolicySearch(remote, embedder)
    try:
        bot = start_bot(endpoints=[model.url], search=search)
        gate.shut()
        question = mention(COVERED)

        bot.send.event(event_callback(question))
        apology = notice_in(bot, question["ts"], "Your question was saved")
        assert reference_in(apology)
        assert stored(bot.database) == [("user", COVERED)]
        assert model.requests == []

        gate.open()
        again = message(COVERED, thread_ts=question["ts"])
        bot.send.event(event_callback(again))
        final = final_answer(bot, question["ts"])
        assert "Load Approval" in block_text(final)  # the sources came from Qdrant again
        assert [role for role, _ in stored(bot.database)] == ["user", "user", "assistant"]
    finally:
        remote.close()
        gate.close()
        qdrant.close()
        local.close()


# --- the database ---------------------------------------------------------------------------


def spooled(bot: RunningBot) -> list[str]:
    return [question.key for question in QuestionSpool.of(bot.settings).pending()]


def spool_drained(bot: RunningBot, timeout: float = 10) -> None:
    """Wait until the spool worker has answered every kept question: one leaves the spool
    only once it was answered (the worker runs on its own thread, not the listeners')."""
    deadline = time.monotonic() + timeout
    while spooled(bot) and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.postgres
def test_questions_the_database_cannot_take_are_kept_and_answered_once_it_is_back(
    start_bot: StartBot, postgres_url: str, model: CannedChatServer
) -> None:
    url = make_url(postgres_url)
    gate = Gate(url.host or "127.0.0.1", url.port or 5432)
    try:
        through_gate = url.set(port=gate.port).render_as_string(hide_password=False)
        # Questions taken up from the spool were promised an answer: the limit spares them.
        bot = start_bot(
            endpoints=[model.url], database_url=through_gate, rate_limit_user_per_minute=1
        )
        first = mention(COVERED)
        bot.send.event(event_callback(first))
        final_answer(bot, first["ts"])

        gate.shut()
        mention_payload = event_callback(mention("and who approves a 41,000 lb load?"))
        asked = mention_payload["event"]
        bot.send.event(mention_payload)
        kept = notice_in(bot, asked["ts"], KEPT)
        assert reference_in(kept)
        # A reply in a channel's thread may be said to people: it is kept without a word.
        follow_up = event_callback(message("and for reefers?", thread_ts=first["ts"]))
        bot.send.event(follow_up)
        # Slack's retry of the mention, while the store is still down, is dropped.
        bot.send.event(mention_payload, RETRY)
        deadline = time.monotonic() + 10
        while len(spooled(bot)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert spooled(bot) == [mention_payload["event_id"], follow_up["event_id"]]
        assert scrape(bot.url).value("dispatchbot_spooled_questions") == 2
        # The spool worker's own thread retries on a timer: time is what lets it try (and
        # find the store still down), not something a listener finishes.
        time.sleep(0.8)
        assert len(model.requests) == 1
        assert len(posted_in(bot, first["ts"])) == 1  # the first answer's only
        assert len(posted_in(bot, asked["ts"])) == 1  # the notice

        gate.open()
        final_answer(bot, asked["ts"])
        final_answer(bot, first["ts"], nth=2)  # the follow-up, in the bot's thread
        spool_drained(bot)

        assert spooled(bot) == []
        assert scrape(bot.url).value("dispatchbot_spooled_questions") == 0
        bot.send.event(mention_payload, {"X-Slack-Retry-Num": "2", "X-Slack-Retry-Reason": "x"})
        bot.wait_idle()
        assert len(model.requests) == 3
        assert len(finals_in(bot, asked["ts"])) == 1
        assert len(finals_in(bot, first["ts"])) == 2
        assert count(bot.database, Answer) == 3
        assert [text for role, text in stored(bot.database) if role == "user"] == [
            COVERED,
            "and who approves a 41,000 lb load?",
            "and for reefers?",
        ]
    finally:
        gate.close()


def read_only(database: Database) -> Callable[[], None]:
    """Make every new connection of the bot's store read-only; returns the undo."""
    sqlite = database.url.get_backend_name() == "sqlite"

    def refuse_writes(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if sqlite:
            cursor.execute("PRAGMA query_only = ON")
        else:
            cursor.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            dbapi_connection.commit()
        cursor.close()

    event.listen(database.engine, "connect", refuse_writes)
    database.engine.dispose()  # pooled connections were opened writable

    def undo() -> None:
        event.remove(database.engine, "connect", refuse_writes)
        database.engine.dispose()

    return undo


@pytest.mark.parametrize(
    "store", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_a_question_to_a_read_only_database_is_kept_and_answered_once_it_is_writable(
    start_bot: StartBot, model: CannedChatServer, store: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("sqlite_url" if store == "sqlite" else "postgres_url")
    bot = start_bot(endpoints=[model.url], database_url=url)
    undo = read_only(bot.database)
    question = message("who approves a 30,000 lb load?", channel="D0ALICE")

    bot.send.event(event_callback(question))
    kept = notice_in(bot, question["ts"], KEPT)
    assert "can't reach my records" in block_text(kept)
    assert stored(bot.database) == []
    lines = [
        json.loads(line) for line in QuestionSpool.of(bot.settings).path.read_text().splitlines()
    ]
    assert lines[0]["spooled"]["event"]["text"] == question["text"]
    assert "token" not in json.dumps(lines)

    undo()
    final = final_answer(bot, question["ts"])
    spool_drained(bot)
    bot.wait_idle()
    assert "approves a 30,000 lb load" in block_text(final)
    assert len(model.requests) == 1
    assert len(finals_in(bot, question["ts"])) == 1
    assert stored(bot.database) == [("user", COVERED), ("assistant", ANSWER)]
    assert spooled(bot) == []


# --- Slack ----------------------------------------------------------------------------------


def test_a_slack_503_is_retried_and_the_answer_appears_once(
    start_bot: StartBot, model: CannedChatServer
) -> None:
    bot = start_bot(endpoints=[model.url])

    def fail_once(args: dict[str, Any]) -> dict[str, Any]:
        del bot.slack.responses["chat.postMessage"]
        return {"ok": False, "error": "service_unavailable", "_http_status": 503}

    bot.slack.responses["chat.postMessage"] = fail_once
    question = mention(COVERED)
    bot.send.event(event_callback(question))
    final = final_answer(bot, question["ts"])
    bot.wait_idle()

    failed, posted = bot.slack.calls_to("chat.postMessage")
    assert failed.response["_http_status"] == 503
    assert posted.at - failed.at >= 0.5  # backed off
    assert final.args["ts"] == posted.response["ts"]
    assert len(bot.slack.calls_to("chat.postMessage")) == 2
    assert len(finals_in(bot, question["ts"])) == 1
    assert count(bot.database, Answer) == 1


def test_a_slack_429_waits_for_retry_after_and_the_answer_appears_once(
    start_bot: StartBot, model: CannedChatServer
) -> None:
    bot = start_bot(endpoints=[model.url])

    def limited_once(args: dict[str, Any]) -> dict[str, Any]:
        del bot.slack.responses["chat.update"]
        return {"ok": False, "error": "ratelimited", "_http_status": 429, "_retry_after": 1}

    bot.slack.responses["chat.update"] = limited_once
    question = mention(COVERED)
    bot.send.event(event_callback(question))
    final = final_answer(bot, question["ts"])
    bot.wait_idle()

    limited, retried = bot.slack.calls_to("chat.update")[:2]
    assert limited.response["_http_status"] == 429
    assert retried.at - limited.at >= 1.0
    assert retried.args == limited.args
    assert len(finals_in(bot, question["ts"])) == 1
    assert len(bot.slack.calls_to("chat.postMessage")) == 1
    assert final.args["ts"] == bot.slack.calls_to("chat.postMessage")[0].response["ts"]


def test_when_slack_keeps_failing_the_answer_is_recorded_and_the_failure_logged(
    start_bot: StartBot, model: CannedChatServer, caplog: pytest.LogCaptureFixture
) -> None:
    bot = start_bot(endpoints=[model.url])
    outage = {"ok": False, "error": "bad_gateway", "_http_status": 502}
    for method in ("chat.postMessage", "chat.update"):
        bot.slack.responses[method] = outage
    question = mention(COVERED)

    with caplog.at_level(logging.ERROR):
        bot.send.event(event_callback(question))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(
            "could not report the failure" in record.getMessage() for record in caplog.records
        ):
            time.sleep(0.05)

    unshown = next(r for r in caplog.records if "was not shown" in r.getMessage())
    request_id = re.search(r"request=([0-9a-f]{8})", unshown.getMessage())
    assert request_id
    assert any(
        request_id.group(1) in record.getMessage() and record.exc_info for record in caplog.records
    ), "no error with a traceback carries the request id"
    assert stored(bot.database) == [("user", COVERED), ("assistant", ANSWER)]
    assert spooled(bot) == []

    bot.slack.responses.clear()
    again = mention(COVERED)
    bot.send.event(event_callback(again))
    assert "approves a 30,000 lb load" in block_text(final_answer(bot, again["ts"]))
    assert count(bot.database, SlackEvent) == 2
