"""Block Kit for escalations: the on-call card and the messages around a hand-off to a person.

Like `bot.blocks`, these are pure builders; the caller posts, updates and opens them. The
card is one message, so everything of unbounded length (the question, the bot's draft, the
final answer) is shortened to fit Slack's limits rather than split: the thread link and the
resolve modal hold the full text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from bot.blocks import (
    FALLBACK_LIMIT,
    MESSAGE_TEXT_BUDGET,
    SECTION_LIMIT,
    SlackMessage,
    SourceRef,
    block_text_length,
    button,
    context_block,
    fallback_text,
    fits,
    plain_text,
    section_block,
    shorten,
    slack_len,
    sources_blocks,
    split_sections,
)
from bot.mrkdwn import escape, link, to_mrkdwn
from store.models import EscalationPriority, EscalationStatus

ESCALATION_CLAIM = "escalation_claim"
ESCALATION_RESOLVE = "escalation_resolve"
RESOLVE_VIEW = "escalation_resolve"
# The input's block id, for a `response_action: errors` answer that points at it.
RESOLUTION_BLOCK = "resolution"
# "Save as a verified answer" and what to save: the question as it should be matched, the
# answer as it should be reused, who may be shown it, until when.
VERIFY_BLOCK = "verify"
VERIFIED_QUESTION_BLOCK = "verified_question"
VERIFIED_ANSWER_BLOCK = "verified_answer"
VERIFIED_AUDIENCE_BLOCK = "verified_audience"
VERIFIED_EXPIRY_BLOCK = "verified_expiry"
_SAVE_VERIFIED = "save"

TRIGGER_LABELS: dict[str, str] = {
    "button": "Asked for a person (button)",
    "asked": "Asked for a person in words",
    "weak_evidence": "No policy covers it",
    "sensitive": "Sensitive topic",
    "second_downvote": "Second 👎 in the thread",
}

STATUSES = tuple(EscalationStatus)
PRIORITIES = tuple(EscalationPriority)

QUESTION_LIMIT = 1_500
DRAFT_LIMIT = SECTION_LIMIT
RESOLUTION_LIMIT = 1_500
MENTION_LIMIT = 500
SNIPPET_LIMIT = 150
RESOLUTION_MAX_LENGTH = 3_000

_RESOLUTION_ACTION = "answer"
_LABEL_LIMIT = 100
# Slack ids are about 11 characters and permalinks about 80: anything much longer is no id
# or link, and is cut (an id) or left out (a link) so the card stays within Slack's limits.
_ID_LIMIT = 64
_LINK_LIMIT = 1_000
# A draft is only worth showing with room for a few sentences.
_MIN_DRAFT = 200
_CUT_MARK = "\n…"  # on its own line: text right after a closing ``` confuses Slack


@dataclass(frozen=True)
class EscalationCard:
    """Everything the on-call card shows; the caller rebuilds it from the escalation's row."""

    escalation_id: int
    question: str  # plain text as the user wrote it; escaped here
    asker_id: str
    trigger: str  # a key of TRIGGER_LABELS; an unknown key is shown as it is
    priority: str  # an EscalationPriority value
    thread_link: str | None
    channel_id: str
    mention: str  # Slack syntax, trusted: "<!subteam^S0ONCALL>", "<@U1> <@U2>" or ""
    draft: str | None = None  # Markdown from the model
    sources: tuple[SourceRef, ...] = ()
    status: str = EscalationStatus.OPEN  # an EscalationStatus value
    assignee: str | None = None
    resolution: str | None = None  # Markdown from the person who resolved it
    reminder: int = 0  # 0 for the first post, then 1, 2, … for each re-post


def escalation_card(card: EscalationCard) -> SlackMessage:
    """The card in the on-call channel, for any state; always one valid message."""
    _check(card)
    blocks = [section_block(_headline(card))]
    if card.status == EscalationStatus.OPEN:
        call = _call_line(card)
        if call:
            blocks.append(section_block(call))
    blocks.append(context_block(_where(card)))
    blocks.append(section_block(f"*Question*\n{_clipped(_quoted(card.question), QUESTION_LIMIT)}"))
    sources = sources_blocks(card.sources)
    state = [{"type": "divider"}, *_state_blocks(card)]
    draft = _draft_block(card.draft, blocks + sources + state)
    return SlackMessage(text=_card_text(card), blocks=[*blocks, *draft, *sources, *state])


