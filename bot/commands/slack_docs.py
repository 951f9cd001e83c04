"""`dispatchbot slack-docs`: what people see in Slack, as Block Kit JSON, without Slack.

The files are built by the same block builders the bot uses, from fixed sample data, so
they change only when the builders do; a test regenerates them and compares. Each file
pastes into Block Kit Builder (https://app.slack.com/block-kit-builder): a message as
`{"blocks": [...]}`, a Home tab as its view.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from bot.blocks import QuoteRef, SourceRef, answer_messages
from bot.commands.common import fail
from bot.escalation_blocks import EscalationCard, escalation_card
from bot.home_blocks import (
    AdminHome,
    DocumentSummary,
    GapLine,
    VerifiedLine,
    VerifiedOverview,
    admin_home_view,
    member_home_view,
)
from bot.messages_tab import PROMPTS_TITLE, choose_prompts
from bot.replies import LOADING_MESSAGES, STATUS, footer_blocks
from bot.steps import CHECK_PASSED, check_done, found_steps
from serving.assistant import SourcesFound
from serving.escalation_rules import EscalationRules
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
from store.settings import Settings

console = Console(soft_wrap=True)

DEFAULT_OUT = Path("docs/slack")

# One moment for every sample, so the files only change when the builders do.
NOW = datetime(2026, 6, 3, 14, 30, tzinfo=UTC)
BOT_USER_ID = "U0DISPATCHBOT"

LOAD_APPROVAL = SourceRef(
    doc_id="load-approval-thresholds",
    title="Load Approval Thresholds",
    section="Load Approval Thresholds > Approval by weight",
    version=3,
    effective_from=date(2026, 3, 1),
    url="https://intranet.northwind.example/policies/load-approval",
)
HAZMAT = SourceRef(
    doc_id="hazardous-materials-handling",
    title="Hazardous Materials Handling",
    section="Hazardous Materials Handling > Who may dispatch hazmat",
    version=2,
    effective_from=date(2026, 1, 15),
    url="https://intranet.northwind.example/policies/hazmat",
)
LOAD_APPROVAL_TABLE = (
    "| Cargo weight | Who approves | Where to reach them |\n"
    "|---|---|---|\n"
    "| Up to 26,000 lb | Dispatcher assigned to the load (self-approval) | n/a |\n"
    "| 26,001 to 40,000 lb | Shift lead on duty | Dispatch desk, ext. 4411 |\n"
    "| 40,001 lb and over | Operations manager "
    "| ext. 4420 (after hours: on-call supervisor, ext. 4419) |\n"
    "| Any load needing an overweight or oversize permit "
    "| Operations manager and the Permits Desk | ext. 4420 and ext. 4425 |"
)
ANSWER = (
    "A 30,000 lb load falls in the **26,001 to 40,000 lb** tier, so the **shift lead on duty** "
    "approves it: call the dispatch desk, ext. 4411 [1].\n\n"
    "- The weight that counts is the gross cargo weight on the bill of lading, at the "
    "heaviest point of the trip.\n"
    "- If it carries placarded hazmat, the shift lead approves it whatever the weight [2]."
)


# Questions people asked most, as the Messages tab offers them after the configured ones.
MOST_ASKED = ["Who do I call when a reefer temperature alarm goes off?"]


def sample_files() -> dict[str, dict[str, Any]]:
    """Each file's name and JSON, built by the bot's own block builders."""
    quote = QuoteRef(markdown=LOAD_APPROVAL_TABLE, is_table=True, source=LOAD_APPROVAL)
    messages = answer_messages(ANSWER, [LOAD_APPROVAL, HAZMAT], 1234, quote)
    if len(messages) != 1:
        raise AssertionError(f"the sample answer should be one message, not {len(messages)}")
    card = escalation_card(
        EscalationCard(
            escalation_id=42,
            question="Can I release a 30,000 lb reefer load tonight without the shift lead?",
            asker_id="U0DRIVERJO",
            trigger="button",
            priority="normal",
            thread_link="https://northwind.slack.com/archives/C0DISPATCH/p1780497000000100",
            channel_id="C0DISPATCH",
            mention="<!subteam^S0ONCALL>",
            draft=ANSWER,
            sources=(LOAD_APPROVAL, HAZMAT),
        )
    )
    settings = Settings(_env_file=None)
    rules = EscalationRules.from_settings(settings)
    return {
        "answer.json": {"blocks": messages[0].blocks},
        "streamed-answer.json": _streamed_answer(messages[0].blocks),
        "escalation-card.json": {"blocks": card.blocks},
        "messages-tab.json": {
            "title": PROMPTS_TITLE,
            "prompts": choose_prompts(settings.slack_suggested_prompts, MOST_ASKED, rules),
        },
        "member-home-tab.json": member_home_view(BOT_USER_ID, "talk to dispatch"),
        "home-tab.json": admin_home_view(_admin_home()),
    }


def _streamed_answer(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """The same answer as Slack's agent methods show it: status, steps, text, the end."""
    found = SourcesFound(results=(), covered=True)
    return {
        "assistant.threads.setStatus": {"status": STATUS, "loading_messages": LOADING_MESSAGES},
        "chat.startStream": {"chunks": found_steps(found, [LOAD_APPROVAL, HAZMAT])},
        "chat.appendStream": {"chunks": [{"type": "markdown_text", "text": ANSWER}]},
        "chat.stopStream": {
            "chunks": [check_done(CHECK_PASSED)],
            "blocks": footer_blocks(blocks),
        },
    }


