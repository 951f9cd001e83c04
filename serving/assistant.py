"""The assistant core, free of Slack: retrieve, decide, prompt, generate, record.

The question is stored before anything can fail, so a model or retrieval outage never
loses it. Weak evidence is not sent to the model: the answer says plainly that the policy
library does not cover it and flags the turn for a person.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from retrieval.search import PolicySearch, SearchResult
from retrieval.verified import VerifiedMatch
from serving.claims import SupportIndex
from serving.guard import PROMPT_WITHHELD
from serving.llm_client import ModelClient
from serving.passages import Passage, select_passage
from serving.prompts import HistoryTurn, PromptSource, build_prompt, source_header
from serving.redaction import redact
from serving.routing import TaskKind
from serving.streams import ResultStream
from serving.verification import (
    NOT_GENERATED,
    AnswerGate,
    Outcome,
    RowCheck,
    Verification,
    grounded_share,
    is_refusal,
)
from serving.verified_reuse import informs, reusable
from serving.verified_sources import (
    Credit,
    as_source,
    attributed,
    cited_policies,
    is_verified_source,
    ranked_together,
)
from store import repository, verified_answers
from store.database import Database
from store.errors import Unavailable
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
# What a person sees above the policy's own words when the model's text failed verification.
POLICY_WORDS_LEAD = "Here is what the policy says:"
NO_GENERATION = "none"  # the `model`/`endpoint` of an answer that never reached a model
VERIFIED_ANSWER = "verified-answer"  # the `model`/`endpoint` of a person's answer given again
FALLBACK_CITATIONS = 3
_CITATION_MARK = re.compile(r"\[(\d{1,2})\]")


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
    redact_before_model: bool = False  # personal data out of the question and history sent
    prompt_sources: int = 3  # how many retrieved sections the model reads
    # Below this cosine of answer and quoted passage, the answer is not about the policy.
    min_answer_closeness: float = 0.35
    # Below this share of its words in the question or the quoted passage, it made them up.
    min_answer_grounding: float = 0.5


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
    # The policy's own words the answer rests on, shown beside it; None when none was found.
    quote: Passage | None = None
    verification: Verification = NOT_GENERATED
    generated_text: str = ""  # the model's text before verification
    # Who gave it, when a person's verified answer was given instead of the model's.
    credit: Credit | None = None

    @property
    def shows_policy_words_only(self) -> bool:
        """The model's text failed verification: the quote stands in for it."""
        return self.text == POLICY_WORDS_LEAD

    @property
    def declined(self) -> bool:
        """The answer says the policy does not cover the question; a quote with it is only
        the closest policy found."""
        return self.text in (NOT_COVERED, NOTHING_WRITTEN, PROMPT_WITHHELD) or is_refusal(self.text)


class QuestionNotRecorded(Unavailable):
    """The store refused the question (down, read-only, full): nothing of the turn was kept,
    and nothing was searched or generated."""


@dataclass(frozen=True)
class SourcesFound:
    """Search has run: what the answer will draw on, before the model writes a word."""

    results: tuple[SearchResult, ...]
    covered: bool  # close enough to answer from; False: the answer will say it is not covered


# What an answer's stream carries before its result: text as it passes its checks, and steps.
Progress = str | SourcesFound


# Text as it passes its checks and the steps between, then the recorded answer.
AssistantStream = ResultStream[Progress, AssistantAnswer]


@dataclass(frozen=True)
class RecordedQuestion:
    conversation_id: int
    message_id: int


