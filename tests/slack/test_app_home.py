"""The App Home tab through the real Bolt app over HTTP: a signed app_home_opened event,
a store seeded through the repository, the embedded policy store with ingested policies, and
the view that reaches the mock's views.publish.

The Home tab never asks the model, so these tests start no vLLM: a closed port stands in
for it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bot_harness import POLICIES, RunningBot, StartBot
from embedding_support import default_embedder
from home_seed import Seeder
from policy_store_support import COLLECTION, ingested_search
from qdrant_client import QdrantClient
from slack_mock import BOT_USER_ID, app_home_opened, event_callback
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View
from sqlalchemy.engine import make_url
from vllm_support import free_port

from retrieval.search import PolicySearch
from retrieval.server_store import ServerStore
from store.models import EscalationPriority, EscalationTrigger, ModelVersionStatus

ADMIN = "U0ADMIN"
UP, DOWN = 1, -1


@pytest.fixture
def model_endpoint() -> str:
    """Replaces the session's model for this module: nothing here generates an answer."""
    return f"http://127.0.0.1:{free_port()}/v1"


@pytest.fixture(scope="module")
def ingested_policies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolicySearch]:
    """Two versions of one policy (v2 superseded by v3) and one more document."""
    corpus = [
        POLICIES / name for name in ("load-approval.md", "load-approval-v2.md", "service-slas.md")
    ]
    with ingested_search(tmp_path_factory.mktemp("store"), corpus) as search:
        yield search


@pytest.fixture
def qdrant_reachable() -> bool:
    return True


@pytest.fixture
def policy_search(qdrant_reachable: bool, ingested_policies: PolicySearch) -> PolicySearch:
    if qdrant_reachable:
        return ingested_policies
    # A Qdrant server that is not there: nothing listens on the port.
    url = f"http://127.0.0.1:{free_port()}"
    dead = QdrantClient(url=url, timeout=1, check_compatibility=False)
    return PolicySearch(ServerStore(dead, COLLECTION, url), default_embedder())


def seed_overview(bot: RunningBot) -> None:
    """Two adapters with votes, two waiting escalations, a resolved one, a week of votes."""
    with bot.database.transaction() as session:
        seed = Seeder(session, datetime.now(UTC))
        seed.version("voice-v1", ModelVersionStatus.RETIRED, promoted_ago=timedelta(days=9))
        seed.version("voice-v2", ModelVersionStatus.PROMOTED, promoted_ago=timedelta(days=3))
        seed.votes(seed.answer("voice-v1"), [UP, DOWN], ago=timedelta(days=8))
        seed.votes(seed.answer("voice-v2"), [UP, UP, UP], ago=timedelta(days=1))
        seed.votes(seed.answer("voice-v2"), [DOWN], reasons=["out_of_date"], ago=timedelta(0))
        seed.escalation(
            trigger=EscalationTrigger.SENSITIVE,
            priority=EscalationPriority.HIGH,
            ago=timedelta(hours=2, minutes=5, seconds=30),
        )
        seed.escalation(
            trigger=EscalationTrigger.ASKED, ago=timedelta(minutes=40), assignee="U0BOB"
        )
        seed.escalation(trigger=EscalationTrigger.BUTTON, ago=timedelta(days=2), resolved=True)


def open_home(bot: RunningBot, user: str, tab: str = "home") -> None:
    response = bot.send.event(event_callback(app_home_opened(user=user, tab=tab)))
    assert response.status_code == 200
    assert response.elapsed.total_seconds() < 3


def published_view(bot: RunningBot, user: str) -> dict[str, Any]:
    call = bot.slack.wait_for("views.publish", lambda c: c.args["user_id"] == user, timeout=20)
    view = call[0].args["view"]
    assert view["type"] == "home"
    View(**view).validate_json()
    for block in view["blocks"]:
        Block.parse(block).validate_json()
    return view


def text_of(view: dict[str, Any]) -> str:
    parts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                parts.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(view["blocks"])
    return "\n".join(parts)


