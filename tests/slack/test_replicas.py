"""Two `dispatchbot run --mode http` processes on one PostgreSQL store, as behind a load
balancer: Slack may deliver an event to either (or, retrying, to both), people click
buttons on either, and both scan for reminders. Each thing must still happen once."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from bot_process import (
    POLICIES,
    dispatchbot,
    operator_environment,
    start_http_bot,
    stop,
    wait_until_healthy,
)
from metrics_support import scrape
from postgres_support import private_schema
from seeding import seed_answer, seed_escalation
from slack_mock import (
    BOT_TOKEN,
    SIGNING_SECRET,
    MockSlack,
    SlackSender,
    block_action,
    block_text,
    event_callback,
    has_buttons,
    mention,
)
from sqlalchemy import func, select
from vllm_support import RunningServer, free_port

from bot.blocks import FEEDBACK_DOWN, FEEDBACK_UP
from bot.escalation import MAX_REMINDERS
from bot.escalation_blocks import ESCALATION_CLAIM
from bot.http_server import EVENTS_PATH
from store.database import Database
from store.models import Answer, Conversation, Escalation, EscalationStatus, Feedback, Message
from store.types import utcnow

pytestmark = pytest.mark.postgres

ONCALL = "C0ONCALL"
REMIND_MINUTES = 0.03  # 1.8 s between reminders


@dataclass
class Replica:
    name: str
    url: str
    send: SlackSender
    log: Path


@dataclass
class Cluster:
    replicas: tuple[Replica, Replica]
    slack: MockSlack
    database: Database


@pytest.fixture(scope="module")
def module_slack() -> Iterator[MockSlack]:
    mock = MockSlack().start()
    yield mock
    mock.stop()


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    postgres_admin_url: str,
    vllm_server: RunningServer,
    module_slack: MockSlack,
) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("replicas")
    with private_schema(postgres_admin_url) as database_url:
        env = operator_environment(root / "a") | {
            "DATABASE_URL": database_url,
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": module_slack.api_url,
            "SLACK_NATIVE_STREAMING": "false",  # read from the placeholder's edits
            "LLM_BASE_URL": vllm_server.base_url,
            "LLM_MAX_TOKENS": "24",
            "ESCALATION_CHANNEL": ONCALL,
            "ESCALATION_REMIND_MINUTES": str(REMIND_MINUTES),
            "ESCALATION_SCAN_INTERVAL_S": "0.3",
            "LOG_LEVEL": "INFO",
            "LOG_FORMAT": "json",
        }
        _migrate_from_both_at_once(env, root)
        ingested = dispatchbot("ingest", str(POLICIES / "load-approval.md"), env=env, cwd=root)
        assert ingested.returncode == 0, ingested.stderr
        # Local Qdrant is one process's folder; each replica gets a copy (in production
        # both would use one Qdrant server: what is shared here is the SQL store).
        shutil.copytree(root / "a" / "qdrant", root / "b" / "qdrant")
        envs = {"a": env, "b": env | {"DISPATCHBOT_DATA_DIR": str(root / "b")}}
        processes, replicas, logs = [], [], []
        try:
            for name, replica_env in envs.items():
                port, log = free_port(), root / f"{name}.log"
                output: IO[str] = log.open("w")
                logs.append(output)
                processes.append(start_http_bot(port, env=replica_env, cwd=root, output=output))
                url = f"http://127.0.0.1:{port}"
                replicas.append(Replica(name, url, SlackSender(url + EVENTS_PATH), log))
            for process, replica in zip(processes, replicas, strict=True):
                wait_until_healthy(replica.url, process)
            database = Database(database_url)
            yield Cluster((replicas[0], replicas[1]), module_slack, database)
            database.dispose()
        finally:
            for process in processes:
                stop(process)
            for output in logs:
                output.close()


def _migrate_from_both_at_once(env: dict[str, str], cwd: Path) -> None:
    """Two pods' init containers racing: the advisory lock lets one migrate, then the other."""
    results: list[Any] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(dispatchbot("db", "upgrade", env=env, cwd=cwd))
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [result.returncode for result in results] == [0, 0], [r.stderr for r in results]