@dataclass
class _Turn:
    conversation_id: int
    question_message_id: int
    reply_ts: str | None
    history: list[HistoryTurn] = field(default_factory=list)
    # What the history's answers drew on, which a new answer may repeat; None: unknown.
    history_audiences: frozenset[str] | None = frozenset()


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
        audiences: Collection[str] | None = None,
    ) -> AssistantStream:
        """Start answering; nothing runs until the stream is iterated.

        `slack_ts` is the question's message, `reply_ts` the message the answer goes into.
        `audiences` are the documents' audiences the readers may see: sources and earlier
        answers of the thread outside them stay out of the prompt. None: no limit (the
        operator's command line).
        """
        return AssistantStream(
            self._run(question, thread, user_id, slack_ts, reply_ts, audiences), AssistantAnswer
        )

    def _run(
        self,
        question: str,
        thread: ThreadKey,
        user_id: str,
        slack_ts: str | None,
        reply_ts: str | None,
        audiences: Collection[str] | None,
    ) -> Iterator[Progress | AssistantAnswer]:
        turn = self._record_question(question, thread, user_id, slack_ts, reply_ts, audiences)

        started = time.perf_counter()
        query = _retrieval_query(question, turn.history)
        verified = self._search.verified_matches(query, audiences=audiences, limit=1)
        if verified and not turn.history and reusable(question, verified[0]):
            # People answered this very question: their answer, with no model call.
            yield verified[0].entry.answer
            yield self._store_verified(turn, verified[0], _ms_since(started))
            return
        results = self._search.search(query, k=self._settings.k, audiences=audiences)
        retrieval_ms = _ms_since(started)
        # The closest evidence, wherever fusion ranked it: chunks tied on their fused score
        # come in either order, and the first may be the far one.
        confidence = max((result.relevance for result in results), default=None)
        covered = confidence is not None and confidence >= self._settings.min_relevance
        yield SourcesFound(tuple(results), covered)

        if not covered:
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
                source_audiences=(),  # the text is the fixed sentence: it carries no policy
            )
            yield self._store_answer(turn, not_covered, [], StageTimings(retrieval_ms, 0, 0, 0))
            return

        started = time.perf_counter()
        asked, history = question, turn.history
        if self._settings.redact_before_model:
            asked, history = _redacted(question, turn.history)
        passage = select_passage(
            question,
            results,
            earlier_question=_earlier_question(turn.history),
            similarity=self._search.similarities,
        )
        sources = _prompt_sources(results, passage, self._settings.prompt_sources)
        if verified and informs(verified[0]):
            # Close, not the same: the model reads it beside the policy, marked as a
            # person's answer.
            sources = ranked_together(sources, as_source(verified[0]), len(sources) + 1)
        prompt = build_prompt(
            asked,
            sources,
            history,
            context_tokens=self._settings.context_tokens,
            reserved_for_answer=self._settings.reserved_for_answer,
        )
        gate = AnswerGate(
            _support(question, turn.history, prompt.sources), _row_check(question, passage)
        )
        prompt_ms = _ms_since(started)

        started = time.perf_counter()
        stream = self._model.stream(
            prompt.messages, channel=thread.channel_id, task_kind=_task_kind(results)
        )
        for chunk in stream:
            released = gate.feed(chunk)
            if released:
                yield released
            if gate.done:
                stream.stop()  # the rest would be cut or replaced: stop paying for it
        generation = stream.result
        last = gate.finish(complete=generation.finish_reason == "stop")
        if last:
            yield last
        model_ms = _ms_since(started)

        verification = gate.verdict()
        if verification.passed:
            text, cited = keep_cited_sources(gate.released, prompt.sources)
            # A person's answer informed it; the citations name policy only.
            cited = [source for source in cited if not is_verified_source(source)]
            thread_questions = [question, *(t.text for t in turn.history if t.role == "user")]
            verification = self._check_whole(thread_questions, text, passage, verification)
        if verification.outcome is Outcome.SYSTEM_PROMPT:
            # Logged without the text: it may hold the rules, or the question's personal data.
            logger.warning(
                "withheld an answer that repeated the system prompt conversation=%d",
                turn.conversation_id,
            )
        if verification.passed:
            if passage is not None and passage.source not in cited:
                cited = [*cited, passage.source]
        elif passage is not None:
            text, cited = POLICY_WORDS_LEAD, [passage.source]
        else:
            withheld = verification.outcome is Outcome.SYSTEM_PROMPT
            text = PROMPT_WITHHELD if withheld else NOTHING_WRITTEN
            cited = [] if withheld else list(results[:FALLBACK_CITATIONS])
        # Nothing checked to show, not even the policy's words, or the model found that the
        # sources do not answer it: a person should.
        needs_human = text in (NOTHING_WRITTEN, PROMPT_WITHHELD) or is_refusal(text)
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
            source_audiences=_drew_on(results, turn.history_audiences),
            generated_text=generation.text,
            verification=verification.to_json(),
            quote=None if passage is None else quote_json(passage),
        )
        yield self._store_answer(
            turn,
            generated,
            cited,
            StageTimings(retrieval_ms, prompt_ms, model_ms, 0),
            quote=passage,
            verification=verification,
        )

    def _store_verified(
        self, turn: _Turn, match: VerifiedMatch, retrieval_ms: float
    ) -> AssistantAnswer:
        entry = match.entry
        cited = cited_policies(self._search.store, entry)
        record = AnswerRecord(
            text=attributed(entry),  # the thread's record says who answered
            prompt="",
            model=VERIFIED_ANSWER,
            endpoint=VERIFIED_ANSWER,
            latency_ms=round(retrieval_ms),
            confidence=_clamp(match.similarity),
            citations=[_citation_record(result) for result in cited],
            source_audiences=[entry.audience],
            verified_answer_id=entry.verified_id,
        )
        answer = self._store_answer(turn, record, cited, StageTimings(retrieval_ms, 0, 0, 0))
        with self._database.transaction() as session:
            verified_answers.record_reuse(session, entry.verified_id)
        return replace(answer, text=entry.answer, credit=Credit.of(entry))

    def _check_whole(
        self,
        asked: Sequence[str],
        text: str,
        passage: Passage | None,
        verification: Verification,
    ) -> Verification:
        """The checks only a whole answer allows: it says something, and, unless it says the
        policy does not cover the question, it means what the policy's words under it say
        and mostly uses their words or the asker's (`asked`: the questions of the thread)."""
        if not text:  # citation marks and nothing else
            return Verification(Outcome.EMPTY)
        if passage is None or is_refusal(text):
            return verification
        (closeness,) = self._search.similarities(text, [passage.markdown])
        if closeness < self._settings.min_answer_closeness:
            return Verification(Outcome.OFF_TOPIC, (f"{closeness:.2f}",))
        grounded = grounded_share(text, [*asked, passage.markdown])
        if grounded < self._settings.min_answer_grounding:
            return Verification(Outcome.UNGROUNDED, (f"{grounded:.2f}",))
        return verification

    def record_question(
        self, question: str, *, thread: ThreadKey, user_id: str, slack_ts: str | None = None
    ) -> RecordedQuestion:
        """Store a question the assistant will not answer itself (it goes to people, or waits
        out a rate limit). Raises QuestionNotRecorded when the store refuses it."""
        turn = self._record_question(question, thread, user_id, slack_ts, None, ())
        return RecordedQuestion(turn.conversation_id, turn.question_message_id)

    def _record_question(
        self,
        question: str,
        thread: ThreadKey,
        user_id: str,
        slack_ts: str | None,
        reply_ts: str | None,
        audiences: Collection[str] | None,
    ) -> _Turn:
        """The one place a question is stored: the thread's conversation, opened if new,
        and the question as its user turn; with the history an answer may draw on."""
        try:
            with self._database.transaction() as session:
                conversation = repository.find_or_open_conversation(
                    session,
                    team_id=thread.team_id,
                    channel_id=thread.channel_id,
                    thread_ts=thread.thread_ts,
                    user_id=user_id,
                )
                history, history_audiences = _history(
                    conversation, self._settings.history_turns, audiences
                )
                asked = repository.record_user_message(
                    session, conversation, text=question, user_id=user_id, slack_ts=slack_ts
                )
                return _Turn(conversation.id, asked.id, reply_ts, history, history_audiences)
        except SQLAlchemyError as error:
            # The error's own text can quote the row, question included: the cause has it.
            raise QuestionNotRecorded(
                f"the store did not take the question ({type(error).__name__})"
            ) from error

    def _store_answer(
        self,
        turn: _Turn,
        record: AnswerRecord,
        cited: Sequence[SearchResult],
        timings: StageTimings,
        *,
        quote: Passage | None = None,
        verification: Verification = NOT_GENERATED,
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
            "verification=%s confidence=%s retrieval_ms=%.0f prompt_ms=%.1f model_ms=%.0f "
            "store_ms=%.1f",
            turn.conversation_id,
            answer_id,
            record.adapter or record.model,
            len(cited),
            record.needs_human,
            verification.outcome.value,
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
            quote=quote,
            verification=verification,
            generated_text=record.generated_text or "",
        )


