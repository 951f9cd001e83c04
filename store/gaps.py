"""Coverage gaps: what people keep asking that neither a policy nor a person's verified
answer covers, week by week, with paraphrases of one question counted together.

A question is a gap when the bot could not answer it from policy, and people either took it
over or said so:

- escalated (`escalations.question_message_id`) when the escalation came from weak evidence
  or the bot's answer to it was the "not covered" or declined kind (`answers.needs_human`);
- voted down (a 👎 on such an answer), the question being the user's message before it.

It stops being a gap once an active verified answer covers it: one saved from its own
escalation, or one whose question is as close to it as a verified answer must be to be
reused (GAP_SIMILARITY, serving/verified_reuse.py's REUSE_SIMILARITY). Policies ingested
since are not checked: that needs the policy store, and a question they answer now stops
being escalated and drops out of the next weeks.

The same question in other words counts once: questions are grouped greedily by the cosine
of their embeddings (`cluster_vectors`, a pure function of the vectors). The store takes the
embedding as a function, `embed(texts) -> unit vectors`, so it loads no model itself:
`lambda texts: embedder.encode_documents(texts, batch_size=32)`.

Nothing here writes; every function takes the caller's session. Dates and weeks are those
of the time zone of `since` (or `now`), as in store/insights.py.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import (
    Answer,
    Escalation,
    EscalationTrigger,
    Feedback,
    Message,
    MessageRole,
    VerifiedAnswer,
    VerifiedAnswerStatus,
)

GAP_SIMILARITY = 0.80  # paraphrases of one question; also "a verified answer covers it"
EXAMPLES = 3  # other wordings shown under a cluster's question
HOME_DAYS = 7
HOME_LIMIT = 5
_TIE = 1e-9  # closeness that differs by rounding only

# Texts in, one vector per text out, in order.
Embed = Callable[[Sequence[str]], Sequence[Sequence[float]]]


@dataclass(frozen=True)
class GapQuestion:
    """One uncovered question, as asked."""

    message_id: int
    text: str
    asked_at: datetime


@dataclass(frozen=True)
class GapCluster:
    """A question asked `count` times, in these words and others, between two dates."""

    question: str  # the wording closest to all the others
    count: int
    examples: tuple[str, ...]  # other wordings, the most asked first
    first_asked: datetime
    last_asked: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "count": self.count,
            "examples": list(self.examples),
            "first_asked": self.first_asked.isoformat(),
            "last_asked": self.last_asked.isoformat(),
        }


@dataclass(frozen=True)
class WeekGaps:
    """One ISO week's gaps, the most asked first."""

    week: str  # "2026-W09"
    starts_on: date  # its Monday
    clusters: tuple[GapCluster, ...]

    def to_json(self) -> dict[str, Any]:
        return {"week": self.week, "clusters": [cluster.to_json() for cluster in self.clusters]}


def coverage_gaps(
    session: Session,
    since: datetime,
    embed: Embed,
    *,
    until: datetime | None = None,
    limit: int | None = None,
    threshold: float = GAP_SIMILARITY,
) -> list[WeekGaps]:
    """Per ISO week from `since` (timezone-aware) to `until` (default: no end), oldest week
    first: the uncovered questions, paraphrases clustered, at most `limit` clusters a week.
    Weeks without a gap are left out."""
    zone = _zone_of(since)
    questions = uncovered_questions(session, since, until)
    vectors = _embedded(questions, _active_verified_questions(session), embed, threshold)
    by_week: dict[tuple[int, int], list[tuple[GapQuestion, list[float]]]] = defaultdict(list)
    for question, vector in zip(questions, vectors, strict=True):
        if vector is not None:
            iso = question.asked_at.astimezone(zone).isocalendar()
            by_week[(iso.year, iso.week)].append((question, vector))
    weeks = []
    for (year, week), members in sorted(by_week.items()):
        clusters = cluster_questions(
            [question for question, _ in members],
            [vector for _, vector in members],
            threshold,
        )
        weeks.append(
            WeekGaps(
                week=f"{year}-W{week:02d}",
                starts_on=date.fromisocalendar(year, week, 1),
                clusters=tuple(clusters[:limit] if limit is not None else clusters),
            )
        )
    return weeks