def moved_card_notice(card: EscalationCard) -> SlackMessage:
    """What a card becomes once a reminder re-posts it below: a pointer, with no buttons."""
    snippet = _snippet(card.question)
    quoted = f": “{snippet}”" if snippet else ""
    return SlackMessage(
        text=f"Escalation {card.escalation_id} was re-posted below.",
        blocks=[
            context_block(
                f":arrow_down: Escalation {card.escalation_id} was re-posted below as a "
                f"reminder{quoted}"
            )
        ],
    )


def escalation_notice(
    asker_id: str, *, safety_note: str | None = None, priority: str = EscalationPriority.NORMAL
) -> str:
    """The reply in the user's thread when a person is brought in.

    `safety_note` is configured text in mrkdwn, not user input, so it is not escaped; it comes
    first because on a sensitive topic it matters more than the wait.
    """
    _check_priority(priority)
    urgency = " and marked it urgent" if priority == EscalationPriority.HIGH else ""
    notice = (
        f"<@{escape(asker_id)}> I've asked the dispatch team to help{urgency}. "
        "Someone will reply in this thread."
    )
    if safety_note and safety_note.strip():
        return f"{safety_note.strip()}\n\n{notice}"
    return notice


def claimed_notice(assignee_id: str) -> str:
    """The reply in the user's thread once someone claims the escalation."""
    return f"<@{escape(assignee_id)}> is on it and will reply in this thread."


def resolution_post(assignee_id: str, resolution_markdown: str) -> list[SlackMessage]:
    """The person's final answer as the bot posts it in the thread, split like an answer."""
    header = f"Answer from <@{escape(assignee_id)}>:"
    chunks = split_sections(f"{header}\n{to_mrkdwn(resolution_markdown)}")
    messages: list[list[dict[str, Any]]] = [[]]
    texts: list[list[str]] = [[]]
    for chunk in chunks:
        block = section_block(chunk)
        if messages[-1] and not fits([*messages[-1], block]):
            messages.append([])
            texts.append([])
        messages[-1].append(block)
        texts[-1].append(chunk)
    # The header goes into the notification as written: fallback_text would turn the
    # mention into a bare user id.
    texts[0][0] = texts[0][0].removeprefix(header)
    first = fallback_text("\n\n".join(texts[0]))
    return [
        SlackMessage(
            text=shorten(f"{header} {first}".rstrip(), FALLBACK_LIMIT), blocks=messages[0]
        ),
        *(
            SlackMessage(text=fallback_text("\n\n".join(text)), blocks=blocks)
            for blocks, text in zip(messages[1:], texts[1:], strict=True)
        ),
    ]


@dataclass(frozen=True)
class VerifiedChoice:
    """What the resolve modal offers for saving the answer as a verified answer."""

    question: str  # the asker's question, to edit into the one to match
    audiences: tuple[str, ...]  # every audience the resolver may choose
    audience: str  # the default: the most restricted audience the thread drew on
    save_by_default: bool  # on for policy questions


@dataclass(frozen=True)
class VerifiedDraft:
    """The verified answer a resolver asked to save; blank fields fall back to the final
    answer and the asker's question."""

    question: str | None
    answer: str | None
    audience: str
    expires_on: date | None


@dataclass(frozen=True)
class Resolution:
    escalation_id: int
    answer: str
    verified: VerifiedDraft | None


