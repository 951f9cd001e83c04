"""Block Kit for answers: pure builders from text to the dicts the Slack Web API takes.

Slack's limits decide the shape. A section holds 3,000 characters, a message 50 blocks, and
messages past about 12,000 characters of block text have been rejected, so a long answer is
split over several messages (never cut) and only the last carries the sources and the
feedback buttons. Lengths are counted in UTF-16 code units, which is never less than
Python's `len`, so an answer full of emoji stays within the limits too.

A Markdown table becomes a `table` block when it fits Slack's limits for one (100 rows, 20
columns); a message holds one table block at most, so any further table in the same message,
and any table past those limits, shows as monospace text as before.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from bot.mrkdwn import MarkdownTable, escape, link, split_tables, to_mrkdwn
from store.sources import SourceRef

FEEDBACK = "answer_feedback"  # Slack's own 👍/👎 (feedback_buttons) under an answer
# The ordinary 👍 and 👎 buttons of answers posted before the feedback buttons; still handled.
FEEDBACK_UP = "feedback_up"
FEEDBACK_DOWN = "feedback_down"
ASK_PERSON = "ask_person"
FEEDBACK_REASON_VIEW = "feedback_reason"
REASON_CHOICES: dict[str, str] = {
    "wrong": "Wrong",
    "out_of_date": "Out of date",
    "unclear": "Unclear",
    "incomplete": "Incomplete",
}

QUOTE_BLOCK_ID = "policy_quote"

SECTION_LIMIT = 3_000
MESSAGE_BLOCK_LIMIT = 50
MESSAGE_TEXT_BUDGET = 11_000  # Slack documents no total, but rejected messages near 12,000
FALLBACK_LIMIT = 3_000
# While streaming, one message shows the start of the answer; this leaves room for the
# cursor line, and in an error message for the apology.
PARTIAL_ANSWER_BUDGET = 9_000
SOURCES_BUDGET = 6_000
SOURCE_FIELD_LIMIT = 150
CURSOR = "▍"
# Slack's table block reference (docs.slack.dev/reference/block-kit/blocks/table-block):
# at most 100 rows and 20 cells a row, and one table block in a message.
TABLE_ROW_LIMIT = 100  # the header row included
TABLE_COLUMN_LIMIT = 20
# The table block documents no text limit; the data table block's reference caps the text of
# all cells at 10,000 characters, for a table and for a message, which is kept here too.
TABLE_TEXT_LIMIT = 10_000
EMPTY_CELL = "–"  # a raw_text cell needs at least one character

_REASONS_BLOCK, _REASONS_ACTION = "feedback_reasons", "reasons"
_NOTE_BLOCK, _NOTE_ACTION = "feedback_note", "note"
_NOTE_MAX_LENGTH = 2_000
_PRIVATE_METADATA_LIMIT = 3_000
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_SLACK_LINK = re.compile(r"<([^<>|]*)(?:\|([^<>]*))?>")
_MARKER_OPEN = re.compile(r"(?<![\w*_~])[*_~]+(?=[^\s*_~])")
_MARKER_CLOSE = re.compile(r"(?<=[^\s*_~])[*_~]+(?![\w*_~])")


@dataclass(frozen=True)
class SlackMessage:
    """One message: `text` for notifications and screen readers, `blocks` for the display."""

    text: str
    blocks: list[dict[str, Any]]


@dataclass(frozen=True)
class QuoteRef:
    """The policy's own words shown under an answer, and where they come from."""

    markdown: str  # verbatim: sentences, list items, or a table with its header
    is_table: bool
    source: SourceRef
    closest_only: bool = False  # the answer says the policy does not cover the question


@dataclass(frozen=True)
class FeedbackReason:
    """What the 👎 modal was sent back with."""

    answer_id: int
    channel_id: str
    thread_ts: str
    reasons: tuple[str, ...]  # keys of REASON_CHOICES, in the order shown
    note: str | None