def test_an_admin_sees_adapters_escalations_feedback_and_documents(start_bot: StartBot) -> None:
    bot = start_bot(slack_admin_users=[ADMIN])
    seed_overview(bot)

    open_home(bot, ADMIN)

    text = text_of(published_view(bot, ADMIN))
    assert "*Answering now*\n`voice-v2`" in text
    assert ":thumbsup: 3 · :thumbsdown: 1 · *75%* :thumbsup:" in text
    assert "*Before it (a rollback returns to it)*\n`voice-v1`" in text
    assert "rate 75% against 50%: 25 points better than before" in text
    assert "*Open escalations* (2)" in text
    assert ":red_circle: *#" in text
    assert "Sensitive topic · 2 h 5 min · _unclaimed_" in text
    assert "Asked for a person in words · 40 min · claimed by <@U0BOB>" in text
    assert "*Feedback, last 7 days*" in text
    assert ":thumbsup: 3 · :thumbsdown: 1" in text.split("*Feedback, last 7 days*")[1]
    assert "*Why :thumbsdown:* Out of date (1)" in text
    assert "*Policy documents* (2)" in text
    assert (
        "• *Load Approval Thresholds* `load-approval` · v3 in force since 1 Mar 2026 · 1 older"
        in text
    )
    assert "`service-slas`" in text


def test_everyone_else_sees_how_to_ask(start_bot: StartBot) -> None:
    bot = start_bot(slack_admin_users=[ADMIN])
    seed_overview(bot)

    open_home(bot, "U0ALICE")

    text = text_of(published_view(bot, "U0ALICE"))
    assert f"Mention <@{BOT_USER_ID}> in a channel" in text
    assert "*Ask a person*" in text
    assert "voice-v2" not in text
    assert "escalations" not in text.lower()


def test_the_messages_tab_publishes_nothing(start_bot: StartBot) -> None:
    bot = start_bot(slack_admin_users=[ADMIN])

    open_home(bot, ADMIN, tab="messages")
    open_home(bot, "U0ALICE")
    published_view(bot, "U0ALICE")

    assert [call.args["user_id"] for call in bot.slack.calls_to("views.publish")] == ["U0ALICE"]


def test_with_the_database_down_the_admin_view_says_so_and_shows_the_rest(
    start_bot: StartBot, caplog: pytest.LogCaptureFixture
) -> None:
    bot = start_bot(slack_admin_users=[ADMIN])
    bot.database.dispose()
    # A store that can no longer be read: the file is no database any more.
    path = Path(make_url(bot.settings.database_url).database or "")
    for leftover in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        leftover.unlink(missing_ok=True)
    path.write_bytes(b"this is not a database" * 100)

    with caplog.at_level(logging.ERROR, logger="bot.home"):
        open_home(bot, ADMIN)
        text = text_of(published_view(bot, ADMIN))

    assert "*Adapters, escalations and feedback are unavailable:* the database" in text
    assert "*Open escalations*" not in text
    assert "*Policy documents* (2)" in text
    [failure] = [r for r in caplog.records if "could not read the store" in r.getMessage()]
    assert failure.exc_info is not None
    reference = failure.getMessage().rsplit("request=", 1)[1]
    assert f"(reference `{reference}`)" in text


@pytest.mark.parametrize("qdrant_reachable", [False])
def test_with_qdrant_down_the_admin_view_says_so_and_shows_the_rest(
    start_bot: StartBot, caplog: pytest.LogCaptureFixture
) -> None:
    bot = start_bot(slack_admin_users=[ADMIN])
    seed_overview(bot)

    with caplog.at_level(logging.ERROR, logger="bot.home"):
        open_home(bot, ADMIN)
        text = text_of(published_view(bot, ADMIN))

    assert "*Policy documents are unavailable:* the policy store (Qdrant) did not answer" in text
    assert "*Answering now*\n`voice-v2`" in text
    assert "*Open escalations* (2)" in text
    assert any("could not read the policy documents" in r.getMessage() for r in caplog.records)
