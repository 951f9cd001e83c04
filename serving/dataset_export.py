"""Training data for the next adapter, from the store: SFT, KTO and DPO rows as JSON Lines.

- SFT: answers with net 👍 feedback, and people's resolutions of escalated questions, each
  after the exact prompt the model saw (TRL's conversational `messages` format). Where a
  person saved the resolution as a verified answer, that answer (question and answer as they
  reviewed it) stands in for the resolution: one row, never both.
- KTO: answers with net 👍 (label true) or net 👎 (label false).
- DPO: a 👎 answer (rejected) against the resolution of the same question, or the verified
  answer saved from it (chosen).

Verified answers that are active or stale become rows; retired ones do not, and neither does
the resolution they were saved from. A stale answer was right for the policy version in its
prompt (the prompt pins the sources the person answered from), which is what a row teaches:
answer from the sources given. A retired one was withdrawn by a person, or its time ran out,
so its words should not be learned in any form.

Only what a model wrote, outside escalated threads, is learned from: the canned replies,
people's chatter and the bot's turns after a thread was escalated stay out (see
docs/learning-loop.md). Personal data is redacted in every message of every row. The held-out
split is by conversation, so no thread has turns on both sides.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from sqlalchemy import func, select

from retrieval.search import PolicySearch
from serving.assistant import NO_GENERATION, NOTHING_WRITTEN, POLICY_WORDS_LEAD
from serving.guard import PROMPT_WITHHELD
from serving.prompts import PromptSource, build_prompt, quoted
from serving.redaction import redact
from serving.training_rows import (
    DATA_FILES,
    MANIFEST,
    ChatMessage,
    DatasetFileError,
    DatasetManifest,
    DpoRow,
    KtoRow,
    RowKind,
    SftRow,
    Split,
    TrainingRow,
    data_file,
    read_manifest,
)
from store.database import Database
from store.errors import BadInput
from store.models import (
    Answer,
    Conversation,
    Escalation,
    EscalationStatus,
    Feedback,
    Message,
    MessageRole,
    VerifiedAnswer,
    VerifiedAnswerStatus,
)
from store.types import utcnow

SEED_CONVERSATION_PREFIX = "seed-"
# A seed row gives the model the section its answer cites and one distractor: rows of ~640
# tokens (three sources: ~785), so an epoch of the seed trains in about 15 minutes on 2 cores,
# and the adapter still learns to answer from the right one of several sources.
SEED_PROMPT_SOURCES = 2
_STORED_PROMPT = TypeAdapter(tuple[ChatMessage, ...])
# How serving/prompts.py ends the last user message: the sources, then the question.
_QUESTION_LEAD = "\n\nQuestion: "


class Skip(StrEnum):
    """Why something in the store (or the seed) is not a row."""

    NOT_GENERATED = "not generated"  # the "not covered" reply: no model saw a prompt
    CANNED_REPLY = "canned reply"  # the user saw a fixed text, not what the model wrote
    EMPTY_ANSWER = "empty answer"
    UNREADABLE_PROMPT = "unreadable prompt"  # answers.prompt is not a JSON list of messages
    ESCALATED_THREAD = "escalated thread"  # answered after the thread went to people
    NO_FEEDBACK = "no feedback"
    TIED_FEEDBACK = "tied feedback"  # as many 👎 as 👍
    HUMAN_MESSAGE = "human message"  # people's turns are never rows, only resolutions
    UNRESOLVED_ESCALATION = "unresolved escalation"
    EMPTY_RESOLUTION = "empty resolution"
    RESOLUTION_WITHOUT_PROMPT = "resolution without prompt"  # no generated answer to the question
    SEED_NOT_RETRIEVED = "seed source not retrieved"
    # The verified answer saved from the escalation is the row instead.
    RESOLUTION_VERIFIED = "resolution replaced by verified answer"
    RETIRED_VERIFIED = "retired verified answer"
    VERIFIED_WITHOUT_PROMPT = "verified answer without prompt"  # nothing generated to pair it


class ExportDirectoryError(BadInput):
    """The output folder holds something other than a previous export."""


class SeedFileError(BadInput):
    """The seed file cannot be read, or a line is not a seed row; the message says where."""


class SeedRow(BaseModel):
    """A hand-written example: the answer cites its sources as `[doc-id]` markers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    question: str = Field(min_length=1)
    answer: str = Field(min_length=1)
    doc_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote; `manifest()` is the content of manifest.json."""

    out_dir: Path
    created_at: datetime
    database: str
    counts: dict[str, dict[str, int]]
    skipped: dict[str, int]
    redactions: int
    heldout_fraction: float
    seed_rows: int
    content_hash: str

    def manifest(self) -> DatasetManifest:
        return DatasetManifest(
            created_at=self.created_at,
            database=self.database,
            counts=self.counts,
            skipped=self.skipped,
            redactions=self.redactions,
            heldout_fraction=self.heldout_fraction,
            seed_rows=self.seed_rows,
            content_hash=self.content_hash,
        )


def export_dataset(
    database: Database,
    out_dir: Path,
    *,
    heldout_fraction: float = 0.1,
    seed_rows: Sequence[SeedRow] | None = None,
    search: PolicySearch | None = None,
    search_k: int = 5,
    prompt_sources: int = SEED_PROMPT_SOURCES,
    context_tokens: int = 2048,
    reserved_for_answer: int = 512,
) -> ExportReport:
    """Write the six JSON Lines files and manifest.json into `out_dir` (created if missing).

    `out_dir` must be new, empty or a previous export, which is replaced. Seed rows need
    `search`, to put the sources they cite in their prompts as the bot would.
    """
    if not 0 <= heldout_fraction < 1:
        raise ValueError(
            f"the held-out fraction must be at least 0 and below 1, not {heldout_fraction}"
        )
    if seed_rows and search is None:
        raise ValueError("seed rows need a policy search to retrieve the sources they cite")
    check_output_dir(out_dir)

    rows, skipped = _rows_from_store(database)
    if seed_rows:
        assert search is not None
        seeded, seed_skipped = seed_sft_rows(
            seed_rows,
            search,
            k=search_k,
            prompt_sources=prompt_sources,
            context_tokens=context_tokens,
            reserved_for_answer=reserved_for_answer,
        )
        rows[RowKind.SFT].extend(seeded)
        skipped.update(seed_skipped)

    redactions = 0
    kept: dict[RowKind, list[TrainingRow]] = {}
    for kind in RowKind:
        redacted = [_redacted(row) for row in rows[kind]]
        unique, duplicates = _drop_duplicates(redacted)
        kept[kind] = [row for row, _ in unique]
        redactions += sum(count for _, count in unique)
        if duplicates:
            skipped[f"duplicate {kind.value} row"] += duplicates

    heldout = heldout_conversations(
        (row.conversation for kind_rows in kept.values() for row in kind_rows),
        heldout_fraction,
    )
    files: dict[str, bytes] = {}
    counts: dict[str, dict[str, int]] = {}
    for kind in RowKind:
        sides: dict[Split, list[TrainingRow]] = {split: [] for split in Split}
        for row in kept[kind]:
            sides[Split.HELDOUT if row.conversation in heldout else Split.TRAIN].append(row)
        counts[kind.value] = {split.value: len(sides[split]) for split in Split}
        for split in Split:
            files[data_file(kind, split)] = b"".join(_jsonl(row) for row in sides[split])

    report = ExportReport(
        out_dir=out_dir,
        created_at=utcnow(),
        database=database.display_url(),
        counts=counts,
        skipped={str(reason): count for reason, count in sorted(skipped.items())},
        redactions=redactions,
        heldout_fraction=heldout_fraction,
        seed_rows=sum(
            row.conversation.startswith(SEED_CONVERSATION_PREFIX) for row in kept[RowKind.SFT]
        ),
        content_hash=content_hash(files),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in DATA_FILES:
        (out_dir / name).write_bytes(files[name])
    # Last: a folder with a manifest is a complete export.
    (out_dir / MANIFEST).write_text(report.manifest().model_dump_json(indent=2) + "\n", "utf-8")
    return report


def check_output_dir(out_dir: Path) -> None:
    """Refuse a folder that is neither new, empty nor a previous export (nothing is written)."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise ExportDirectoryError(f"{out_dir} is a file; give --out a folder")
    names = {path.name for path in out_dir.iterdir()}
    if not names:
        return
    if MANIFEST in names and names <= {*DATA_FILES, MANIFEST} and _reads_as_manifest(out_dir):
        return
    raise ExportDirectoryError(
        f"{out_dir} is not empty and is not a previous dataset export; "
        "give --out a new or empty folder (nothing was written)"
    )