def placeholder_message() -> SlackMessage:
    """The sign posted at once, before retrieval and the model have done anything."""
    return SlackMessage(text="Looking that up…", blocks=[context_block(":mag: Looking that up…")])


def streaming_message(markdown_so_far: str) -> SlackMessage:
    """The answer so far with a cursor; always one valid message, however long the text."""
    mrkdwn = to_mrkdwn(markdown_so_far)
    # Text right after a closing ``` on its line confuses Slack, so the cursor gets its own.
    mrkdwn = f"{mrkdwn}\n{CURSOR}" if mrkdwn.endswith("```") else f"{mrkdwn} {CURSOR}".lstrip()
    shown, cut = _answer_start(mrkdwn)
    blocks = [section_block(chunk) for chunk in shown]
    if cut:
        blocks.append(context_block(f"… {CURSOR}"))
    text = fallback_text("\n\n".join(shown)).removesuffix(CURSOR).rstrip()
    return SlackMessage(text=text or "Looking that up…", blocks=blocks)


def answer_messages(
    markdown: str,
    sources: Sequence[SourceRef],
    answer_id: int,
    quote: QuoteRef | None = None,
    credit: CreditRef | None = None,
) -> list[SlackMessage]:
    """The finished answer as one or more messages; the last carries sources and buttons.

    The policy's own words (`quote`) follow the answer, cited like a source; a person's
    verified answer says who gave it (`credit`).
    """
    pieces = markdown_pieces(markdown)
    if credit is not None:
        pieces.append(context_block(credit_line(credit)))
    if quote is not None:
        pieces += _quote_pieces(quote)
    tail = [{"type": "divider"}, *sources_blocks(sources), *feedback_blocks(answer_id)]
    messages: list[list[dict[str, Any]]] = [[]]
    for piece in pieces:
        for block in _choose(piece, messages[-1]):
            if not fits([*messages[-1], block]):
                messages.append([])
            messages[-1].append(block)
    if not fits([*messages[-1], *tail]):
        messages.append([])
    messages[-1].extend(tail)
    return [
        SlackMessage(text=_message_fallback(blocks) or _tail_fallback(sources), blocks=blocks)
        for blocks in messages
    ]


@dataclass(frozen=True)
class TablePiece:
    """A table to show as a `table` block, or as `text` (monospace sections) where it can't."""

    block: dict[str, Any]
    text: list[dict[str, Any]]


def markdown_pieces(markdown: str) -> list[dict[str, Any] | TablePiece]:
    """Markdown as sections, with each table that fits Slack's limits as a `TablePiece`."""
    pieces: list[dict[str, Any] | TablePiece] = []
    prose: list[str] = []  # Markdown not yet converted: text, and tables that stay text

    def flush() -> None:
        # The parts are runs of the text's lines: joined, they are the text as written.
        pieces.extend(section_block(c) for c in split_sections(to_mrkdwn("\n".join(prose))))
        prose.clear()

    for part in split_tables(markdown):
        if isinstance(part, str):
            prose.append(part)
            continue
        block = table_block(part)
        if block is None:
            prose.append(part.markdown)
            continue
        flush()
        text = [section_block(chunk) for chunk in split_sections(to_mrkdwn(part.markdown))]
        pieces.append(TablePiece(block, text))
    flush()
    return pieces


def table_block(table: str | MarkdownTable) -> dict[str, Any] | None:
    """A Markdown table (header, delimiter row, rows) as a Slack `table` block.

    None when Slack could not take it (more than 100 rows or 20 columns, more than 10,000
    characters), or when `table` is not one Markdown table: the caller shows it as text.
    Cells are plain text: formatting marks go, a link keeps its label.
    """
    if isinstance(table, str):
        parts = split_tables(table)
        if len(parts) != 1 or not isinstance(parts[0], MarkdownTable):
            return None
        table = parts[0]
    rows = [[" ".join(cell.split()) or EMPTY_CELL for cell in row] for row in table.rows]
    if len(rows) > TABLE_ROW_LIMIT or len(rows[0]) > TABLE_COLUMN_LIMIT:
        return None
    if sum(slack_len(cell) for row in rows for cell in row) > TABLE_TEXT_LIMIT:
        return None
    return {
        "type": "table",
        "column_settings": [
            {"is_wrapped": True} | ({"align": align} if align != "left" else {})
            for align in table.alignments
        ],
        "rows": [[{"type": "raw_text", "text": cell} for cell in row] for row in rows],
    }