def write_files(out: Path) -> list[Path]:
    """Write every sample into `out` (created if missing); the paths written, in order."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in sample_files().items():
        path = out / name
        path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", "utf-8")
        written.append(path)
    return written


def slack_docs(
    out: Annotated[
        Path,
        typer.Option(
            "--out", metavar="DIR", help="The folder to write the files into (created if missing)."
        ),
    ] = DEFAULT_OUT,
) -> None:
    """Write the Block Kit JSON of a typical answer (and its streamed form), an escalation
    card, the Messages tab's prompts and the Home tabs: what people see in Slack, without
    Slack.

    Built by the bot's own block builders from fixed sample data: run it again after
    changing a builder, and commit the files."""
    try:
        written = write_files(out)
    except OSError as error:
        fail(f"cannot write the files into {out}: {error}")
    for path in written:
        console.print(f"wrote {path}", highlight=False)


def _admin_home() -> AdminHome:
    def standing(name: str, status: str, days: int, answers: int, up: int, down: int) -> Any:
        return AdapterStanding(
            name=name,
            status=status,
            promoted_at=NOW - timedelta(days=days),
            canary_share=None,
            answers=answers,
            feedback=FeedbackTally(up, down),
        )

    def waiting(escalation_id: int, minutes: int, **fields: Any) -> WaitingEscalation:
        values: dict[str, Any] = {
            "status": "open",
            "trigger": "button",
            "priority": "normal",
            "assignee": None,
            "requested_by": "U0DRIVERJO",
            "channel_id": "C0DISPATCH",
        }
        return WaitingEscalation(
            id=escalation_id, created_at=NOW - timedelta(minutes=minutes), **(values | fields)
        )

    tallies = [(9, 1), (12, 0), (7, 2), (11, 1), (14, 3), (4, 0), (10, 1)]
    first_day = NOW.date() - timedelta(days=len(tallies) - 1)
    store = StoreInsights(
        adapters=AdapterComparison(
            current=standing("voice-v3", "promoted", 6, 412, 61, 7),
            previous=standing("voice-v2", "retired", 34, 1_380, 170, 31),
            canary=None,
        ),
        escalations=EscalationQueue(
            shown=(
                waiting(43, 125, trigger="sensitive", priority="high"),
                waiting(42, 12),
                waiting(39, 240, status="claimed", assignee="U0DISPATCHER", trigger="asked"),
            ),
            total=3,
        ),
        feedback=RecentFeedback(
            days=tuple(
                DayOfFeedback(first_day + timedelta(days=offset), FeedbackTally(up, down))
                for offset, (up, down) in enumerate(tallies)
            ),
            top_reasons=(("out_of_date", 4), ("unclear", 3), ("wrong", 1)),
        ),
    )
    return AdminHome(
        now=NOW,
        store=store,
        documents=[
            DocumentSummary(
                "load-approval", "Load Approval Thresholds", 3, date(2026, 3, 1), 2, 0, None
            ),
            DocumentSummary(
                "service-slas", "Service SLAs", 1, date(2025, 11, 1), 0, 1, date(2026, 7, 1)
            ),
            DocumentSummary(
                "hazmat", "Hazardous Materials Handling", 2, date(2026, 1, 15), 1, 0, None
            ),
        ],
        verified=VerifiedOverview(
            stale=(
                VerifiedLine(
                    17,
                    "Who approves a 39,000 lb load on the night shift?",
                    "U0DISPATCHER",
                    9,
                    "Load Approval Thresholds changed (v3 since 1 Mar 2026)",
                ),
            ),
            stale_total=1,
            most_reused=(
                VerifiedLine(12, "Can a driver swap trailers at a customer yard?", "U0LEAD", 23),
                VerifiedLine(
                    17, "Who approves a 39,000 lb load on the night shift?", "U0DISPATCHER", 9
                ),
            ),
            gaps=(
                GapLine("What is the detention rate after 2 hours at a shipper?", 6),
                GapLine("Can I dispatch a driver whose medical card expires this week?", 3),
            ),
        ),
    )