def _redacted(question: str, history: Sequence[HistoryTurn]) -> tuple[str, list[HistoryTurn]]:
    """The question and history with personal data replaced, for REDACT_BEFORE_MODEL."""
    return redact(question)[0], [replace(turn, text=redact(turn.text)[0]) for turn in history]


def _retrieval_query(question: str, history: Sequence[HistoryTurn]) -> str:
    """A follow-up ("and a 41k one?") is searched together with the question before it."""
    earlier = _earlier_question(history)
    return f"{earlier}\n{question}" if earlier else question


def _earlier_question(history: Sequence[HistoryTurn]) -> str | None:
    return next((turn.text for turn in reversed(history) if turn.role == "user"), None)


def _prompt_sources(
    results: Sequence[SearchResult], passage: Passage | None, count: int
) -> list[SearchResult]:
    """The sources the model reads: the passage's section first, then the best of the rest."""
    if passage is None:
        return list(results[:count])
    rest = [result for result in results if result != passage.source]
    return [passage.source, *rest[: count - 1]]


def _support(
    question: str, history: Sequence[HistoryTurn], sources: Sequence[PromptSource]
) -> SupportIndex:
    """What an answer's numbers, contacts and dates may come from: what the asker wrote in the
    thread, and the sources as the model read them (headers with versions and dates too).
    Earlier answers are not support: they may hold what this check would have stopped."""
    asked = [turn.text for turn in history if turn.role == "user"]
    return SupportIndex(
        [question, *asked, *(f"{source_header(source)}\n{source.text}" for source in sources)]
    )