def content_hash(files: dict[str, bytes]) -> str:
    """sha256 over the six files in `DATA_FILES` order, each framed by its name and length,
    so a row moved from one file to the next changes the hash."""
    digest = hashlib.sha256()
    for name in DATA_FILES:
        data = files[name]
        digest.update(f"{name}\n{len(data)}\n".encode())
        digest.update(data)
    return digest.hexdigest()


def conversation_key(team_id: str, channel_id: str, thread_ts: str) -> str:
    """A stable opaque id for a thread: the rows of one thread share it, nothing else shows."""
    return hashlib.sha256(f"{team_id}/{channel_id}/{thread_ts}".encode()).hexdigest()[:16]


def heldout_conversations(conversations: Iterable[str], fraction: float) -> frozenset[str]:
    """The conversations held out: those whose hash falls below `fraction`.

    A conversation keeps its side as the store grows. With two or more conversations and a
    fraction above 0, at least one is held out and at least one is left to train on.
    """
    ids = sorted(set(conversations))
    if fraction <= 0 or not ids:
        return frozenset()
    position = {conversation: _unit_hash(conversation) for conversation in ids}
    held = {conversation for conversation in ids if position[conversation] < fraction}
    if len(ids) >= 2:
        if not held:
            held = {min(ids, key=position.__getitem__)}
        elif len(held) == len(ids):
            held.remove(max(ids, key=position.__getitem__))
    return frozenset(held)