def resolve_modal(
    escalation_id: int, prefill: str | None, verified: VerifiedChoice | None = None
) -> dict[str, Any]:
    """The `views.open` view in which the person writes the final answer."""
    metadata = json.dumps({"escalation_id": escalation_id}, separators=(",", ":"))
    element: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": _RESOLUTION_ACTION,
        "multiline": True,
        "max_length": RESOLUTION_MAX_LENGTH,
        "placeholder": plain_text("The answer to post in the thread"),
    }
    if prefill and prefill.strip():
        element["initial_value"] = _prefix(prefill.strip(), RESOLUTION_MAX_LENGTH)
    return {
        "type": "modal",
        "callback_id": RESOLVE_VIEW,
        "title": plain_text("Resolve"),
        "submit": plain_text("Resolve"),
        "close": plain_text("Cancel"),
        "private_metadata": metadata,
        "blocks": [
            {
                "type": "input",
                "block_id": RESOLUTION_BLOCK,
                "label": plain_text("Final answer"),
                "hint": plain_text(
                    "Posted in the user's thread as your answer. Markdown works; "
                    "check a prefilled draft before sending."
                ),
                "element": element,
            },
            *(_verified_blocks(verified) if verified else []),
        ],
    }


def _verified_blocks(choice: VerifiedChoice) -> list[dict[str, Any]]:
    save = {
        "text": plain_text("Save as a verified answer"),
        "description": plain_text(
            "The next person who asks this gets your answer at once, credited to you"
        ),
        "value": _SAVE_VERIFIED,
    }
    checkbox: dict[str, Any] = {
        "type": "checkboxes",
        "action_id": _SAVE_VERIFIED,
        "options": [save],
    }
    if choice.save_by_default:
        checkbox["initial_options"] = [save]
    audiences = [
        {"text": plain_text(_prefix(name, 75)), "value": name[:150]} for name in choice.audiences
    ][:100]
    chosen = next(option for option in audiences if option["value"] == choice.audience)
    return [
        {"type": "divider"},
        {
            "type": "input",
            "block_id": VERIFY_BLOCK,
            "optional": True,
            "label": plain_text("Reuse"),
            "element": checkbox,
        },
        _optional_text(
            VERIFIED_QUESTION_BLOCK,
            "Questions to match",
            "One way of asking it per line: each is matched, never with other figures",
            initial=_prefix(choice.question, RESOLUTION_MAX_LENGTH),
            multiline=True,
        ),
        _optional_text(
            VERIFIED_ANSWER_BLOCK,
            "Answer to reuse",
            "Leave empty to reuse the final answer above",
            multiline=True,
        ),
        {
            "type": "input",
            "block_id": VERIFIED_AUDIENCE_BLOCK,
            "label": plain_text("May be shown to"),
            "element": {
                "type": "static_select",
                "action_id": "audience",
                "options": audiences,
                "initial_option": chosen,
            },
        },
        {
            "type": "input",
            "block_id": VERIFIED_EXPIRY_BLOCK,
            "optional": True,
            "label": plain_text("Stop reusing it on"),
            "element": {"type": "datepicker", "action_id": "expires_on"},
        },
    ]


def _optional_text(
    block_id: str, label: str, hint: str, *, initial: str | None = None, multiline: bool = False
) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "plain_text_input",
        "action_id": "text",
        "multiline": multiline,
        "max_length": RESOLUTION_MAX_LENGTH,
    }
    if initial and initial.strip():
        element["initial_value"] = initial.strip()
    return {
        "type": "input",
        "block_id": block_id,
        "optional": True,
        "label": plain_text(label),
        "hint": plain_text(hint),
        "element": element,
    }


def parse_resolution(view: dict[str, Any]) -> Resolution:
    """The escalation, the stripped final answer and the verified answer to save, if any,
    of a submitted resolve modal."""
    if not isinstance(view, dict):
        raise ValueError(f"expected the view of a view_submission payload, got {type(view)}")
    if view.get("callback_id") != RESOLVE_VIEW:
        raise ValueError(
            f"not a resolve view: callback_id is {view.get('callback_id')!r}, "
            f"expected {RESOLVE_VIEW!r}"
        )
    escalation_id = _escalation_id(view.get("private_metadata"))
    state = view.get("state")
    values = state.get("values") if isinstance(state, dict) else None
    block = values.get(RESOLUTION_BLOCK) if isinstance(values, dict) else None
    entry = block.get(_RESOLUTION_ACTION) if isinstance(block, dict) else None
    if not isinstance(entry, dict):
        raise ValueError(
            f"the resolve view has no state.values.{RESOLUTION_BLOCK}.{_RESOLUTION_ACTION}"
        )
    answer = entry.get("value")
    if answer is not None and not isinstance(answer, str):
        raise ValueError(f"the final answer must be text, got {type(answer).__name__}")
    if not answer or not answer.strip():
        raise ValueError("the final answer is empty; write the answer to post before resolving")
    assert isinstance(values, dict), "the entry was read out of it"
    return Resolution(escalation_id, answer.strip(), _verified_draft(values))


