"""The block builders fed anything: any Unicode, Slack markup, huge strings, and random
source lists, ids, links and Home tab data. They never raise, and what they build is valid
for Slack's models and within Slack's limits (test_blocks.py and its neighbours fuzz the
answer text with fixed sources; this varies everything else)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from block_checks import assert_valid
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_home_blocks import assert_valid_view

from bot.blocks import SourceRef, answer_messages, error_message, streaming_message
from bot.escalation_blocks import TRIGGER_LABELS, EscalationCard, escalation_card
from bot.home_blocks import AdminHome, DocumentSummary, admin_home_view, member_home_view
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

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

markup = st.sampled_from(
    [
        "<!channel>", "<!here|here>", "<@U0ALICE>", "<#C0DISP|dispatch>", "<https://e.com|x>",
        "<", ">", "&", "&amp;", "*", "_", "~", "`", "```", "```\n", "> ", "\n", "\n\n", " ",
        "|", "[1]", "\u200b", "\u202e", "\ufeff", "\x00", "\x1b", "👍🏽", "e\u0301", "𝔘",
    ]
)  # fmt: skip
# Any text, Slack markup run together, or something repeated into a huge string.
texts = st.one_of(
    st.text(max_size=200),
    st.lists(markup | st.text(max_size=8), max_size=40).map("".join),
    st.builds(
        lambda piece, times: piece * times,
        st.text(min_size=1, max_size=6) | markup,
        st.integers(min_value=1, max_value=6_000),
    ),
)
# For fields of list items: still long enough to need cutting, cheaper to build by the dozen.
item_texts = st.one_of(
    st.text(max_size=40),
    st.lists(markup, max_size=8).map("".join),
    st.builds(lambda piece, times: piece * times, markup, st.integers(1, 300)),
)
days = st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 12, 31))
# Hypothesis takes naive bounds and attaches the time zone itself.
moments = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)
counts = st.integers(min_value=0, max_value=10**9)
sources = st.lists(
    st.builds(
        SourceRef,
        title=texts,
        section=texts | st.lists(texts, max_size=4).map(" > ".join),
        version=st.integers(min_value=0, max_value=10**12),
        effective_from=days,
        url=st.none() | texts | texts.map(lambda tail: "https://wiki.example.com/" + tail),
    ),
    max_size=12,
)


@FUZZ
@given(markdown=texts, refs=sources, answer_id=st.integers(min_value=1, max_value=2**63 - 1))
def test_answers_with_any_sources_are_valid_messages(
    markdown: str, refs: list[SourceRef], answer_id: int
) -> None:
    for message in answer_messages(markdown, refs, answer_id):
        assert_valid(message)
    assert_valid(streaming_message(markdown))


@FUZZ
@given(reference=texts, partial=texts)
def test_any_apology_is_a_valid_message(reference: str, partial: str) -> None:
    assert_valid(error_message(reference, partial))


@FUZZ
@given(
    card=st.builds(
        EscalationCard,
        escalation_id=st.integers(min_value=1, max_value=2**63 - 1),
        question=texts,
        asker_id=texts,
        trigger=st.sampled_from(sorted(TRIGGER_LABELS)) | texts,
        priority=st.sampled_from(["high", "normal"]),
        thread_link=st.none() | texts,
        channel_id=texts,
        mention=texts,
        draft=st.none() | texts,
        sources=sources.map(tuple),
        status=st.sampled_from(["open", "claimed", "resolved"]),
        assignee=st.none() | texts,
        resolution=st.none() | texts,
        reminder=st.integers(min_value=0, max_value=1_000),
    )
)
# Found by this test: ids and links were shown whole, however long.
@example(
    card=EscalationCard(
        escalation_id=1,
        question="",
        asker_id="0" * 1_758,
        trigger="",
        priority="normal",
        thread_link="https://northwind.slack.com/archives/" + "p" * 12_000,
        channel_id="<!channel>" * 995,
        mention="",
        status="claimed",
        assignee="U" * 12_000,
    )
)
def test_any_escalation_card_is_a_valid_message(card: EscalationCard) -> None:
    assert_valid(escalation_card(card))


tallies = st.builds(FeedbackTally, up=counts, down=counts)
standings = st.builds(
    AdapterStanding,
    name=st.none() | item_texts,
    status=st.none() | item_texts,
    promoted_at=st.none() | moments,
    canary_share=st.none() | st.floats(min_value=0, max_value=1),
    answers=counts,
    feedback=tallies,
)
insights = st.builds(
    StoreInsights,
    adapters=st.builds(
        AdapterComparison,
        current=standings,
        previous=st.none() | standings,
        canary=st.none() | standings,
    ),
    escalations=st.lists(
        st.builds(
            WaitingEscalation,
            id=st.integers(min_value=1, max_value=2**63 - 1),
            status=st.sampled_from(["open", "claimed"]),
            trigger=st.sampled_from(sorted(TRIGGER_LABELS)) | item_texts,
            priority=st.sampled_from(["high", "normal"]),
            assignee=st.none() | item_texts,
            requested_by=st.none() | item_texts,
            channel_id=item_texts,
            created_at=moments,
        ),
        max_size=17,  # a few more than the tab shows
    ).flatmap(
        lambda shown: st.builds(
            EscalationQueue, shown=st.just(tuple(shown)), total=st.integers(len(shown), 10**6)
        )
    ),
    feedback=st.builds(
        RecentFeedback,
        days=st.lists(st.builds(DayOfFeedback, day=days, feedback=tallies), max_size=7).map(tuple),
        top_reasons=st.lists(st.tuples(item_texts, counts), max_size=5).map(tuple),
    ),
)
documents = st.lists(
    st.builds(
        DocumentSummary,
        doc_id=item_texts,
        title=item_texts,
        in_force=st.none() | counts,
        in_force_since=st.none() | days,
        older=counts,
        scheduled=counts,
        next_from=st.none() | days,
    ),
    max_size=23,  # a few more than the tab shows
)


LONG_STATUS = StoreInsights(
    adapters=AdapterComparison(
        current=AdapterStanding("adapter-7", "canary " * 4_000, None, None, 0, FeedbackTally()),
        previous=None,
        canary=None,
    ),
    escalations=EscalationQueue(shown=(), total=0),
    feedback=RecentFeedback(days=(), top_reasons=()),
)


@FUZZ
@given(
    store=st.none() | insights,
    docs=st.none() | documents,
    reference=st.none() | texts,
    now=moments.map(lambda moment: moment + timedelta(days=1)),
)
# Found by this test: an adapter's status was shown whole, however long.
@example(store=LONG_STATUS, docs=[], reference=None, now=datetime(2026, 3, 5, tzinfo=UTC))
def test_any_home_tab_is_a_valid_view(
    store: StoreInsights | None,
    docs: list[DocumentSummary] | None,
    reference: str | None,
    now: datetime,
) -> None:
    assert_valid_view(admin_home_view(AdminHome(now, store, docs, reference)))


@FUZZ
@given(bot_user_id=st.none() | texts, phrase=st.none() | texts)
@example(bot_user_id="0000" * 698, phrase=None)  # found by this test: the id was shown whole
def test_any_member_home_tab_is_a_valid_view(bot_user_id: str | None, phrase: str | None) -> None:
    assert_valid_view(member_home_view(bot_user_id, phrase))