# The store


@dataclass(frozen=True)
class _StoredAnswer:
    id: int
    conversation: str
    conversation_id: int
    text: str
    prompt: tuple[ChatMessage, ...]  # empty: none, or unreadable
    model: str
    created_at: datetime
    question_message_id: int | None  # the user's message just before it
    votes: int
    net_feedback: int


@dataclass(frozen=True)
class _StoredEscalation:
    id: int
    conversation_id: int
    status: EscalationStatus
    resolution: str | None
    created_at: datetime
    answer_id: int | None
    question_message_id: int | None


@dataclass(frozen=True)
class _StoredVerified:
    id: int
    question: str
    answer: str
    escalation_id: int | None
    status: VerifiedAnswerStatus

    @property
    def learned(self) -> bool:
        return self.status is not VerifiedAnswerStatus.RETIRED


def _rows_from_store(
    database: Database,
) -> tuple[dict[RowKind, list[TrainingRow]], Counter[str]]:
    """The rows the store yields (not yet redacted or deduplicated), and what was skipped."""
    answers, escalations, verified, human_messages = _read_store(database)
    rows: dict[RowKind, list[TrainingRow]] = {kind: [] for kind in RowKind}
    skipped: Counter[str] = Counter()
    if human_messages:
        skipped[Skip.HUMAN_MESSAGE] += human_messages

    by_id = {answer.id: answer for answer in answers}
    by_question: dict[int, _StoredAnswer] = {}
    for answer in answers:
        if answer.question_message_id is not None and _usable(answer):
            by_question.setdefault(answer.question_message_id, answer)
    escalations_in: dict[int, list[_StoredEscalation]] = defaultdict(list)
    for escalation in escalations:
        escalations_in[escalation.conversation_id].append(escalation)
    verified_from: dict[int, list[_StoredVerified]] = defaultdict(list)
    for saved in verified:
        if saved.escalation_id is not None:
            verified_from[saved.escalation_id].append(saved)
        elif saved.learned:  # its escalation was purged: no prompt to pair it with
            skipped[Skip.VERIFIED_WITHOUT_PROMPT] += 1
        else:
            skipped[Skip.RETIRED_VERIFIED] += 1

    for answer in answers:
        reason = _skip_reason(answer, escalations_in[answer.conversation_id])
        if reason is not None:
            skipped[reason] += 1
            continue
        if answer.net_feedback > 0:
            rows[RowKind.SFT].append(SftRow.of(answer.prompt, answer.text, answer.conversation))
        rows[RowKind.KTO].append(
            KtoRow.of(answer.prompt, answer.text, answer.net_feedback > 0, answer.conversation)
        )
        if answer.net_feedback < 0:
            resolution = _resolution_for(
                answer, escalations_in[answer.conversation_id], verified_from
            )
            if resolution is not None:
                rows[RowKind.DPO].append(
                    DpoRow.of(answer.prompt, resolution, answer.text, answer.conversation)
                )

    for escalation in escalations:
        if verified_from[escalation.id]:
            _verified_rows(
                escalation, verified_from[escalation.id], by_id, by_question, rows, skipped
            )
            continue
        if escalation.status is not EscalationStatus.RESOLVED:
            skipped[Skip.UNRESOLVED_ESCALATION] += 1
            continue
        resolution = (escalation.resolution or "").strip()
        if not resolution:
            skipped[Skip.EMPTY_RESOLUTION] += 1
            continue
        asked = _answer_to_escalated_question(escalation, by_id, by_question)
        if asked is None:
            skipped[Skip.RESOLUTION_WITHOUT_PROMPT] += 1
            continue
        rows[RowKind.SFT].append(SftRow.of(asked.prompt, resolution, asked.conversation))
    return rows, skipped