def _choose(
    piece: dict[str, Any] | TablePiece, message: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The blocks for `piece` in a message so far: a table block only if it has none yet."""
    if not isinstance(piece, TablePiece):
        return [piece]
    if any(block["type"] == "table" for block in message):
        return piece.text
    return [piece.block]


def quote_blocks(quote: QuoteRef) -> list[dict[str, Any]]:
    """The policy's words as a quote (a table as a table), then where they come from."""
    blocks: list[dict[str, Any]] = []
    for piece in _quote_pieces(quote):
        blocks += _choose(piece, blocks)
    return blocks


def _quote_pieces(quote: QuoteRef) -> list[dict[str, Any] | TablePiece]:
    pieces: list[dict[str, Any] | TablePiece]
    if quote.is_table:  # a table block, or monospace text, which a quote would break
        pieces = markdown_pieces(quote.markdown)
    else:
        markdown = "\n".join(f"> {line}" for line in quote.markdown.splitlines() if line.strip())
        pieces = [section_block(chunk) for chunk in split_sections(to_mrkdwn(markdown))]
    cited = "The closest policy I found:" if quote.closest_only else "From"
    pieces.append(context_block(f"{cited} {_source_line_body(quote.source)}"))
    # Where a streamed answer's closing blocks begin, whichever way the table shows.
    first = pieces[0]
    if isinstance(first, TablePiece):
        first.block["block_id"] = QUOTE_BLOCK_ID
        first.text[0]["block_id"] = QUOTE_BLOCK_ID
    else:
        first["block_id"] = QUOTE_BLOCK_ID
    return pieces


def error_message(reference: str, partial_markdown: str = "") -> SlackMessage:
    """An apology that keeps what was already streamed, so nothing the user saw is lost."""
    shown, cut = _answer_start(to_mrkdwn(partial_markdown))
    blocks = [section_block(chunk) for chunk in shown]
    if cut:
        blocks.append(context_block("…"))
    if blocks:
        blocks.append({"type": "divider"})
    # The reference goes in code format: it must stay one unbroken token to be searchable.
    shown_reference = escape(shorten(reference.replace("`", "").strip(), 100))
    saved = (
        f"Your question was saved (reference `{shown_reference}`)."
        if shown_reference
        else "Your question was saved."
    )
    blocks.append(
        section_block(
            f":warning: Sorry, something went wrong while I was answering. {saved} "
            "Please try again in a minute, or ask a dispatcher."
        )
    )
    plain_reference = f" (reference {shown_reference})" if shown_reference else ""
    text = (
        f"Sorry, something went wrong while I was answering{plain_reference}. "
        "Please try again in a minute, or ask a dispatcher."
    )
    return SlackMessage(text=text, blocks=blocks)


def feedback_reason_modal(answer_id: int, channel_id: str, thread_ts: str) -> dict[str, Any]:
    """The `views.open` view that asks what was wrong after a 👎."""
    metadata = json.dumps(
        {"answer_id": answer_id, "channel_id": channel_id, "thread_ts": thread_ts},
        separators=(",", ":"),
    )
    if len(metadata) > _PRIVATE_METADATA_LIMIT:
        raise ValueError(
            f"channel_id and thread_ts are too long for a modal's private_metadata "
            f"({len(metadata)} > {_PRIVATE_METADATA_LIMIT} characters)"
        )
    return {
        "type": "modal",
        "callback_id": FEEDBACK_REASON_VIEW,
        "title": plain_text("What was wrong?"),
        "submit": plain_text("Send"),
        "close": plain_text("Skip"),
        "private_metadata": metadata,
        "blocks": [
            {
                "type": "input",
                "block_id": _REASONS_BLOCK,
                "optional": True,
                "label": plain_text("Pick any that apply"),
                "element": {
                    "type": "checkboxes",
                    "action_id": _REASONS_ACTION,
                    "options": [
                        {"text": plain_text(label), "value": key}
                        for key, label in REASON_CHOICES.items()
                    ],
                },
            },
            {
                "type": "input",
                "block_id": _NOTE_BLOCK,
                "optional": True,
                "label": plain_text("Anything to add?"),
                "element": {
                    "type": "plain_text_input",
                    "action_id": _NOTE_ACTION,
                    "multiline": True,
                    "max_length": _NOTE_MAX_LENGTH,
                    "placeholder": plain_text("What should the answer have said?"),
                },
            },
        ],
    }


def parse_feedback_reason(view: dict[str, Any]) -> FeedbackReason:
    """Read a submitted feedback modal; a view that is not one raises ValueError."""
    if not isinstance(view, dict):
        raise ValueError(f"expected the view of a view_submission payload, got {type(view)}")
    if view.get("callback_id") != FEEDBACK_REASON_VIEW:
        raise ValueError(
            f"not a feedback reason view: callback_id is {view.get('callback_id')!r}, "
            f"expected {FEEDBACK_REASON_VIEW!r}"
        )
    answer_id, channel_id, thread_ts = _metadata(view.get("private_metadata"))
    state = view.get("state")
    values = state.get("values") if isinstance(state, dict) else None
    if not isinstance(values, dict):
        raise ValueError("the feedback reason view has no state.values to read")
    return FeedbackReason(
        answer_id=answer_id,
        channel_id=channel_id,
        thread_ts=thread_ts,
        reasons=_selected_reasons(_input_state(values, _REASONS_BLOCK, _REASONS_ACTION)),
        note=_note(_input_state(values, _NOTE_BLOCK, _NOTE_ACTION)),
    )


def feedback_ack_text(value: int) -> str:
    """The ephemeral thanks after 👍 (1) or 👎 (-1)."""
    if value == 1:
        return "Thanks for the feedback, glad it helped."
    if value == -1:
        return "Thanks for the feedback. We review answers marked 👎 to make them better."
    raise ValueError(f"feedback value must be 1 (👍) or -1 (👎), got {value!r}")


def reason_ack_text(reason: FeedbackReason) -> str:
    """The ephemeral thanks after the 👎 modal; it names the reasons, never echoes the note."""
    if not reason.reasons and reason.note is None:
        return "Thanks for the feedback."
    parts = ["Thanks, that helps us fix the answer."]
    if reason.reasons:
        labels = ", ".join(REASON_CHOICES[key].lower() for key in reason.reasons)
        parts.append(f"Noted: {labels}.")
    if reason.note is not None:
        parts.append("Your note was passed on.")
    return " ".join(parts)


def _answer_start(mrkdwn: str) -> tuple[list[str], bool]:
    """The sections that fit one message, and whether anything was left out."""
    chunks = split_sections(mrkdwn)
    shown: list[str] = []
    size = 0
    for chunk in chunks:
        size += slack_len(chunk)
        if size > PARTIAL_ANSWER_BUDGET:
            break
        shown.append(chunk)
    return shown, len(shown) < len(chunks)


def sources_blocks(sources: Sequence[SourceRef]) -> list[dict[str, Any]]:
    if not sources:
        return []
    lines = ["*Sources*"]
    size = len(lines[0])
    for number, source in enumerate(sources, 1):
        line = _source_line(number, source)
        size += slack_len(line) + 1
        if size > SOURCES_BUDGET:
            # Only a pathological list gets here; the numbers shown still match the answer.
            lines.append(f"…and {len(sources) - number + 1} more")
            break
        lines.append(line)
    return [section_block(chunk) for chunk in split_sections("\n".join(lines))]


def _source_line(number: int, source: SourceRef) -> str:
    return f"{number}. {_source_line_body(source)}"


def _source_line_body(source: SourceRef) -> str:
    title = shorten(" ".join(source.title.split()) or "Untitled", SOURCE_FIELD_LIMIT)
    label = link(source.url, title) if source.url else escape(title)
    head = f"*{label}*"
    section = specific_section(source.title, source.section)
    if section:
        head += f" › {escape(shorten(section, SOURCE_FIELD_LIMIT))}"
    return f"{head} · v{source.version} · effective since {_day(source.effective_from)}"


def _day(day: date) -> str:
    # "1 Mar 2026" whatever the locale; strftime's %b follows it.
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def specific_section(title: str, section: str) -> str:
    # The path starts with the document title, which the line already shows.
    parts = [part.strip() for part in re.split(r"\s+>\s+|›", section) if part.strip()]
    if parts and parts[0].casefold() == title.strip().casefold():
        parts = parts[1:]
    return " › ".join(parts[-2:])


def feedback_blocks(answer_id: int) -> list[dict[str, Any]]:
    """Slack's 👍/👎 under the answer, then the button that hands the thread to people."""
    feedback = {
        "type": "feedback_buttons",
        "action_id": FEEDBACK,
        "positive_button": {
            "text": plain_text("Helpful"),
            "value": feedback_value(1, answer_id),
            "accessibility_label": "This answer helped",
        },
        "negative_button": {
            "text": plain_text("Not helpful"),
            "value": feedback_value(-1, answer_id),
            "accessibility_label": "This answer did not help",
        },
    }
    ask = button("Ask a person", ASK_PERSON, str(answer_id), "Ask a dispatcher instead")
    return [
        {"type": "context_actions", "block_id": f"feedback:{answer_id}", "elements": [feedback]},
        {"type": "actions", "block_id": f"answer:{answer_id}", "elements": [ask]},
    ]


def feedback_value(vote: int, answer_id: int) -> str:
    return f"{'up' if vote > 0 else 'down'}:{answer_id}"


def parse_feedback_value(value: object) -> tuple[int, int]:
    """(vote, answer id) of a feedback button's value; ValueError when it is not one."""
    direction, _, answer_id = str(value).partition(":")
    if direction not in ("up", "down"):
        raise ValueError(f"not a feedback button's value: {value!r}")
    return (1 if direction == "up" else -1), int(answer_id)


def button(text: str, action_id: str, value: str, accessibility_label: str) -> dict[str, Any]:
    return {
        "type": "button",
        "action_id": action_id,
        "text": plain_text(text),
        "value": value,
        "accessibility_label": accessibility_label,
    }


def _metadata(raw: object) -> tuple[int, str, str]:
    if not isinstance(raw, str):
        raise ValueError("the feedback reason view has no private_metadata")
    try:
        metadata = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"the view's private_metadata is not JSON: {error}") from None
    if not isinstance(metadata, dict):
        raise ValueError("the view's private_metadata is not a JSON object")
    answer_id = metadata.get("answer_id")
    channel_id = metadata.get("channel_id")
    thread_ts = metadata.get("thread_ts")
    if isinstance(answer_id, bool) or not isinstance(answer_id, int):
        raise ValueError(f"private_metadata.answer_id must be an integer, got {answer_id!r}")
    if not isinstance(channel_id, str) or not channel_id:
        raise ValueError(f"private_metadata.channel_id must be a channel id, got {channel_id!r}")
    if not isinstance(thread_ts, str) or not thread_ts:
        raise ValueError(f"private_metadata.thread_ts must be a message ts, got {thread_ts!r}")
    return answer_id, channel_id, thread_ts