def _verified_draft(values: dict[str, Any]) -> VerifiedDraft | None:
    """The verified answer asked for, or None when the box is unticked or not offered."""
    save = _state(values, VERIFY_BLOCK, _SAVE_VERIFIED)
    if not any(
        option.get("value") == _SAVE_VERIFIED for option in save.get("selected_options") or []
    ):
        return None
    audience = _state(values, VERIFIED_AUDIENCE_BLOCK, "audience").get("selected_option") or {}
    expires = _state(values, VERIFIED_EXPIRY_BLOCK, "expires_on").get("selected_date")
    if not isinstance(audience.get("value"), str):
        raise ValueError("choose who may be shown the verified answer")
    return VerifiedDraft(
        question=_text_or_none(_state(values, VERIFIED_QUESTION_BLOCK, "text").get("value")),
        answer=_text_or_none(_state(values, VERIFIED_ANSWER_BLOCK, "text").get("value")),
        audience=audience["value"],
        expires_on=date.fromisoformat(expires) if isinstance(expires, str) else None,
    )


def _state(values: dict[str, Any], block_id: str, action_id: str) -> dict[str, Any]:
    block = values.get(block_id)
    entry = block.get(action_id) if isinstance(block, dict) else None
    return entry if isinstance(entry, dict) else {}