def _row_check(question: str, passage: Passage | None) -> RowCheck | None:
    if passage is None or not passage.other_rows:
        return None
    quoted = [row for block in passage.blocks for row in block.units]
    return RowCheck.of(quoted, passage.other_rows, question)


def quote_json(passage: Passage) -> dict[str, Any]:
    """The stable JSON of a quote: `ask --json` prints it and `answers.quote` stores it."""
    source = passage.source
    return {
        "text": passage.markdown,
        "kind": passage.kind.value,
        "doc_id": source.doc_id,
        "title": source.title,
        "section": source.section,
        "version": source.version,
        "effective_from": source.effective_from.isoformat(),
        "url": source.url,
    }


def _history(
    conversation: Conversation, limit: int, audiences: Collection[str] | None
) -> tuple[list[HistoryTurn], frozenset[str] | None]:
    """The thread so far from the store (Slack's history API is rate-limited for new apps),
    and the audiences its answers drew on (None: unknown).

    An earlier answer that drew on a document the readers may not see now (the channel's
    audiences changed, or it was stored before audiences were recorded) is left out: its
    text may carry that document. People's turns stay.
    """
    messages: list[Message] = conversation.messages[-limit:] if limit else []
    allowed = None if audiences is None else frozenset(audiences)
    turns: list[HistoryTurn] = []
    drew_on: frozenset[str] | None = frozenset()
    for message in messages:
        carried = _carried_audiences(message)
        if allowed is not None and (carried is None or not carried <= allowed):
            continue
        # An answer is remembered as it was shown: with the policy's words quoted under it.
        text = message.answer.shown_text if message.answer is not None else message.text
        turns.append(HistoryTurn(role=message.role.value, text=text))
        drew_on = None if drew_on is None or carried is None else drew_on | carried
    return turns, drew_on


def _carried_audiences(message: Message) -> frozenset[str] | None:
    """The audiences a message's text may carry: none for a person's words, the documents
    its prompt drew on for an answer (None when that was not recorded)."""
    if message.answer is None:
        return frozenset()
    recorded = message.answer.source_audiences
    return None if recorded is None else frozenset(recorded)


def _drew_on(
    sources: Sequence[SearchResult], history_audiences: frozenset[str] | None
) -> frozenset[str] | None:
    """Everything an answer may repeat: the sources retrieved for its prompt, cited or not
    (all of them: trimming may drop some, counting them errs on the safe side), and what the
    history drew on."""
    if history_audiences is None:
        return None
    return history_audiences | {source.audience for source in sources}


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
    return CitationRecord(result.cited(), chunk_id=result.chunk_id, score=result.score)


def _clamp(confidence: float | None) -> float | None:
    return None if confidence is None else min(1.0, max(0.0, confidence))


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
