"""Block Kit for the App Home tab: the admins' overview and the members' how-to.

Pure builders, like `bot.blocks`: the listener reads the data and publishes the view. A
Home tab holds 100 blocks and a section 3,000 characters, so every list has a fixed
number of lines shown and a "+N more" pointing at the command that lists them all; a
section is filled with whole lines only. Text people wrote (document titles, ids) is
escaped and shortened; Slack ids come from Slack and are escaped all the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from bot.blocks import (
    REASON_CHOICES,
    SECTION_LIMIT,
    context_block,
    plain_text,
    section_block,
    shorten,
    slack_len,
)
from bot.escalation_blocks import TRIGGER_LABELS
from bot.mrkdwn import escape
from retrieval.versions import StoredVersion
from store.insights import (
    AdapterComparison,
    AdapterStanding,
    EscalationQueue,
    FeedbackTally,
    RecentFeedback,
    StoreInsights,
    WaitingEscalation,
)

VERIFIED_APPROVE = "verified_approve"
VERIFIED_RETIRE = "verified_retire"
STALE_SHOWN = 5
REUSED_SHOWN = 5
GAPS_SHOWN = 5
ESCALATIONS_SHOWN = 15
DOCUMENTS_SHOWN = 20
REASONS_SHOWN = 3
VIEW_BLOCK_LIMIT = 100
HEADER_LIMIT = 150
TITLE_LIMIT = 100
ID_LIMIT = 64

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_PRIORITY_MARKERS = {"high": ":red_circle:", "normal": ":large_blue_circle:"}


@dataclass(frozen=True)
class DocumentSummary:
    """One policy document as the Home tab lists it: the version in force and the others."""

    doc_id: str
    title: str
    in_force: int | None  # the version in force today; None when none is
    in_force_since: date | None
    older: int  # versions that ended
    scheduled: int  # versions that start later
    next_from: date | None  # when the first scheduled version starts


@dataclass(frozen=True)
class VerifiedLine:
    """One verified answer as the Home tab lists it."""

    verified_id: int
    question: str
    author: str
    reuse_count: int
    reason: str | None = None  # why it is stale


@dataclass(frozen=True)
class GapLine:
    """Questions people asked that no policy or verified answer covers, paraphrases as one."""

    question: str
    count: int


@dataclass(frozen=True)
class VerifiedOverview:
    stale: Sequence[VerifiedLine]
    stale_total: int
    most_reused: Sequence[VerifiedLine]
    gaps: Sequence[GapLine]


@dataclass(frozen=True)
class AdminHome:
    """What the admin view shows; a part that could not be read is None."""

    now: datetime  # timezone-aware
    store: StoreInsights | None  # None: the database did not answer
    documents: Sequence[DocumentSummary] | None  # None: the policy store did not answer
    reference: str | None = None  # the request id the log lines of a failure carry
    verified: VerifiedOverview | None = None  # None: the database did not answer


def summarize_documents(
    registry: Mapping[str, Sequence[StoredVersion]], today: date
) -> list[DocumentSummary]:
    """One summary per document (by doc_id), from `read_versions`' registry."""
    summaries = []
    for doc_id in sorted(registry):
        versions = sorted(registry[doc_id], key=lambda version: version.version)
        if not versions:
            continue
        current = next((v for v in reversed(versions) if v.in_force_on(today)), None)
        scheduled = [v for v in versions if today < v.effective_from]
        titled = current or versions[-1]
        summaries.append(
            DocumentSummary(
                doc_id=doc_id,
                title=titled.title,
                in_force=current.version if current else None,
                in_force_since=current.effective_from if current else None,
                older=len(versions) - len(scheduled) - (1 if current else 0),
                scheduled=len(scheduled),
                next_from=min((v.effective_from for v in scheduled), default=None),
            )
        )
    return summaries