def _input_state(values: dict[str, Any], block_id: str, action_id: str) -> dict[str, Any]:
    # Both inputs are optional, so an absent entry reads as left empty.
    block = values.get(block_id, {})
    state = block.get(action_id, {}) if isinstance(block, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"state.values.{block_id}.{action_id} is not an object")
    return state


def _selected_reasons(state: dict[str, Any]) -> tuple[str, ...]:
    options = state.get("selected_options") or []
    if not isinstance(options, list):
        raise ValueError("the reasons' selected_options is not a list")
    chosen: set[str] = set()
    for option in options:
        value = option.get("value") if isinstance(option, dict) else None
        if value not in REASON_CHOICES:
            raise ValueError(
                f"unknown feedback reason {value!r}; expected one of {list(REASON_CHOICES)}"
            )
        chosen.add(value)
    return tuple(key for key in REASON_CHOICES if key in chosen)


def _note(state: dict[str, Any]) -> str | None:
    value = state.get("value")
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"the note's value must be text, got {type(value).__name__}")
    return value.strip() or None


def fits(blocks: list[dict[str, Any]]) -> bool:
    return (
        len(blocks) <= MESSAGE_BLOCK_LIMIT
        and sum(block_text_length(block) for block in blocks) <= MESSAGE_TEXT_BUDGET
    )