def _verified_rows(
    escalation: _StoredEscalation,
    saved: Sequence[_StoredVerified],
    by_id: dict[int, _StoredAnswer],
    by_question: dict[int, _StoredAnswer],
    rows: dict[RowKind, list[TrainingRow]],
    skipped: Counter[str],
) -> None:
    """The SFT rows of the verified answers saved from one escalation, in place of its
    resolution: each after the prompt the model had for the escalated question, asked in
    the verified answer's words."""
    if escalation.status is EscalationStatus.RESOLVED and (escalation.resolution or "").strip():
        skipped[Skip.RESOLUTION_VERIFIED] += 1
    asked = _answer_to_escalated_question(escalation, by_id, by_question)
    for verified in saved:
        if not verified.learned:
            skipped[Skip.RETIRED_VERIFIED] += 1
        elif asked is None:
            skipped[Skip.VERIFIED_WITHOUT_PROMPT] += 1
        else:
            prompt = _asking(asked.prompt, verified.question)
            rows[RowKind.SFT].append(SftRow.of(prompt, verified.answer, asked.conversation))


def _asking(prompt: Sequence[ChatMessage], question: str) -> tuple[ChatMessage, ...]:
    """The prompt with its question as `question` words it: the person saving a verified
    answer may have edited the question. The sources stay the ones the model saw."""
    last = prompt[-1]
    head, lead, _ = last.content.rpartition(_QUESTION_LEAD)
    if last.role != "user" or not lead or not question.strip():
        return tuple(prompt)
    reworded = f"{head}{lead}{quoted(question.strip())}"
    return (*prompt[:-1], last.model_copy(update={"content": reworded}))


def _read_store(
    database: Database,
) -> tuple[list[_StoredAnswer], list[_StoredEscalation], list[_StoredVerified], int]:
    with database.transaction() as session:
        conversations = {
            row.id: conversation_key(row.team_id, row.channel_id, row.thread_ts)
            for row in session.execute(
                select(
                    Conversation.id,
                    Conversation.team_id,
                    Conversation.channel_id,
                    Conversation.thread_ts,
                )
            )
        }
        # Which user message each assistant message answered: the last one before it.
        question_of: dict[int, int | None] = {}
        last_question: dict[int, int] = {}
        human_messages = 0
        for message in session.execute(
            select(Message.id, Message.conversation_id, Message.role).order_by(Message.id)
        ):
            if message.role is MessageRole.USER:
                last_question[message.conversation_id] = message.id
            elif message.role is MessageRole.ASSISTANT:
                question_of[message.id] = last_question.get(message.conversation_id)
            else:
                human_messages += 1
        feedback = {
            row.answer_id: (row.votes, row.net)
            for row in session.execute(
                select(
                    Feedback.answer_id,
                    func.count(Feedback.id).label("votes"),
                    func.sum(Feedback.value).label("net"),
                ).group_by(Feedback.answer_id)
            )
        }
        answers = [
            _StoredAnswer(
                id=row.id,
                conversation=conversations[row.conversation_id],
                conversation_id=row.conversation_id,
                text=_as_shown(row.text, row.quote),
                prompt=_read_prompt(row.prompt),
                model=row.model,
                created_at=row.created_at,
                question_message_id=question_of.get(row.message_id),
                votes=feedback.get(row.id, (0, 0))[0],
                net_feedback=int(feedback.get(row.id, (0, 0))[1]),
            )
            for row in session.execute(
                select(
                    Answer.id,
                    Answer.message_id,
                    Answer.prompt,
                    Answer.model,
                    Answer.created_at,
                    Answer.quote,
                    Message.text,
                    Message.conversation_id,
                )
                .join(Message, Answer.message_id == Message.id)
                .order_by(Answer.id)
            )
        ]
        escalations = [
            _StoredEscalation(
                id=row.id,
                conversation_id=row.conversation_id,
                status=row.status,
                resolution=row.resolution,
                created_at=row.created_at,
                answer_id=row.answer_id,
                question_message_id=row.question_message_id,
            )
            for row in session.scalars(select(Escalation).order_by(Escalation.id))
        ]
        verified = [
            _StoredVerified(
                id=row.id,
                question=row.question,
                answer=row.answer,
                escalation_id=row.escalation_id,
                status=row.status,
            )
            for row in session.execute(
                select(
                    VerifiedAnswer.id,
                    VerifiedAnswer.question,
                    VerifiedAnswer.answer,
                    VerifiedAnswer.escalation_id,
                    VerifiedAnswer.status,
                ).order_by(VerifiedAnswer.id)
            )
        ]
    return answers, escalations, verified, human_messages