def admin_home_view(home: AdminHome) -> dict[str, Any]:
    """The Home tab of a user in SLACK_ADMIN_USERS."""
    if home.now.tzinfo is None:
        raise ValueError("AdminHome.now must be timezone-aware")
    blocks: list[dict[str, Any]] = [
        _header("dispatchbot · admin overview"),
        context_block(
            f"Updated {_moment(home.now)} · open the tab again to refresh · shown to "
            "the users in `SLACK_ADMIN_USERS`"
        ),
        _divider(),
    ]
    if home.store is None:
        blocks.append(
            section_block(
                ":warning: *Adapters, escalations and feedback are unavailable:* the database "
                f"did not answer.{_reference(home.reference)}"
            )
        )
    else:
        blocks += adapter_blocks(home.store.adapters)
        blocks.append(_divider())
        blocks += escalation_blocks(home.store.escalations, home.now)
        blocks.append(_divider())
        blocks += feedback_blocks(home.store.feedback)
    if home.verified is not None:
        blocks.append(_divider())
        blocks += verified_blocks(home.verified)
    blocks.append(_divider())
    if home.documents is None:
        blocks.append(
            section_block(
                ":warning: *Policy documents are unavailable:* the policy store (Qdrant) did "
                f"not answer.{_reference(home.reference)}"
            )
        )
    else:
        blocks += document_blocks(home.documents)
    return _home(blocks)


def member_home_view(bot_user_id: str | None, ask_phrase: str | None = None) -> dict[str, Any]:
    """The Home tab of everyone else: what dispatchbot does and how to ask it."""
    me = _user(bot_user_id) if bot_user_id else "@dispatchbot"
    person = (
        f', or write "{escape(shorten(" ".join(ask_phrase.split()), 60))}"'
        if ask_phrase and ask_phrase.strip()
        else ""
    )
    return _home(
        [
            _header("dispatchbot"),
            section_block(
                "I answer questions about dispatch rules and service tickets from the "
                "*current* policy documents, and list the policies each answer comes from "
                "(title, section, version, effective date)."
            ),
            section_block(
                "*How to ask*\n"
                f"• Mention {me} in a channel where I answer; the answer goes into the thread.\n"
                "• Or send me a direct message (the *Messages* tab).\n"
                "• Ask follow-ups in the same thread: I read the conversation so far."
            ),
            section_block(
                "*After an answer*\n"
                "• :thumbsup: or :thumbsdown: tells us whether it helped; :thumbsdown: asks "
                "what was wrong. Answers marked :thumbsdown: are reviewed.\n"
                f"• *Ask a person* hands the thread to the dispatch team{person}. Someone "
                "replies in the thread; I stay quiet there until it is resolved.\n"
                "• Urgent topics (an accident, an injury, a spill) go to a person at once."
            ),
            context_block("Answers come from policy in force today. Check the sources listed."),
        ]
    )


def adapter_blocks(adapters: AdapterComparison) -> list[dict[str, Any]]:
    current, previous = adapters.current, adapters.previous
    fields = [_standing_field("Answering now", current)]
    if previous is not None:
        label = "Before it (a rollback returns to it)" if current.name else "Last promoted"
        fields.append(_standing_field(label, previous))
    if adapters.canary is not None:
        fields.append(_standing_field("Canary", adapters.canary))
    blocks = [
        section_block("*Adapter*"),
        {"type": "section", "fields": [{"type": "mrkdwn", "text": text} for text in fields]},
    ]
    if previous is None:
        blocks.append(context_block("No adapter has been promoted yet: the base model answers."))
    else:
        blocks.append(context_block(_comparison(current, previous)))
    return blocks


def escalation_blocks(queue: EscalationQueue, now: datetime) -> list[dict[str, Any]]:
    if queue.total == 0:
        return [section_block("*Open escalations*\n:white_check_mark: None: nobody is waiting.")]
    shown = queue.shown[:ESCALATIONS_SHOWN]
    lines = [_escalation_line(escalation, now) for escalation in shown]
    blocks = _line_sections(f"*Open escalations* ({queue.total})", lines)
    if queue.total > len(shown):
        blocks.append(
            context_block(
                f"+{queue.total - len(shown)} more: `dispatchbot escalations list` shows them all."
            )
        )
    return blocks


def feedback_blocks(feedback: RecentFeedback) -> list[dict[str, Any]]:
    heading = f"*Feedback, last {len(feedback.days)} days*"
    total = feedback.total
    if total.votes == 0:
        return [section_block(f"{heading}\nNo votes yet.")]
    rows = [f"{'day':<10} {'up':>4} {'down':>5} {'rate':>5}"]
    for day in feedback.days:
        rows.append(_tally_row(_weekday(day.day), day.feedback))
    rows.append(_tally_row("total", total))
    summary = _tally(total)
    if feedback.top_reasons:
        reasons = ", ".join(
            f"{_reason_label(code)} ({count})"
            for code, count in feedback.top_reasons[:REASONS_SHOWN]
        )
        summary += f"\n*Why :thumbsdown:* {reasons}"
    table = "```\n" + "\n".join(rows) + "\n```"
    return [section_block(f"{heading}\n{table}"), section_block(summary)]