def block_text_length(node: object) -> int:
    """All the text a block shows (sections, buttons, context), as Slack would count it."""
    if isinstance(node, dict):
        return sum(
            slack_len(value)
            if key == "text" and isinstance(value, str)
            else block_text_length(value)
            for key, value in node.items()
        )
    if isinstance(node, list):
        return sum(block_text_length(item) for item in node)
    return 0


def split_sections(mrkdwn: str, limit: int = SECTION_LIMIT) -> list[str]:
    """Pack paragraphs into sections of at most `limit`; split a paragraph only when it must."""
    chunks: list[str] = []
    current, size = "", 0
    for paragraph in _paragraphs(mrkdwn):
        for piece in _split_paragraph(paragraph, limit):
            piece_size = slack_len(piece)
            if current and size + 2 + piece_size <= limit:
                current, size = f"{current}\n\n{piece}", size + 2 + piece_size
            else:
                if current:
                    chunks.append(current)
                current, size = piece, piece_size
    if current:
        chunks.append(current)
    return [chunk for chunk in chunks if chunk.strip()]


def _paragraphs(mrkdwn: str) -> Iterator[str]:
    # A blank line inside a code block does not end the paragraph: the block stays whole.
    lines: list[str] = []
    in_fence = False
    for line in mrkdwn.split("\n"):
        if line.startswith("```"):
            in_fence = not in_fence
        if line.strip() or in_fence:
            lines.append(line)
        elif lines:
            yield "\n".join(lines)
            lines = []
    if lines:
        yield "\n".join(lines)


