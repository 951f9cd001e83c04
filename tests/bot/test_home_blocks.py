"""The App Home views: Slack's models and limits, what admins and members read, escaping,
lists cut with "+N more", and the states with nothing (or nothing readable) to show."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.home_blocks import (
    DOCUMENTS_SHOWN,
    ESCALATIONS_SHOWN,
    AdminHome,
    DocumentSummary,
    admin_home_view,
    age,
    member_home_view,
    summarize_documents,
)
from retrieval.versions import StoredVersion
from store.insights import (
    AdapterComparison,
    AdapterStanding,
    DayOfFeedback,
    EscalationQueue,
    FeedbackTally,
    RecentFeedback,
    StoreInsights,
    WaitingEscalation,
)

NOW = datetime(2026, 3, 5, 16, 0, tzinfo=UTC)
HOSTILE = "<!channel> & <https://evil.example|click> *bold* `tick`"


def assert_valid_view(view: dict[str, Any]) -> None:
    """Slack's own models accept the view, within Slack's limits for a Home tab."""
    assert view["type"] == "home"
    View(**view).validate_json()
    assert 1 <= len(view["blocks"]) <= 100
    for block in view["blocks"]:
        Block.parse(block).validate_json()
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "section":
            texts = [block["text"]] if "text" in block else block["fields"]
            assert len(texts) <= 10
            for text in texts:
                # slack_sdk lets an empty text through; Slack does not.
                assert text["text"].strip()
                assert utf16_len(text["text"]) <= (3_000 if "text" in block else 2_000)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def view_text(view: dict[str, Any]) -> str:
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


def standing(
    name: str | None, up: int, down: int, *, answers: int = 10, status: str | None = "promoted"
) -> AdapterStanding:
    return AdapterStanding(
        name=name,
        status=status if name else None,
        promoted_at=NOW - timedelta(days=3) if name else None,
        canary_share=None,
        answers=answers,
        feedback=FeedbackTally(up, down),
    )


def waiting(
    escalation_id: int,
    *,
    ago: timedelta,
    priority: str = "normal",
    trigger: str = "button",
    assignee: str | None = None,
) -> WaitingEscalation:
    return WaitingEscalation(
        id=escalation_id,
        status="claimed" if assignee else "open",
        trigger=trigger,
        priority=priority,
        assignee=assignee,
        requested_by="U0ALICE",
        channel_id="C0DISPATCH",
        created_at=NOW - ago,
    )


def week(*tallies: tuple[int, int], reasons: tuple[tuple[str, int], ...] = ()) -> RecentFeedback:
    first = NOW.date() - timedelta(days=len(tallies) - 1)
    return RecentFeedback(
        days=tuple(
            DayOfFeedback(first + timedelta(days=offset), FeedbackTally(up, down))
            for offset, (up, down) in enumerate(tallies)
        ),
        top_reasons=reasons,
    )


def document(
    doc_id: str, title: str = "Load Approval Thresholds", **fields: Any
) -> DocumentSummary:
    values: dict[str, Any] = {
        "in_force": 3,
        "in_force_since": date(2026, 3, 1),
        "older": 2,
        "scheduled": 0,
        "next_from": None,
    }
    return DocumentSummary(doc_id=doc_id, title=title, **(values | fields))


def busy_home(**changes: Any) -> AdminHome:
    store = StoreInsights(
        adapters=AdapterComparison(
            current=standing("voice-v2", 42, 8, answers=412),
            previous=standing("voice-v1", 30, 10, answers=380, status="retired"),
            canary=None,
        ),
        escalations=EscalationQueue(
            shown=(
                waiting(7, ago=timedelta(hours=2, minutes=5), priority="high", trigger="sensitive"),
                waiting(3, ago=timedelta(minutes=12), assignee="U0BOB"),
            ),
            total=2,
        ),
        feedback=week(
            (1, 0),
            (0, 0),
            (2, 1),
            (0, 0),
            (3, 0),
            (1, 2),
            (5, 1),
            reasons=(
                ("wrong", 3),
                ("out_of_date", 1),
            ),
        ),
    )
    values: dict[str, Any] = {
        "now": NOW,
        "store": store,
        "documents": [
            document("load-approval"),
            document(
                "service-slas", "Service SLAs", older=0, scheduled=1, next_from=date(2026, 7, 1)
            ),
        ],
        "reference": "3f9a2c1b",
    }
    return AdminHome(**(values | changes))


def test_the_admin_view_shows_adapters_escalations_feedback_and_documents() -> None:
    view = admin_home_view(busy_home())

    assert_valid_view(view)
    assert view["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "dispatchbot · admin overview", "emoji": True},
    }
    text = view_text(view)
    # Adapters: the one answering against the one before it.
    assert "*Answering now*\n`voice-v2`" in text
    assert ":thumbsup: 42 · :thumbsdown: 8 · *84%* :thumbsup:" in text
    assert "412 answers" in text
    assert "*Before it (a rollback returns to it)*\n`voice-v1`" in text
    assert "rate 84% against 75%: 9 points better than before (50 and 40 votes)." in text
    # Escalations: priority, age, who has it.
    assert "*Open escalations* (2)" in text
    assert (
        ":red_circle: *#7* · Sensitive topic · 2 h 5 min · _unclaimed_ · asked by <@U0ALICE> "
        "in <#C0DISPATCH>" in text
    )
    assert (
        ":large_blue_circle: *#3* · Asked for a person (button) · 12 min · claimed by <@U0BOB>"
        in text
    )
    assert "more" not in text.split("*Open escalations*")[1].split("*Feedback")[0]
    # Feedback: a row per day, totals, the reasons picked most.
    assert "Thu 5 Mar" in text
    assert "Fri 27 Feb" in text
    assert "total        12     4   75%" in text
    assert "*Why :thumbsdown:* Wrong (3), Out of date (1)" in text
    # Documents: the version in force and the others.
    assert (
        "• *Load Approval Thresholds* `load-approval` · v3 in force since 1 Mar 2026 · 2 older"
        in text
    )
    assert "`service-slas` · v3 in force since 1 Mar 2026 · 1 scheduled from 1 Jul 2026" in text


def test_the_updated_time_is_shown_in_the_readers_time_zone() -> None:
    view = admin_home_view(busy_home())

    stamp = int(NOW.timestamp())
    assert f"<!date^{stamp}^{{date_short_pretty}} at {{time}}|2026-03-05 16:00 UTC>" in view_text(
        view
    )


def test_long_lists_are_cut_with_a_count_of_the_rest() -> None:
    home = busy_home()
    assert home.store is not None
    many = tuple(waiting(i, ago=timedelta(minutes=i)) for i in range(1, 31))
    store = StoreInsights(
        adapters=home.store.adapters,
        escalations=EscalationQueue(shown=many, total=42),
        feedback=home.store.feedback,
    )
    documents = [document(f"policy-{i:03d}") for i in range(57)]

    view = admin_home_view(busy_home(store=store, documents=documents))

    assert_valid_view(view)
    text = view_text(view)
    assert text.count("· _unclaimed_ ·") == ESCALATIONS_SHOWN
    assert f"+{42 - ESCALATIONS_SHOWN} more: `dispatchbot escalations list`" in text
    assert text.count("• *Load Approval Thresholds*") == DOCUMENTS_SHOWN
    assert f"+{57 - DOCUMENTS_SHOWN} more: `dispatchbot documents list`" in text
    assert "*Policy documents* (57)" in text


def test_the_longest_texts_still_fit_slacks_limits() -> None:
    huge = "🚚" * 2_000 + "<&>" * 500
    store = StoreInsights(
        adapters=AdapterComparison(
            current=standing(huge, 1, 0), previous=standing(huge, 0, 1), canary=standing(huge, 3, 1)
        ),
        escalations=EscalationQueue(
            shown=tuple(
                WaitingEscalation(
                    id=i,
                    status="claimed",
                    trigger=huge,
                    priority=huge,
                    assignee=huge,
                    requested_by=huge,
                    channel_id=huge,
                    created_at=NOW - timedelta(days=400),
                )
                for i in range(ESCALATIONS_SHOWN)
            ),
            total=10_000,
        ),
        feedback=week(*[(10_000, 10_000)] * 7, reasons=((huge, 5), ("x", 1))),
    )
    documents = [
        DocumentSummary(huge + str(i), huge, 10_000, date(2026, 1, 1), 10_000, 10_000, NOW.date())
        for i in range(100)
    ]

    view = admin_home_view(busy_home(store=store, documents=documents, reference=huge))

    assert_valid_view(view)
    assert "<&>" not in view_text(view)


def test_text_people_wrote_is_escaped() -> None:
    store = busy_home().store
    assert store is not None
    hostile_store = StoreInsights(
        adapters=AdapterComparison(current=standing(HOSTILE, 1, 0), previous=None, canary=None),
        escalations=EscalationQueue(
            shown=(waiting(1, ago=timedelta(hours=1), trigger=HOSTILE),), total=1
        ),
        feedback=week((0, 1), reasons=((HOSTILE, 1),)),
    )
    view = admin_home_view(busy_home(store=hostile_store, documents=[document(HOSTILE, HOSTILE)]))

    assert_valid_view(view)
    text = view_text(view)
    assert "<!channel>" not in text
    assert "<https://evil" not in text
    assert "• *&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt; *bold* `tick`*" in text
    # Inside code format a backtick would end it early.
    assert "`&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt; *bold* 'tick'`" in text


def test_empty_states_say_there_is_nothing_yet() -> None:
    store = StoreInsights(
        adapters=AdapterComparison(
            current=standing(None, 0, 0, answers=0), previous=None, canary=None
        ),
        escalations=EscalationQueue(shown=(), total=0),
        feedback=week(*[(0, 0)] * 7),
    )

    view = admin_home_view(busy_home(store=store, documents=[]))

    assert_valid_view(view)
    text = view_text(view)
    assert "*Answering now*\nbase model (no adapter)\nNo feedback yet\n0 answers" in text
    assert "No adapter has been promoted yet: the base model answers." in text
    assert ":white_check_mark: None: nobody is waiting." in text
    assert "*Feedback, last 7 days*\nNo votes yet." in text
    assert "None ingested yet: `dispatchbot ingest PATH` adds them." in text


def test_adapters_without_feedback_are_not_compared() -> None:
    store = busy_home().store
    assert store is not None
    adapters = AdapterComparison(
        current=standing("voice-v2", 0, 0, answers=3),
        previous=standing(None, 5, 5),
        canary=AdapterStanding("voice-v3", "candidate", None, 0.1, 1, FeedbackTally()),
    )
    view = admin_home_view(
        busy_home(store=StoreInsights(adapters, store.escalations, store.feedback))
    )

    assert_valid_view(view)
    text = view_text(view)
    assert "*Answering now*\n`voice-v2`" in text
    assert "No feedback yet\n3 answers" in text
    assert "*Before it (a rollback returns to it)*\nbase model (no adapter)" in text
    assert "*Canary*\n`voice-v3` · candidate · 10% of questions\nNo feedback yet\n1 answer" in text
    assert "No comparison yet" in text


@pytest.mark.parametrize("broken", ["store", "documents", "both"])
def test_a_part_that_could_not_be_read_is_named_with_the_reference(broken: str) -> None:
    changes: dict[str, Any] = {}
    if broken in ("store", "both"):
        changes["store"] = None
    if broken in ("documents", "both"):
        changes["documents"] = None

    view = admin_home_view(busy_home(**changes))

    assert_valid_view(view)
    text = view_text(view)
    store_down = "*Adapters, escalations and feedback are unavailable:* the database did not answer"
    documents_down = "*Policy documents are unavailable:* the policy store (Qdrant) did not"
    assert (store_down in text) == (broken != "documents")
    assert (documents_down in text) == (broken != "store")
    assert ("*Open escalations*" in text) == (broken == "documents")
    assert ("*Policy documents* (2)" in text) == (broken == "store")
    assert "(reference `3f9a2c1b`)" in text


def test_members_see_what_dispatchbot_does_and_how_to_ask() -> None:
    view = member_home_view("UBOT0001", "get me a <dispatcher>")

    assert_valid_view(view)
    text = view_text(view)
    assert view["blocks"][0]["text"]["text"] == "dispatchbot"
    assert "Mention <@UBOT0001> in a channel" in text
    assert "direct message" in text
    assert ":thumbsup: or :thumbsdown:" in text
    assert (
        "*Ask a person* hands the thread to the dispatch team, or write "
        '"get me a &lt;dispatcher&gt;"' in text
    )
    assert "Adapter" not in text


def test_the_member_view_works_without_a_bot_id_or_a_phrase() -> None:
    view = member_home_view(None, None)

    assert_valid_view(view)
    assert "Mention @dispatchbot in a channel" in view_text(view)
    assert ", or write" not in view_text(view)


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        admin_home_view(busy_home(now=NOW.replace(tzinfo=None)))


@pytest.mark.parametrize(
    ("waited", "shown"),
    [
        (timedelta(seconds=-30), "just now"),
        (timedelta(seconds=59), "just now"),
        (timedelta(minutes=1), "1 min"),
        (timedelta(minutes=59, seconds=59), "59 min"),
        (timedelta(hours=1), "1 h"),
        (timedelta(hours=2, minutes=5), "2 h 5 min"),
        (timedelta(days=1), "1 d"),
        (timedelta(days=3, hours=4, minutes=59), "3 d 4 h"),
    ],
)
def test_ages_read_like_people_say_them(waited: timedelta, shown: str) -> None:
    assert age(NOW - waited, NOW) == shown


def stored(
    doc_id: str, version: int, effective_from: date, effective_to: date | None
) -> StoredVersion:
    return StoredVersion(
        doc_id=doc_id,
        version=version,
        title=f"{doc_id} v{version}",
        source=f"{doc_id}.md",
        content_hash="0" * 64,
        index_signature="sig",
        effective_from=effective_from,
        effective_to=effective_to,
        declared_effective_to=None,
        audience="all",
        tags=(),
        chunk_count=3,
        url=None,
        ingested_at=NOW,
    )


def test_documents_are_summarized_by_the_version_in_force_today() -> None:
    today = date(2026, 3, 5)
    registry = {
        "service-slas": [
            stored("service-slas", 2, date(2026, 7, 1), None),
            stored("service-slas", 1, date(2025, 1, 1), date(2026, 7, 1)),
        ],
        "load-approval": [
            stored("load-approval", 1, date(2024, 1, 1), date(2025, 1, 1)),
            stored("load-approval", 2, date(2025, 1, 1), date(2026, 3, 1)),
            stored("load-approval", 3, date(2026, 3, 1), None),
        ],
        "fuel-card": [stored("fuel-card", 1, date(2026, 4, 1), None)],
        "withdrawn": [stored("withdrawn", 1, date(2024, 1, 1), date(2025, 1, 1))],
    }

    summaries = summarize_documents(registry, today)

    assert summaries == [
        DocumentSummary("fuel-card", "fuel-card v1", None, None, 0, 1, date(2026, 4, 1)),
        DocumentSummary("load-approval", "load-approval v3", 3, date(2026, 3, 1), 2, 0, None),
        DocumentSummary(
            "service-slas", "service-slas v1", 1, date(2025, 1, 1), 0, 1, date(2026, 7, 1)
        ),
        DocumentSummary("withdrawn", "withdrawn v1", None, None, 1, 0, None),
    ]
    text = view_text(admin_home_view(busy_home(documents=summaries)))
    assert "`fuel-card` · _no version in force today_ · 1 scheduled from 1 Apr 2026" in text
    assert "`withdrawn` · _no version in force today_ · 1 older" in text
