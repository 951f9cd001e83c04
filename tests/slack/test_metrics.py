"""/metrics: what an operator graphs and alerts on, checked against what the bot just did."""

from __future__ import annotations

from bot_harness import RunningBot, StartBot
from metrics_support import Scrape, scrape, wait_for_metric
from seeding import seed_answer, seed_escalation
from slack_mock import block_action, event_callback, has_buttons, mention

from bot import metrics
from bot.blocks import FEEDBACK_DOWN, FEEDBACK_UP
from bot.escalation_blocks import ESCALATION_CLAIM
from bot.metrics import EscalationBacklog
from store.database import Database

STAGES = ("retrieval", "prompt", "model", "store")


def test_an_answer_is_measured_by_stage_tokens_and_evidence(start_bot: StartBot) -> None:
    bot = start_bot()
    before = scrape(bot.url)

    bot.send.event(event_callback(mention("who approves a 30,000 lb load?")))
    bot.slack.wait_for("chat.update", has_buttons)
    after = wait_for_metric(
        bot.url,
        lambda now: (
            now.value("dispatchbot_answer_seconds_count", milestone="final")
            > before.value("dispatchbot_answer_seconds_count", milestone="final")
        ),
    )

    def grew(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    for stage in STAGES:
        assert grew("dispatchbot_answer_stage_seconds_count", stage=stage) == 1, stage
        assert grew("dispatchbot_answer_stage_seconds_sum", stage=stage) > 0, stage
    assert grew("dispatchbot_answer_seconds_count", milestone="first_text") == 1
    assert grew("dispatchbot_answer_seconds_count", milestone="final") == 1
    assert grew("dispatchbot_model_first_token_seconds_count") == 1
    assert grew("dispatchbot_tokens_total", kind="prompt", adapter="base") > 100
    assert grew("dispatchbot_tokens_total", kind="completion", adapter="base") >= 1
    assert grew("dispatchbot_retrieval_top_score_count") == 1
    assert grew("dispatchbot_answers_total") == 1
    assert grew("dispatchbot_slack_events_total", outcome="handled") == 1
    # The final message comes after the first text, and both histograms agree on it.
    final_s = grew("dispatchbot_answer_seconds_sum", milestone="final")
    assert 0 < grew("dispatchbot_answer_seconds_sum", milestone="first_text") <= final_s


def _click(bot: RunningBot, action_id: str, value: str, thread_ts: str, user: str) -> None:
    payload = block_action(
        action_id, value, channel="C0DISPATCH", message_ts=thread_ts, thread_ts=thread_ts, user=user
    )
    assert bot.send.interaction(payload).status_code == 200


def test_votes_are_counted_by_value_and_the_adapter_that_answered(start_bot: StartBot) -> None:
    bot = start_bot()
    answer_id, thread_ts = seed_answer(bot.database, adapter="dispatch-v7")
    before = scrape(bot.url)

    _click(bot, FEEDBACK_UP, str(answer_id), thread_ts, user="U0BOB")
    _click(bot, FEEDBACK_DOWN, str(answer_id), thread_ts, user="U0CAROL")
    after = wait_for_metric(
        bot.url,
        lambda now: (
            now.value("dispatchbot_feedback_total")
            >= before.value("dispatchbot_feedback_total") + 2
        ),
    )

    for value in ("up", "down"):
        counted = after.value("dispatchbot_feedback_total", value=value, adapter="dispatch-v7")
        assert (
            counted - before.value("dispatchbot_feedback_total", value=value, adapter="dispatch-v7")
            == 1
        )


def test_escalations_are_counted_as_they_change_and_the_backlog_comes_from_the_store(
    start_bot: StartBot,
) -> None:
    bot = start_bot(escalation_channel="C0ONCALL")
    before = scrape(bot.url)
    assert before.value("dispatchbot_escalations_unresolved") == 0

    bot.send.event(event_callback(mention("get me a dispatcher please")))
    card = bot.slack.wait_for("chat.postMessage", lambda call: call.args["channel"] == "C0ONCALL")[
        0
    ]
    opened = wait_for_metric(
        bot.url, lambda now: now.value("dispatchbot_escalations_unresolved", state="open") == 1
    )
    assert opened.value("dispatchbot_escalations_unresolved", state="open", trigger="asked") == 1
    assert (
        opened.value("dispatchbot_escalations_total", trigger="asked", state="open")
        - before.value("dispatchbot_escalations_total", trigger="asked", state="open")
        == 1
    )
    assert opened.value("dispatchbot_escalation_oldest_open_seconds") >= 0

    escalation_id = next(
        element["value"]
        for block in card.args["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
        if element["action_id"] == ESCALATION_CLAIM
    )
    payload = block_action(
        ESCALATION_CLAIM,
        escalation_id,
        channel="C0ONCALL",
        message_ts=card.response["ts"],
        thread_ts=card.response["ts"],
        user="U0DISPATCHER",
    )
    bot.send.interaction(payload)
    claimed = wait_for_metric(
        bot.url, lambda now: now.value("dispatchbot_escalations_unresolved", state="claimed") == 1
    )
    assert claimed.value("dispatchbot_escalations_unresolved", state="open") == 0
    assert claimed.value("dispatchbot_escalation_oldest_open_seconds") == 0
    assert (
        claimed.value("dispatchbot_escalations_total", state="claimed")
        - before.value("dispatchbot_escalations_total", state="claimed")
        == 1
    )


def test_slack_errors_and_rate_limit_retries_are_counted_by_method(start_bot: StartBot) -> None:
    # A mention where the bot does not answer gets a private note: make Slack rate-limit
    # that call once, then refuse it.
    bot = start_bot(slack_answer_channels=["C0HELPDESK"])
    replies = iter(
        [
            {"ok": False, "error": "ratelimited", "_http_status": 429, "_retry_after": 0},
            {"ok": False, "error": "user_not_in_channel"},
        ]
    )
    bot.slack.responses["chat.postEphemeral"] = lambda args: next(replies)
    before = scrape(bot.url)

    bot.send.event(event_callback(mention("who approves a 30,000 lb load?")))
    after = wait_for_metric(
        bot.url,
        lambda now: (
            now.value("dispatchbot_slack_api_errors_total", error="user_not_in_channel")
            > before.value("dispatchbot_slack_api_errors_total", error="user_not_in_channel")
        ),
    )

    def grew(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    method = "chat.postEphemeral"
    assert len(bot.slack.calls_to(method)) == 2  # the 429, then the retry
    assert grew("dispatchbot_slack_rate_limit_retries_total", method=method) == 1
    assert grew("dispatchbot_slack_api_errors_total", method=method, error="http_429") == 1
    assert (
        grew("dispatchbot_slack_api_errors_total", method=method, error="user_not_in_channel") == 1
    )
    assert grew("dispatchbot_slack_api_errors_total", method="chat.postMessage") == 0


def test_a_store_outage_leaves_the_other_metrics_served() -> None:
    unreachable = Database("postgresql+psycopg://dispatchbot@127.0.0.1:9/dispatchbot")
    try:
        page = Scrape(metrics.render(EscalationBacklog(unreachable)).decode())
    finally:
        unreachable.dispose()

    assert "# HELP dispatchbot_answer_stage_seconds " in page.text
    assert page.has("process_resident_memory_bytes")
    assert "dispatchbot_escalations_unresolved" not in page.text


def test_the_backlog_counts_open_escalations_from_any_replica(database: Database) -> None:
    seed_escalation(database, "first")
    seed_escalation(database, "second")

    page = Scrape(metrics.render(EscalationBacklog(database)).decode())

    assert page.value("dispatchbot_escalations_unresolved", state="open", trigger="asked") == 2
    assert page.value("dispatchbot_escalation_oldest_open_seconds") >= 0