def verified_blocks(overview: VerifiedOverview) -> list[dict[str, Any]]:
    """Verified answers to review (stale: a policy they cite changed), the most reused, and
    the questions the policy library does not answer yet."""
    blocks: list[dict[str, Any]] = []
    if overview.stale_total == 0:
        blocks.append(
            section_block("*Verified answers to review*\n:white_check_mark: None is out of date.")
        )
    else:
        blocks.append(section_block(f"*Verified answers to review* ({overview.stale_total})"))
        for line in overview.stale[:STALE_SHOWN]:
            reason = escape(shorten(line.reason or "out of date", 200))
            blocks.append(
                section_block(
                    f"*#{line.verified_id}* {escape(shorten(line.question, 200))}\n"
                    f"_{reason}_ · by {_user(line.author)}"
                )
            )
            blocks.append(
                {
                    "type": "actions",
                    "block_id": f"verified:{line.verified_id}",
                    "elements": [
                        _button(
                            "Still right: approve", VERIFIED_APPROVE, line.verified_id, "primary"
                        ),
                        _button("Retire", VERIFIED_RETIRE, line.verified_id, "danger"),
                    ],
                }
            )
        if overview.stale_total > STALE_SHOWN:
            blocks.append(
                context_block(
                    f"+{overview.stale_total - STALE_SHOWN} more: "
                    "`dispatchbot verified list --status stale`"
                )
            )
    if overview.most_reused:
        lines = [
            f"• {escape(shorten(line.question, 150))} · {line.reuse_count}× · {_user(line.author)}"
            for line in overview.most_reused[:REUSED_SHOWN]
        ]
        blocks += _line_sections("*Most reused verified answers*", lines)
    if overview.gaps:
        lines = [
            f"• {escape(shorten(gap.question, 150))} · asked {gap.count}×"
            for gap in overview.gaps[:GAPS_SHOWN]
        ]
        blocks += _line_sections("*Not covered yet, last 7 days*", lines)
        blocks.append(context_block("`dispatchbot gaps` lists every week's."))
    return blocks


def _button(label: str, action_id: str, verified_id: int, style: str) -> dict[str, Any]:
    return {
        "type": "button",
        "text": plain_text(label),
        "action_id": action_id,
        "value": str(verified_id),
        "style": style,
    }


def document_blocks(documents: Sequence[DocumentSummary]) -> list[dict[str, Any]]:
    if not documents:
        return [
            section_block(
                "*Policy documents*\nNone ingested yet: `dispatchbot ingest PATH` adds them."
            )
        ]
    shown = documents[:DOCUMENTS_SHOWN]
    blocks = _line_sections(
        f"*Policy documents* ({len(documents)})", [_document_line(doc) for doc in shown]
    )
    if len(documents) > len(shown):
        blocks.append(
            context_block(
                f"+{len(documents) - len(shown)} more: `dispatchbot documents list` shows "
                "every version."
            )
        )
    return blocks