def _as_shown(text: str, quote: dict[str, Any] | None) -> str:
    """An answer as the person saw and voted on it. Where the model's text failed
    verification, that is the policy's words under a plain lead: what the model should have
    written instead."""
    if text == POLICY_WORDS_LEAD and quote and quote.get("text"):
        return f"{text}\n\n{quote['text']}"
    return text


def _skip_reason(answer: _StoredAnswer, escalations: Sequence[_StoredEscalation]) -> Skip | None:
    if answer.model == NO_GENERATION:
        return Skip.NOT_GENERATED
    if not answer.text.strip():
        return Skip.EMPTY_ANSWER
    if answer.text in (NOTHING_WRITTEN, PROMPT_WITHHELD):
        return Skip.CANNED_REPLY
    if not answer.prompt:
        return Skip.UNREADABLE_PROMPT
    if any(
        answer.created_at >= escalation.created_at and answer.id != escalation.answer_id
        for escalation in escalations
    ):
        return Skip.ESCALATED_THREAD
    if answer.votes == 0:
        return Skip.NO_FEEDBACK
    if answer.net_feedback == 0:
        return Skip.TIED_FEEDBACK
    return None


def _usable(answer: _StoredAnswer | None) -> bool:
    return answer is not None and answer.model != NO_GENERATION and bool(answer.prompt)


def _answer_to_escalated_question(
    escalation: _StoredEscalation,
    by_id: dict[int, _StoredAnswer],
    by_question: dict[int, _StoredAnswer],
) -> _StoredAnswer | None:
    """The generated answer whose prompt the bot had for the escalated question, if any."""
    drafted = by_id.get(escalation.answer_id) if escalation.answer_id is not None else None
    if _usable(drafted):
        return drafted
    if escalation.question_message_id is None:
        return None
    return by_question.get(escalation.question_message_id)


def _resolution_for(
    answer: _StoredAnswer,
    escalations: Sequence[_StoredEscalation],
    verified_from: dict[int, list[_StoredVerified]],
) -> str | None:
    """What people answered to the same question, when they resolved an escalation of it:
    the verified answer saved from it if there is one (the latest), else the resolution.
    None when the only verified answers saved from it were retired."""
    for escalation in escalations:
        same_question = escalation.answer_id == answer.id or (
            escalation.question_message_id is not None
            and escalation.question_message_id == answer.question_message_id
        )
        if not same_question:
            continue
        saved = verified_from.get(escalation.id, [])
        if saved:
            learned = [verified for verified in saved if verified.learned]
            return learned[-1].answer if learned else None
        resolution = (escalation.resolution or "").strip()
        if escalation.status is EscalationStatus.RESOLVED and resolution:
            return resolution
    return None


def _read_prompt(serialized: str) -> tuple[ChatMessage, ...]:
    """The chat messages of `answers.prompt`; empty when there are none or they are not
    messages a row can hold."""
    try:
        return _STORED_PROMPT.validate_json(serialized)
    except ValidationError:
        return ()


# The seed