def at_once(*sends: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Send the requests from parallel threads, released together."""
    barrier = threading.Barrier(len(sends))
    responses: list[httpx.Response] = []

    def send(request: Callable[[], httpx.Response]) -> None:
        barrier.wait()
        responses.append(request())

    threads = [threading.Thread(target=send, args=(request,)) for request in sends]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


def json_records(replica: Replica) -> list[dict[str, Any]]:
    return [
        json.loads(line) for line in replica.log.read_text().splitlines() if line.startswith("{")
    ]


def test_an_event_delivered_to_both_replicas_is_answered_once(cluster: Cluster) -> None:
    a, b = cluster.replicas
    question = mention("who approves a 30,000 lb load?")
    payload = event_callback(question)

    responses = at_once(lambda: a.send.event(payload), lambda: b.send.event(payload))
    cluster.slack.wait_for("chat.update", lambda call: has_buttons(call))
    # Slack's retry of the same event, later, to the other replica.
    b.send.event(
        payload, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    )
    time.sleep(2)

    assert [response.status_code for response in responses] == [200, 200]
    placeholders = [
        call
        for call in cluster.slack.calls_to("chat.postMessage")
        if call.args.get("thread_ts") == question["ts"]
    ]
    assert len(placeholders) == 1
    with cluster.database.transaction() as session:
        conversation = session.scalars(
            select(Conversation).where(Conversation.thread_ts == question["ts"])
        ).one()
        messages = session.scalar(
            select(func.count(Message.id)).where(Message.conversation_id == conversation.id)
        )
        answers = session.scalar(
            select(func.count(Answer.id))
            .join(Message, Answer.message_id == Message.id)
            .where(Message.conversation_id == conversation.id)
        )
    assert (messages, answers) == (2, 1)  # the question and the one answer
    handled = sum(
        scrape(r.url).value("dispatchbot_slack_events_total", outcome="handled") for r in (a, b)
    )
    duplicates = sum(
        scrape(r.url).value("dispatchbot_slack_events_total", outcome="duplicate") for r in (a, b)
    )
    assert (handled, duplicates) == (1, 2)
    dropped = [
        record
        for replica in (a, b)
        for record in json_records(replica)
        if record["message"].startswith(f"dropped repeated event {payload['event_id']}")
    ]
    assert len(dropped) == 2
    assert all(record["request_id"] for record in dropped)


def test_a_double_click_on_two_replicas_stores_one_vote(cluster: Cluster) -> None:
    a, b = cluster.replicas
    answer_id, thread_ts = seed_answer(cluster.database)

    def vote(replica: Replica, action_id: str) -> Callable[[], httpx.Response]:
        payload = block_action(
            action_id,
            str(answer_id),
            channel="C0DISPATCH",
            message_ts=thread_ts,
            thread_ts=thread_ts,
            user="U0BOB",
        )
        return lambda: replica.send.interaction(payload)

    at_once(vote(a, FEEDBACK_UP), vote(b, FEEDBACK_UP))
    _wait_for(lambda: _votes(cluster.database, answer_id) == [("U0BOB", 1)])
    vote(b, FEEDBACK_DOWN)()
    _wait_for(lambda: _votes(cluster.database, answer_id) == [("U0BOB", -1)])

    assert _votes(cluster.database, answer_id) == [("U0BOB", -1)]


def test_two_people_claiming_on_two_replicas_gives_it_to_one(cluster: Cluster) -> None:
    a, b = cluster.replicas
    escalation_id, _ = seed_escalation(cluster.database, "is a 41k load on a 53' trailer ok?")

    def claim(replica: Replica, user: str) -> Callable[[], httpx.Response]:
        payload = block_action(
            ESCALATION_CLAIM,
            str(escalation_id),
            channel=ONCALL,
            message_ts="1.0",
            thread_ts="1.0",
            user=user,
        )
        return lambda: replica.send.interaction(payload)

    at_once(claim(a, "U0DANA"), claim(b, "U0EVAN"))
    refused = cluster.slack.wait_for(
        "chat.postEphemeral",
        lambda call: "couldn't claim that question" in str(call.args.get("text")),
    )

    with cluster.database.transaction() as session:
        escalation = session.get_one(Escalation, escalation_id)
        status, assignee = escalation.status, escalation.assignee
    assert status is EscalationStatus.CLAIMED
    assert assignee in ("U0DANA", "U0EVAN")
    assert [call.args["user"] for call in refused] == [({"U0DANA", "U0EVAN"} - {assignee}).pop()]


def test_both_replicas_scanning_send_each_reminder_once(cluster: Cluster) -> None:
    marker = "reefer unit quit on I-80 near exit 42, who do i call"
    escalation_id, _ = seed_escalation(
        cluster.database, marker, created_at=utcnow() - timedelta(hours=1)
    )

    def reminders_sent() -> int:
        with cluster.database.transaction() as session:
            return session.get_one(Escalation, escalation_id).reminders_sent

    _wait_for(lambda: reminders_sent() == MAX_REMINDERS, timeout=30)
    # Both replicas keep scanning: give them several more rounds to send a duplicate.
    time.sleep(REMIND_MINUTES * 60 + 1)

    cards = [
        call
        for call in cluster.slack.calls_to("chat.postMessage")
        if call.args["channel"] == ONCALL and marker in block_text(call)
    ]
    assert reminders_sent() == MAX_REMINDERS
    assert len(cards) == MAX_REMINDERS


def _votes(database: Database, answer_id: int) -> list[tuple[str, int]]:
    with database.transaction() as session:
        rows = session.scalars(select(Feedback).where(Feedback.answer_id == answer_id)).all()
        return [(row.user_id, row.value) for row in rows]


def _wait_for(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting for the replicas")
        time.sleep(0.2)
