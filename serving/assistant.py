"""The assistant core, free of Slack: retrieve, decide, prompt, generate, record.

The question is stored before anything can fail, so a model or retrieval outage never
loses it. Weak evidence is not sent to the model: the answer says plainly that the policy
library does not cover it and flags the turn for a person.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

from retrieval.search import PolicySearch, SearchResult
from serving.llm_client import ModelClient
from serving.prompts import HistoryTurn, build_prompt
from serving.routing import TaskKind
from store import repository
from store.database import Database
from store.models import Conversation, Message
from store.repository import AnswerRecord, CitationRecord

logger = logging.getLogger(__name__)

NOT_COVERED = (
    "I couldn't find a current policy that covers this, so I won't guess. "
    "I've flagged it for a dispatcher or supervisor to answer."
)
NOTHING_WRITTEN = (
    "I couldn't write an answer from the policy I found. The sources below may help; "
    "I've flagged this for a dispatcher or supervisor."
)
NO_GENERATION = "none"  # the `model`/`endpoint` of an answer that never reached a model
FALLBACK_CITATIONS = 3
_CITATION_MARK = re.compile(r"\[(\d{1,2})\]")
# A sentence ends at . ! or ? (and any citations right after it), or at a line break.
_SENTENCE_END = re.compile(r"[.!?](?:\s*\[\d{1,2}\])*(?=\s|$)|\n")


@dataclass(frozen=True)
class ThreadKey:
    """Where a conversation lives: a Slack thread, or a CLI session."""

    team_id: str
    channel_id: str
    thread_ts: str


@dataclass(frozen=True)
class AssistantSettings:
    k: int = 5
    min_relevance: float = 0.35
    context_tokens: int = 2048
    reserved_for_answer: int = 512
    history_turns: int = 10


@dataclass(frozen=True)
class StageTimings:
    retrieval_ms: float
    prompt_ms: float
    model_ms: float
    store_ms: float


@dataclass(frozen=True)
class AssistantAnswer:
    """A recorded answer: what to show, what it cites, and how it was produced."""

    answer_id: int
    conversation_id: int
    question_message_id: int
    text: str
    citations: list[SearchResult]
    needs_human: bool
    confidence: float | None
    model: str
    adapter: str | None
    endpoint: str
    latency_ms: int
    ttft_ms: int | None
    prompt_tokens: int | None
    completion_tokens: int | None
    timings: StageTimings


class AssistantStream:
    """Iterate for text chunks as they stream; `result` is the recorded answer afterwards."""

    def __init__(self, chunks: Iterator[str | AssistantAnswer]) -> None:
        self._chunks = chunks
        self._result: AssistantAnswer | None = None

    def __iter__(self) -> Iterator[str]:
        for item in self._chunks:
            if isinstance(item, AssistantAnswer):
                self._result = item
            else:
                yield item

    @property
    def result(self) -> AssistantAnswer:
        if self._result is None:
            raise RuntimeError("the answer stream has not been read to its end")
        return self._result


@dataclass
class _Turn:
    conversation_id: int
    question_message_id: int
    reply_ts: str | None
    history: list[HistoryTurn] = field(default_factory=list)


class Assistant:
    """Answers one question in a thread from the policy in force today."""

    def __init__(
        self,
        *,
        search: PolicySearch,
        model: ModelClient,
        database: Database,
        settings: AssistantSettings | None = None,
    ) -> None:
        self._search = search
        self._model = model
        self._database = database
        self._settings = settings or AssistantSettings()

    def answer(
        self, question: str, *, thread: ThreadKey, user_id: str, slack_ts: str | None = None
    ) -> AssistantAnswer:
        stream = self.stream_answer(question, thread=thread, user_id=user_id, slack_ts=slack_ts)
        for _ in stream:
            pass
        return stream.result

    def stream_answer(
        self,
        question: str,
        *,
        thread: ThreadKey,
        user_id: str,
        slack_ts: str | None = None,
        reply_ts: str | None = None,
    ) -> AssistantStream:
        """Start answering; nothing runs until the stream is iterated.

        `slack_ts` is the question's message, `reply_ts` the message the answer goes into.
        """
        return AssistantStream(self._run(question, thread, user_id, slack_ts, reply_ts))

    def _run(
        self,
        question: str,
        thread: ThreadKey,
        user_id: str,
        slack_ts: str | None,
        reply_ts: str | None,
    ) -> Iterator[str | AssistantAnswer]:
        turn = self._record_question(question, thread, user_id, slack_ts, reply_ts)

        started = time.perf_counter()
        results = self._search.search(_retrieval_query(question, turn.history), k=self._settings.k)
        retrieval_ms = _ms_since(started)
        confidence = results[0].relevance if results else None

        if confidence is None or confidence < self._settings.min_relevance:
            yield NOT_COVERED
            not_covered = AnswerRecord(
                text=NOT_COVERED,
                prompt="",
                model=NO_GENERATION,
                endpoint=NO_GENERATION,
                latency_ms=round(retrieval_ms),
                confidence=_clamp(confidence),
                needs_human=True,
                # Kept for audit: what was found, though too weak to show or to answer from.
                citations=[_citation_record(result) for result in results],
            )
            yield self._store_answer(turn, not_covered, [], StageTimings(retrieval_ms, 0, 0, 0))
            return

        started = time.perf_counter()
        prompt = build_prompt(
            question,
            results,
            turn.history,
            context_tokens=self._settings.context_tokens,
            reserved_for_answer=self._settings.reserved_for_answer,
        )
        prompt_ms = _ms_since(started)

        started = time.perf_counter()
        stream = self._model.stream(
            prompt.messages, channel=thread.channel_id, task_kind=_task_kind(results)
        )
        yield from stream
        generation = stream.result
        model_ms = _ms_since(started)

        written = generation.text
        if generation.finish_reason == "length":
            # Cut at LLM_MAX_TOKENS: the final message ends at a whole sentence, not mid-word.
            written = whole_sentences(written)
        text, cited = keep_cited_sources(written, prompt.sources)
        # A model that stops at once leaves the user with nothing: say so, and get a person.
        needs_human = not text
        if needs_human:
            text = NOTHING_WRITTEN
            yield text
        generated = AnswerRecord(
            text=text,
            prompt=prompt.serialized(),
            model=generation.model,
            adapter=generation.adapter,
            endpoint=generation.endpoint,
            latency_ms=round(generation.latency_ms),
            ttft_ms=round(generation.ttft_ms),
            prompt_tokens=generation.prompt_tokens,
            completion_tokens=generation.completion_tokens,
            confidence=_clamp(confidence),
            needs_human=needs_human,
            citations=[_citation_record(result) for result in cited],
        )
        yield self._store_answer(
            turn, generated, cited, StageTimings(retrieval_ms, prompt_ms, model_ms, 0)
        )

    def _record_question(
        self,
        question: str,
        thread: ThreadKey,
        user_id: str,
        slack_ts: str | None,
        reply_ts: str | None,
    ) -> _Turn:
        with self._database.transaction() as session:
            conversation = repository.find_or_open_conversation(
                session,
                team_id=thread.team_id,
                channel_id=thread.channel_id,
                thread_ts=thread.thread_ts,
                user_id=user_id,
            )
            history = _history(conversation, self._settings.history_turns)
            asked = repository.record_user_message(
                session, conversation, text=question, user_id=user_id, slack_ts=slack_ts
            )
            return _Turn(conversation.id, asked.id, reply_ts, history)

    def _store_answer(
        self,
        turn: _Turn,
        record: AnswerRecord,
        cited: Sequence[SearchResult],
        timings: StageTimings,
    ) -> AssistantAnswer:
        started = time.perf_counter()
        with self._database.transaction() as session:
            conversation = session.get_one(Conversation, turn.conversation_id)
            answer_id = repository.record_answer(
                session, conversation, replace(record, slack_ts=turn.reply_ts)
            ).id
        timings = replace(timings, store_ms=_ms_since(started))
        # Metadata only: questions and answers can carry customer details.
        logger.info(
            "answered conversation=%d answer=%d model=%s cited=%d needs_human=%s "
            "confidence=%s retrieval_ms=%.0f prompt_ms=%.1f model_ms=%.0f store_ms=%.1f",
            turn.conversation_id,
            answer_id,
            record.adapter or record.model,
            len(cited),
            record.needs_human,
            "none" if record.confidence is None else f"{record.confidence:.3f}",
            timings.retrieval_ms,
            timings.prompt_ms,
            timings.model_ms,
            timings.store_ms,
        )
        return AssistantAnswer(
            answer_id=answer_id,
            conversation_id=turn.conversation_id,
            question_message_id=turn.question_message_id,
            text=record.text,
            citations=list(cited),
            needs_human=record.needs_human,
            confidence=record.confidence,
            model=record.model,
            adapter=record.adapter,
            endpoint=record.endpoint,
            latency_ms=record.latency_ms,
            ttft_ms=record.ttft_ms,
            prompt_tokens=record.prompt_tokens,
            completion_tokens=record.completion_tokens,
            timings=timings,
        )


def _retrieval_query(question: str, history: Sequence[HistoryTurn]) -> str:
    """A follow-up ("and a 41k one?") is searched together with the question before it."""
    earlier = next((turn.text for turn in reversed(history) if turn.role == "user"), None)
    return f"{earlier}\n{question}" if earlier else question


def _history(conversation: Conversation, limit: int) -> list[HistoryTurn]:
    """The thread so far from the store (Slack's history API is rate-limited for new apps)."""
    messages: list[Message] = conversation.messages[-limit:] if limit else []
    return [HistoryTurn(role=message.role.value, text=message.text) for message in messages]


def whole_sentences(text: str) -> str:
    """`text` up to its last complete sentence or line; unchanged when it has none."""
    ends = list(_SENTENCE_END.finditer(text))
    if not ends:
        return text
    return text[: ends[-1].end()].rstrip()


def keep_cited_sources(
    text: str, sources: Sequence[SearchResult]
) -> tuple[str, list[SearchResult]]:
    """The sources the answer cites by number, in order of first mention.

    A number that points at no source is removed from the text, so a reader never follows
    a citation to nothing. An answer that cites nothing falls back to the top sources.
    """
    cited: list[int] = []

    def check(match: re.Match[str]) -> str:
        number = int(match.group(1))
        if 1 <= number <= len(sources):
            if number not in cited:
                cited.append(number)
            return match.group(0)
        return ""

    cleaned = _CITATION_MARK.sub(check, text).strip()
    if not cited:
        return cleaned, list(sources[:FALLBACK_CITATIONS])
    return cleaned, [sources[number - 1] for number in cited]


def _task_kind(results: Sequence[SearchResult]) -> TaskKind:
    """Service-ticket questions are the ones whose best source is a service policy."""
    top = results[0]
    if top.audience == "service" or "service" in top.tags:
        return TaskKind.SERVICE_TICKET
    return TaskKind.DISPATCH


def _citation_record(result: SearchResult) -> CitationRecord:
    return CitationRecord(
        doc_id=result.doc_id,
        version=str(result.version),
        chunk_id=result.chunk_id,
        score=result.score,
        title=result.title,
        section=result.section,
        effective_from=result.effective_from,
        url=result.url,
    )


def _clamp(confidence: float | None) -> float | None:
    return None if confidence is None else min(1.0, max(0.0, confidence))


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