def _split_paragraph(paragraph: str, limit: int) -> list[str]:
    """Split at line ends, closing a code block at the cut and reopening it after."""
    if slack_len(paragraph) <= limit:
        return [paragraph]
    pieces: list[str] = []
    lines: list[str] = []
    size = 0
    fence_open = False  # at the end of `lines`
    # Room for "```\n" before and "\n```" after a line, when it must stand alone in a block.
    line_limit = limit - 8

    def flush() -> None:
        nonlocal lines, size
        if lines and lines != ["```"]:  # never an empty code block
            pieces.append("\n".join([*lines, "```"] if fence_open else lines))
        lines = ["```"] if fence_open else []
        size = 3 if fence_open else 0

    for line in paragraph.split("\n"):
        toggles = line.startswith("```")
        line_size = slack_len(line)
        if line_size > line_limit:
            flush()
            parts = _split_words(line, line_limit)
            for part in parts[:-1]:
                pieces.append(f"```\n{part}\n```" if fence_open else part)
            if parts:
                lines.append(parts[-1])
                size += (1 if size else 0) + slack_len(parts[-1])
            fence_open = fence_open != toggles
            continue
        opens = fence_open != toggles
        # An open fence keeps room for its closing line, so closing always fits.
        if lines and size + 1 + line_size + (4 if opens else 0) > limit:
            flush()
        size += (1 if lines else 0) + line_size
        lines.append(line)
        fence_open = opens
    if lines and lines != ["```"]:
        pieces.append("\n".join(lines))
    return pieces