def read_seed_file(path: Path) -> list[SeedRow]:
    """Seed rows from a JSON Lines file; a bad line is reported with its number."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise SeedFileError(f"cannot read the seed file {path}: {error.strerror}") from error
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(SeedRow.model_validate(json.loads(line)))
        except (json.JSONDecodeError, ValidationError) as error:
            raise SeedFileError(
                f"{path}:{number}: expected a JSON object with question, answer and doc_ids"
            ) from error
    if not rows:
        raise SeedFileError(f"{path} has no seed rows")
    return rows


_DOC_MARKER = re.compile(r"\[((?=[a-z0-9-]*[a-z])[a-z0-9]+(?:-[a-z0-9]+)*)\]")


def seed_sft_rows(
    seed_rows: Sequence[SeedRow],
    search: PolicySearch,
    *,
    k: int,
    prompt_sources: int,
    context_tokens: int,
    reserved_for_answer: int,
) -> tuple[list[SftRow], Counter[str]]:
    """SFT rows for a fresh install: each seed question with a prompt shaped like the bot's.

    The bot gives the model the section it quotes first, then the next best; a seed row gives
    it the best section of each document the answer cites first, then the best of the rest
    as distractors, `prompt_sources` in all. Each `[doc-id]` marker becomes that source's
    number. A row citing a document retrieval did not find would teach citing what is not
    there: it is skipped.
    """
    rows: list[SftRow] = []
    skipped: Counter[str] = Counter()
    for number, seed in enumerate(seed_rows, start=1):
        results = search.search(seed.question, k=k)
        cited = {match.group(1) for match in _DOC_MARKER.finditer(seed.answer)}
        prompt = build_prompt(
            seed.question,
            cited_first(results, cited | set(seed.doc_ids), prompt_sources),
            [],
            context_tokens=context_tokens,
            reserved_for_answer=reserved_for_answer,
        )
        answer = _cite_by_number(seed.answer, prompt.sources, required=seed.doc_ids)
        if answer is None:
            skipped[Skip.SEED_NOT_RETRIEVED] += 1
            continue
        messages = [ChatMessage.model_validate(message) for message in prompt.messages]
        rows.append(SftRow.of(messages, answer, f"{SEED_CONVERSATION_PREFIX}{number}"))
    return rows, skipped


def cited_first(results: Sequence[PromptSource], cited: set[str], count: int) -> list[PromptSource]:
    """The best-ranked source of each cited document, then the other results, `count` in all
    (never fewer than the cited documents)."""
    first_of_cited: dict[str, PromptSource] = {}
    for result in results:
        if result.doc_id in cited:
            first_of_cited.setdefault(result.doc_id, result)
    chosen = list(first_of_cited.values())
    rest = [result for result in results if result not in chosen]
    return [*chosen, *rest[: max(0, count - len(chosen))]]


def _cite_by_number(
    answer: str, sources: Sequence[PromptSource], *, required: Iterable[str] = ()
) -> str | None:
    """`[doc-id]` markers as `[n]`, n the first prompt source of that document.

    None when a marked or `required` document is not among the sources.
    """
    first_source: dict[str, int] = {}
    for number, source in enumerate(sources, start=1):
        first_source.setdefault(source.doc_id, number)
    cited = {match.group(1) for match in _DOC_MARKER.finditer(answer)} | set(required)
    if not cited <= first_source.keys():
        return None
    return _DOC_MARKER.sub(lambda match: f"[{first_source[match.group(1)]}]", answer)


# Rows


def _redacted(row: TrainingRow) -> tuple[TrainingRow, int]:
    count = 0

    def clean(text: str) -> str:
        nonlocal count
        redacted, replaced = redact(text)
        count += replaced
        return redacted

    return row.with_contents(clean), count


def _drop_duplicates(
    rows: Sequence[tuple[TrainingRow, int]],
) -> tuple[list[tuple[TrainingRow, int]], int]:
    """The first of rows with the same content whatever their conversation, and how many
    were dropped; across train and held-out alike, so no duplicate leaks the held-out set."""
    seen: set[str] = set()
    unique: list[tuple[TrainingRow, int]] = []
    for row, redactions in rows:
        key = hashlib.sha256(row.model_dump_json(exclude={"conversation"}).encode()).hexdigest()
        if key not in seen:
            seen.add(key)
            unique.append((row, redactions))
    return unique, len(rows) - len(unique)


def _jsonl(row: TrainingRow) -> bytes:
    return (row.model_dump_json() + "\n").encode()


def _unit_hash(conversation: str) -> float:
    """A fixed position in [0, 1) for a conversation id."""
    digest = hashlib.sha256(conversation.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _reads_as_manifest(directory: Path) -> bool:
    try:
        read_manifest(directory)
    except DatasetFileError:
        return False
    return True