def recent_gaps(
    session: Session,
    now: datetime,
    embed: Embed,
    *,
    days: int = HOME_DAYS,
    limit: int = HOME_LIMIT,
    threshold: float = GAP_SIMILARITY,
) -> list[GapCluster]:
    """The `limit` most asked uncovered questions of the last `days` calendar days (today
    included, in `now`'s time zone), clustered across the whole window: for the App Home."""
    zone = _zone_of(now)
    if days < 1:
        raise ValueError(f"days must be 1 or more, got {days}")
    first_day = now.astimezone(zone).date() - timedelta(days=days - 1)
    since = datetime.combine(first_day, time(), tzinfo=zone)
    questions = uncovered_questions(session, since, now)
    vectors = _embedded(questions, _active_verified_questions(session), embed, threshold)
    kept = [
        (question, vector)
        for question, vector in zip(questions, vectors, strict=True)
        if vector is not None
    ]
    clusters = cluster_questions(
        [question for question, _ in kept],
        [vector for _, vector in kept],
        threshold,
    )
    return clusters[:limit]


# Clustering: pure functions of the vectors


def cluster_vectors(
    vectors: Sequence[Sequence[float]], threshold: float = GAP_SIMILARITY
) -> list[list[int]]:
    """Greedy clustering by cosine: in input order, each vector joins the cluster whose
    first member it is most similar to, when that cosine is at least `threshold`, or starts
    a cluster of its own. Returns the clusters as lists of input indices, each in input
    order, the clusters in the order they were started.

    Comparing with a cluster's first member, not its growing centre, keeps a chain of
    small steps from drifting into another question.
    """
    if not len(vectors):
        return []
    units = _unit_rows(vectors)
    leaders: list[int] = []
    clusters: list[list[int]] = []
    for index in range(len(units)):
        if leaders:
            similarities = units[leaders] @ units[index]
            best = int(np.argmax(similarities))
            if similarities[best] >= threshold:
                clusters[best].append(index)
                continue
        leaders.append(index)
        clusters.append([index])
    return clusters


def central_member(vectors: Sequence[Sequence[float]], members: Sequence[int]) -> int:
    """The member most similar to all the others (the first, on a tie)."""
    units = _unit_rows([vectors[index] for index in members])
    closeness = (units @ units.T).sum(axis=1)
    tied = np.flatnonzero(closeness >= closeness.max() - _TIE)
    return members[int(tied[0])]


def cluster_questions(
    questions: Sequence[GapQuestion],
    vectors: Sequence[Sequence[float]],
    threshold: float = GAP_SIMILARITY,
    examples: int = EXAMPLES,
) -> list[GapCluster]:
    """`questions` (with their vectors, in the same order) as clusters, the most asked
    first, then the most recently asked."""
    order = sorted(range(len(questions)), key=lambda i: (questions[i].asked_at, i))
    ordered = [questions[i] for i in order]
    ordered_vectors = [vectors[i] for i in order]
    clusters = []
    for members in cluster_vectors(ordered_vectors, threshold):
        central = ordered[central_member(ordered_vectors, members)]
        wordings = Counter(_wording(ordered[i].text) for i in members)
        first_seen: dict[str, str] = {}
        for i in members:
            first_seen.setdefault(_wording(ordered[i].text), ordered[i].text.strip())
        others = sorted(
            (key for key in wordings if key != _wording(central.text)),
            key=lambda key: -wordings[key],  # stable: first asked first among equals
        )
        asked = [ordered[i].asked_at for i in members]
        clusters.append(
            GapCluster(
                question=central.text.strip(),
                count=len(members),
                examples=tuple(first_seen[key] for key in others[:examples]),
                first_asked=min(asked),
                last_asked=max(asked),
            )
        )
    clusters.sort(key=lambda cluster: (-cluster.count, -cluster.last_asked.timestamp()))
    return clusters


# The store


def uncovered_questions(
    session: Session, since: datetime, until: datetime | None = None
) -> list[GapQuestion]:
    """Questions asked from `since` to `until` that the bot could not answer from policy and
    people took over or voted down, each once, without those an active verified answer was
    saved from (their similarity to other verified answers is `coverage_gaps`' part)."""
    window = [Message.created_at >= since]
    if until is not None:
        window.append(Message.created_at <= until)

    escalated = session.execute(
        select(Escalation.id, Escalation.trigger, Escalation.answer_id, Message.id)
        .join(Message, Escalation.question_message_id == Message.id)
        .where(*window)
    ).all()
    # The 👎 answers that declined, answered in the window (their question a moment before).
    voted_down = session.execute(
        select(Message.id)
        .join(Answer, Answer.message_id == Message.id)
        .where(
            *window,
            Answer.needs_human.is_(True),
            Answer.id.in_(select(Feedback.answer_id).where(Feedback.value == -1)),
        )
    ).all()
    conversations = set(
        session.scalars(
            select(Message.conversation_id).where(
                Message.id.in_([row[-1] for row in escalated] + [row[0] for row in voted_down])
            )
        )
    )
    thread = _Threads(session, conversations)

    covered_escalations = set(
        session.scalars(
            select(VerifiedAnswer.escalation_id).where(
                VerifiedAnswer.status == VerifiedAnswerStatus.ACTIVE,
                VerifiedAnswer.escalation_id.is_not(None),
            )
        )
    )
    covered: set[int] = set()  # question messages an active verified answer was saved from
    gaps: set[int] = set()
    for escalation_id, trigger, answer_id, question_id in escalated:
        if escalation_id in covered_escalations:
            covered.add(question_id)
            continue
        declined = thread.declined(answer_id) if answer_id is not None else None
        if declined is None:
            declined = thread.declined_answer_to(question_id)
        if trigger == EscalationTrigger.WEAK_EVIDENCE.value or declined:
            gaps.add(question_id)
    for (message_id,) in voted_down:
        voted_question = thread.question_before(message_id)
        if voted_question is not None:
            gaps.add(voted_question)

    asked = []
    for question_id in sorted(gaps - covered):
        message = thread.messages[question_id]
        if message.created_at < since or (until is not None and message.created_at > until):
            continue
        if message.text.strip():
            asked.append(GapQuestion(question_id, message.text, message.created_at))
    return asked