def _text_or_none(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _check(card: EscalationCard) -> None:
    _check_priority(card.priority)
    if card.status not in STATUSES:
        known = ", ".join(STATUSES)
        raise ValueError(f"unknown escalation status {card.status!r}; expected one of {known}")
    if card.reminder < 0:
        raise ValueError(f"reminder must be 0 or more, got {card.reminder}")


def _check_priority(priority: str) -> None:
    if priority not in PRIORITIES:
        raise ValueError(f"unknown priority {priority!r}; expected one of {', '.join(PRIORITIES)}")


def _headline(card: EscalationCard) -> str:
    label = " ".join(TRIGGER_LABELS.get(card.trigger, card.trigger).split())
    if card.priority == EscalationPriority.HIGH:
        priority = ":red_circle: *High priority*"
    else:
        priority = ":large_blue_circle: Normal priority"
    trigger = f" · {escape(shorten(label, _LABEL_LIMIT))}" if label else ""
    return f"{priority} · *A person is needed*{trigger}"


def _call_line(card: EscalationCard) -> str:
    """Who to ping while nobody has claimed it; each reminder is louder than the last."""
    mention = _bounded_mention(card.mention)
    if card.reminder == 0:
        return f"{mention} Can someone pick this up?" if mention else ""
    if card.reminder == 1:
        parts = [":bell: <!here>", mention, "*Reminder 1:* this is still unclaimed."]
    else:
        parts = [
            ":rotating_light: <!here>",
            mention,
            f"*Last reminder ({card.reminder}):* this is still unclaimed.",
        ]
    return " ".join(part for part in parts if part)


def _bounded_mention(mention: str) -> str:
    # Whole mentions only: half of `<!subteam^S1>` would show as broken markup.
    kept: list[str] = []
    size = 0
    for token in mention.split():
        size += slack_len(token) + 1
        if size > MENTION_LIMIT:
            break
        kept.append(token)
    return " ".join(kept)


def _where(card: EscalationCard) -> str:
    channel = escape(shorten(card.channel_id, _ID_LIMIT))
    parts = [f"Asked by {_user(card.asker_id)} in <#{channel}>"]
    if card.thread_link and len(card.thread_link) <= _LINK_LIMIT:
        parts.append(link(card.thread_link, "Open the thread"))
    parts.append(f"Escalation {card.escalation_id}")
    return " · ".join(parts)


def _user(user_id: str) -> str:
    return f"<@{escape(shorten(user_id, _ID_LIMIT))}>"


def _quoted(text: str) -> str:
    text = re.sub(r"\n\s*\n\s*\n", "\n\n", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = [line.rstrip() for line in escape(text.strip()).split("\n")]
    if not any(lines):
        return "> _(no text)_"
    return "\n".join(f"> {line}" if line else ">" for line in lines)


def _draft_block(draft: str | None, others: list[dict[str, Any]]) -> list[dict[str, Any]]:
    mrkdwn = to_mrkdwn(draft or "")
    if not mrkdwn:
        return []
    heading = "*Draft answer* _(written by the bot; check it before using it)_"
    # The draft gets what the rest of the card leaves, so the card is one message whatever
    # the sources and the final answer take.
    room = MESSAGE_TEXT_BUDGET - sum(block_text_length(block) for block in others)
    limit = min(DRAFT_LIMIT, room) - slack_len(heading) - 1
    if limit < _MIN_DRAFT:
        return [section_block(f"{heading}\n_Too long to show here._")]
    return [section_block(f"{heading}\n{_clipped(mrkdwn, limit)}")]


def _state_blocks(card: EscalationCard) -> list[dict[str, Any]]:
    by = f" by {_user(card.assignee)}" if card.assignee else ""
    if card.status == EscalationStatus.RESOLVED:
        text = f":white_check_mark: *Resolved{by}*"
        resolution = to_mrkdwn(card.resolution or "")
        if resolution:
            text += f"\n{_clipped(resolution, RESOLUTION_LIMIT)}"
        return [section_block(text)]
    resolve = button("Resolve", ESCALATION_RESOLVE, str(card.escalation_id), "Write the answer")
    if card.status == EscalationStatus.CLAIMED:
        return [context_block(f":raising_hand: Claimed{by}"), _actions(card, [resolve])]
    claim = {
        **button("Claim", ESCALATION_CLAIM, str(card.escalation_id), "Claim this escalation"),
        "style": "primary",
    }
    return [_actions(card, [claim, resolve])]


def _actions(card: EscalationCard, buttons: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "actions", "block_id": f"escalation:{card.escalation_id}", "elements": buttons}


def _card_text(card: EscalationCard) -> str:
    priority = "High priority" if card.priority == EscalationPriority.HIGH else "Normal priority"
    waiting = card.status == EscalationStatus.OPEN
    reminder = f"Reminder {card.reminder}: " if waiting and card.reminder else ""
    snippet = _snippet(card.question)
    text = f"{reminder}{priority}: a person is needed" + (f" for “{snippet}”" if snippet else "")
    if card.status != EscalationStatus.OPEN:
        text += f" ({card.status})"
    return text


def _snippet(question: str) -> str:
    # Shortened before escaping, so the cut never falls inside an entity.
    return escape(shorten(" ".join(question.split()), SNIPPET_LIMIT))


def _clipped(mrkdwn: str, limit: int) -> str:
    """The start of `mrkdwn` within `limit`, cut where blocks.py would split it."""
    chunks = split_sections(mrkdwn, limit - len(_CUT_MARK))
    if len(chunks) > 1:
        return chunks[0] + _CUT_MARK
    return chunks[0] if chunks else ""


def _prefix(text: str, limit: int) -> str:
    """`text` within `limit` UTF-16 code units, marked with … when cut."""
    if slack_len(text) <= limit:
        return text
    # Decoding drops a surrogate pair the cut split in half.
    head = text.encode("utf-16-le")[: (limit - 1) * 2].decode("utf-16-le", errors="ignore")
    return head.rstrip() + "…"


def _escalation_id(raw: object) -> int:
    if not isinstance(raw, str):
        raise ValueError("the resolve view has no private_metadata")
    try:
        metadata = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"the view's private_metadata is not JSON: {error}") from None
    escalation_id = metadata.get("escalation_id") if isinstance(metadata, dict) else None
    if isinstance(escalation_id, bool) or not isinstance(escalation_id, int):
        raise ValueError(
            f"private_metadata.escalation_id must be an integer, got {escalation_id!r}"
        )
    return escalation_id