def _split_words(text: str, limit: int) -> list[str]:
    """Cut a long line at spaces (or anywhere, if it has none) into parts of at most `limit`."""
    parts: list[str] = []
    while slack_len(text) > limit:
        cut = _cut_index(text, limit)
        head, text = text[:cut].rstrip(), text[cut:].lstrip()
        if head:
            parts.append(head)
    if text.strip():
        parts.append(text)
    return parts


def _cut_index(text: str, limit: int) -> int:
    end = _prefix_within(text, limit)
    space = end
    while (space := text.rfind(" ", 0, space)) > 0:
        if text.rfind("<", 0, space) <= text.rfind(">", 0, space):
            return space  # not inside a <url|label> link
    cut = end
    # No space to cut at: still never cut an entity like &amp; or a link in half.
    ampersand = text.rfind("&", max(0, cut - 4), cut)
    if ampersand > 0 and ";" not in text[ampersand:cut]:
        cut = ampersand
    opening = text.rfind("<", 0, cut)
    closing = text.find(">", opening)
    if opening > 0 and (closing < 0 or closing >= cut):
        cut = opening
    return max(cut, 1)


def _prefix_within(text: str, limit: int) -> int:
    end = min(len(text), limit)
    while end > 1 and (excess := slack_len(text[:end]) - limit) > 0:
        end -= excess
    return max(end, 1)


def slack_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def fallback_text(mrkdwn: str) -> str:
    """Plain text for notifications: links shown by their labels, formatting marks dropped."""
    plain = _SLACK_LINK.sub(lambda m: m.group(2) or m.group(1), mrkdwn)
    plain = _MARKER_CLOSE.sub("", _MARKER_OPEN.sub("", plain.replace("`", "")))
    plain = re.sub(r"\n{3,}", "\n\n", plain).strip()
    if slack_len(plain) <= FALLBACK_LIMIT:
        return plain
    return plain[: _cut_index(plain, FALLBACK_LIMIT - 1)].rstrip() + "…"


def _message_fallback(blocks: list[dict[str, Any]]) -> str:
    """The fallback text of an answer's message: its text up to the sources and buttons."""
    texts: list[str] = []
    for block in blocks:
        if block["type"] == "divider":
            break
        texts.append(_block_mrkdwn(block))
    return fallback_text("\n\n".join(texts))


def _block_mrkdwn(block: dict[str, Any]) -> str:
    """The text of a section, context or table block, for the message's fallback text."""
    if block["type"] == "context":
        return "\n".join(element["text"] for element in block["elements"])
    if block["type"] == "table":
        # Plain cells: mrkdwn characters are escaped, so fallback_text shows them as written.
        return "\n".join(escape(" | ".join(cell["text"] for cell in row)) for row in block["rows"])
    return str(block["text"]["text"])


def _tail_fallback(sources: Sequence[SourceRef]) -> str:
    return "Sources and feedback for this answer" if sources else "Was this answer helpful?"


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def section_block(mrkdwn: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}}


@dataclass(frozen=True)
class CreditRef:
    """Who answered a question that is answered again from their verified answer."""

    user_id: str
    day: str  # "3 Dec"


_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")


def credit_line(credit: CreditRef) -> str:
    """ "Answered by @Dana on 3 Dec, verified": a real mention only for a well-formed id."""
    who = f"<@{credit.user_id}>" if _USER_ID.match(credit.user_id) else escape(credit.user_id)
    return f"✅ Answered by {who} on {escape(credit.day)}, verified"


def context_block(mrkdwn: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": mrkdwn}]}


def plain_text(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}