def age(since: datetime, now: datetime) -> str:
    """How long ago, for people: "just now", "12 min", "2 h 5 min", "3 d 4 h"."""
    minutes = int((now - since).total_seconds() // 60)
    if minutes < 1:
        return "just now"
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min"


def _home(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    if len(blocks) > VIEW_BLOCK_LIMIT:
        # Every list is capped above; reaching this is a bug, not a big workspace.
        raise ValueError(f"a Home tab holds {VIEW_BLOCK_LIMIT} blocks, this one {len(blocks)}")
    return {"type": "home", "blocks": blocks}


def _divider() -> dict[str, Any]:
    return {"type": "divider"}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": plain_text(shorten(text, HEADER_LIMIT))}


def _line_sections(heading: str, lines: list[str]) -> list[dict[str, Any]]:
    """The heading and the lines in as few sections as fit, never splitting a line."""
    sections: list[str] = []
    current = heading
    for line in lines:
        if slack_len(current) + 1 + slack_len(line) > SECTION_LIMIT:
            sections.append(current)
            current = line
        else:
            current = f"{current}\n{line}"
    sections.append(current)
    return [section_block(text) for text in sections]


def _standing_field(label: str, standing: AdapterStanding) -> str:
    name = "base model (no adapter)" if standing.name is None else f"`{_code(standing.name)}`"
    details = []
    if standing.status and standing.status not in ("promoted", "retired"):
        details.append(_code(standing.status))
    if standing.canary_share:
        details.append(f"{standing.canary_share:.0%} of questions")
    if standing.promoted_at is not None:
        details.append(f"promoted {_moment(standing.promoted_at, '{date_short}')}")
    line = " · ".join([name, *details])
    answers = f"{standing.answers} answer{'' if standing.answers == 1 else 's'}"
    return f"*{label}*\n{line}\n{_tally(standing.feedback)}\n{answers}"


def _tally(tally: FeedbackTally) -> str:
    if tally.votes == 0:
        return "No feedback yet"
    return f":thumbsup: {tally.up} · :thumbsdown: {tally.down} · *{_rate(tally)}* :thumbsup:"


def _comparison(current: AdapterStanding, previous: AdapterStanding) -> str:
    now_rate, before_rate = current.feedback.up_rate, previous.feedback.up_rate
    if now_rate is None or before_rate is None:
        return "No comparison yet: both need feedback for their :thumbsup: rates to compare."
    points = round((now_rate - before_rate) * 100)
    if points == 0:
        change = "the same as before"
    else:
        change = f"{abs(points)} point{'' if abs(points) == 1 else 's'} "
        change += "better than before" if points > 0 else "worse than before"
    return (
        f":thumbsup: rate {_rate(current.feedback)} against {_rate(previous.feedback)}: {change} "
        f"({current.feedback.votes} and {previous.feedback.votes} votes)."
    )


def _rate(tally: FeedbackTally) -> str:
    rate = tally.up_rate
    return "–" if rate is None else f"{rate:.0%}"


def _escalation_line(escalation: WaitingEscalation, now: datetime) -> str:
    marker = _PRIORITY_MARKERS.get(escalation.priority, ":white_circle:")
    label = TRIGGER_LABELS.get(escalation.trigger, escalation.trigger)
    label = escape(shorten(" ".join(label.split()), TITLE_LIMIT))
    who = f"claimed by {_user(escalation.assignee)}" if escalation.assignee else "_unclaimed_"
    where = f"in <#{escape(shorten(escalation.channel_id, ID_LIMIT))}>"
    if escalation.requested_by:
        where = f"asked by {_user(escalation.requested_by)} {where}"
    waited = age(escalation.created_at, now)
    return f"{marker} *#{escalation.id}* · {label} · {waited} · {who} · {where}"


def _document_line(document: DocumentSummary) -> str:
    title = escape(shorten(" ".join(document.title.split()) or "Untitled", TITLE_LIMIT))
    parts = [f"• *{title}* `{_code(document.doc_id)}`"]
    if document.in_force is not None and document.in_force_since is not None:
        parts.append(f"v{document.in_force} in force since {_day(document.in_force_since)}")
    else:
        parts.append("_no version in force today_")
    if document.older:
        parts.append(f"{document.older} older")
    if document.scheduled and document.next_from is not None:
        parts.append(f"{document.scheduled} scheduled from {_day(document.next_from)}")
    return " · ".join(parts)


def _tally_row(label: str, tally: FeedbackTally) -> str:
    return f"{label:<10} {tally.up:>4} {tally.down:>5} {_rate(tally):>5}"


def _reason_label(code: str) -> str:
    return REASON_CHOICES.get(code) or escape(shorten(code, ID_LIMIT))


def _user(user_id: str) -> str:
    return f"<@{escape(shorten(user_id, ID_LIMIT))}>"


def _code(text: str) -> str:
    # Inside `…` a backtick would end the code early; a newline would break the line.
    return escape(shorten(" ".join(text.replace("`", "'").split()), ID_LIMIT))


def _reference(reference: str | None) -> str:
    return f" (reference `{_code(reference)}`)" if reference else ""


def _moment(moment: datetime, shown_as: str = "{date_short_pretty} at {time}") -> str:
    """A time Slack shows in the reader's own time zone; the fallback is UTC."""
    utc = moment.astimezone(UTC)
    return f"<!date^{int(utc.timestamp())}^{shown_as}|{utc:%Y-%m-%d %H:%M} UTC>"


def _day(day: date) -> str:
    # "1 Mar 2026" whatever the locale; strftime's %b follows it.
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def _weekday(day: date) -> str:
    return f"{_WEEKDAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]}"