@dataclass(frozen=True)
class _Message:
    id: int
    conversation_id: int
    role: MessageRole
    text: str
    created_at: datetime
    needs_human: bool | None  # None: not an answer


class _Threads:
    """The messages of some conversations, to find which question each answer answered."""

    def __init__(self, session: Session, conversations: set[int]) -> None:
        rows = session.execute(
            select(
                Message.id,
                Message.conversation_id,
                Message.role,
                Message.text,
                Message.created_at,
                Answer.id.label("answer_id"),
                Answer.needs_human,
            )
            .outerjoin(Answer, Answer.message_id == Message.id)
            .where(Message.conversation_id.in_(conversations))
            .order_by(Message.id)
        ).all()
        self.messages = {
            row.id: _Message(
                row.id, row.conversation_id, row.role, row.text, row.created_at, row.needs_human
            )
            for row in rows
        }
        self._answers = {row.answer_id: row.id for row in rows if row.answer_id is not None}
        self._in_thread: dict[int, list[int]] = defaultdict(list)
        for row in rows:
            self._in_thread[row.conversation_id].append(row.id)

    def declined(self, answer_id: int) -> bool | None:
        message_id = self._answers.get(answer_id)
        return None if message_id is None else bool(self.messages[message_id].needs_human)

    def declined_answer_to(self, question_id: int) -> bool:
        """Whether the bot's first answer after this question declined it."""
        question = self.messages.get(question_id)
        if question is None:
            return False
        for message_id in self._in_thread[question.conversation_id]:
            message = self.messages[message_id]
            if message_id <= question_id:
                continue
            if message.role is MessageRole.USER:
                return False
            if message.needs_human is not None:
                return message.needs_human
        return False

    def question_before(self, message_id: int) -> int | None:
        """The user's message just before this one in its thread."""
        message = self.messages[message_id]
        before = None
        for earlier_id in self._in_thread[message.conversation_id]:
            if earlier_id >= message_id:
                break
            if self.messages[earlier_id].role is MessageRole.USER:
                before = earlier_id
        return before


def _active_verified_questions(session: Session) -> list[str]:
    return list(
        session.scalars(
            select(VerifiedAnswer.question).where(
                VerifiedAnswer.status == VerifiedAnswerStatus.ACTIVE
            )
        )
    )


def _embedded(
    questions: Sequence[GapQuestion],
    verified: Sequence[str],
    embed: Embed,
    threshold: float,
) -> list[list[float] | None]:
    """Each question's vector, or None where an active verified answer's question is at
    least `threshold` close to it. Each distinct text is embedded once."""
    if not questions:
        return []
    texts = list(dict.fromkeys([*(question.text for question in questions), *verified]))
    vector_of = dict(zip(texts, (list(vector) for vector in embed(texts)), strict=True))
    vectors: list[list[float] | None] = [vector_of[question.text] for question in questions]
    if verified:
        asked = _unit_rows([vector for vector in vectors if vector is not None])
        answered = _unit_rows([vector_of[text] for text in verified])
        closest = (asked @ answered.T).max(axis=1)
        vectors = [
            None if closeness >= threshold else vector
            for vector, closeness in zip(vectors, closest, strict=True)
        ]
    return vectors


def _unit_rows(vectors: Sequence[Sequence[float]]) -> np.ndarray:
    matrix = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def _wording(text: str) -> str:
    """Two askings count as the same wording apart from case and spacing."""
    return " ".join(text.casefold().split())


def _zone_of(moment: datetime) -> Any:
    if moment.tzinfo is None:
        raise ValueError("give a timezone-aware time, like datetime.now(UTC).astimezone()")
    return moment.tzinfo
