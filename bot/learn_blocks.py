"""Block Kit for the summary `dispatchbot learn` posts: pure builders from the run's figures.

The before/after table is monospace text in one section (Slack has no table block that every
client shows, and a section's two-column fields cannot hold three columns); the verdict and
what answers now come first, so the notification says it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.blocks import SlackMessage, context_block, section_block, shorten
from bot.mrkdwn import escape

REASONS_SHOWN = 5
REASON_LIMIT = 300
LABEL_WIDTH = 34


@dataclass(frozen=True)
class MeasureRow:
    """One measure: the version answering before the run, and the candidate."""

    label: str
    before: str
    after: str


@dataclass(frozen=True)
class LearnSummary:
    """What a run that judged a candidate has to say."""

    candidate: str
    incumbent: str  # the version it was judged against ("base": the base model)
    passed: bool
    promoted: bool  # passed and now answering
    reasons: Sequence[str]  # why the gate was not passed
    measures: Sequence[MeasureRow]
    dataset_hash: str
    train_rows: int
    heldout_rows: int
    training: str | None  # how it was trained; None when this run judged an earlier training


def learn_summary_message(summary: LearnSummary) -> SlackMessage:
    headline = _headline(summary)
    blocks = [section_block(f"*{headline}*"), section_block(_table(summary))]
    if summary.reasons:
        shown = [f"• {escape(shorten(r, REASON_LIMIT))}" for r in summary.reasons[:REASONS_SHOWN]]
        if len(summary.reasons) > REASONS_SHOWN:
            shown.append(f"• and {len(summary.reasons) - REASONS_SHOWN} more")
        blocks.append(section_block("*Why not promoted*\n" + "\n".join(shown)))
    details = [
        f"dataset `{summary.dataset_hash[:12]}`: {summary.train_rows} rows trained on, "
        f"{summary.heldout_rows} held out"
    ]
    if summary.training:
        details.append(escape(summary.training))
    blocks.append(context_block(" · ".join(details)))
    return SlackMessage(text=headline, blocks=blocks)


def _headline(summary: LearnSummary) -> str:
    if summary.promoted:
        return (
            f"Learning run: {summary.candidate} passed the gate and is promoted; "
            f"it answers now instead of {summary.incumbent}."
        )
    return (
        f"Learning run: {summary.candidate} did not pass the gate against "
        f"{summary.incumbent}; nothing changed, {summary.incumbent} still answers."
    )


def _table(summary: LearnSummary) -> str:
    rows = [("", "before", "after"), *((m.label, m.before, m.after) for m in summary.measures)]
    widths = [max(len(row[i]) for row in rows) for i in (1, 2)]
    lines = [
        f"{shorten(label, LABEL_WIDTH):<{LABEL_WIDTH}}  {before:>{widths[0]}}  {after:>{widths[1]}}"
        for label, before, after in rows
    ]
    legend = f"before: {summary.incumbent} · after: {summary.candidate}"
    return escape(legend) + "\n```\n" + escape("\n".join(lines)) + "\n```"
