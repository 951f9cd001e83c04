"""Coverage gaps: the clustering on its own, then the questions read from a real store on
SQLite and PostgreSQL (which count, which are covered), per ISO week, with stand-in vectors;
last, the real embedding model groups real paraphrases."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, timezone
from pathlib import Path

import pytest
from embedding_support import default_embedder
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from bot.cli import app
from serving.assistant import NO_GENERATION, NOT_COVERED
from store import repository, schema, verified_answers
from store.database import Database
from store.gaps import (
    GapQuestion,
    central_member,
    cluster_questions,
    cluster_vectors,
    coverage_gaps,
    recent_gaps,
    uncovered_questions,
)
from store.models import EscalationTrigger, VerifiedAnswerStatus
from store.repository import AnswerRecord

# West of UTC: a Sunday evening here is Monday in UTC, and counts in the Sunday's week.
CENTRAL = timezone(timedelta(hours=-6))
MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=CENTRAL)  # 2026-W10
NEXT_MONDAY = MONDAY + timedelta(days=7)  # 2026-W11


def unit(*components: float) -> list[float]:
    norm = math.sqrt(sum(c * c for c in components))
    return [c / norm for c in components]


def at_angle(degrees: float) -> list[float]:
    """A unit vector in the plane: the cosine of two is the cosine of their angle apart."""
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees)), 0.0]


# The clustering, on vectors


def test_paraphrases_fall_in_one_cluster_and_other_questions_apart() -> None:
    reefer, tunnel = unit(1, 0, 0), unit(0, 1, 0)
    vectors = [reefer, unit(1, 0.2, 0), tunnel, unit(1, 0, 0.3), unit(0, 0, 1), unit(0.1, 1, 0)]

    assert cluster_vectors(vectors) == [[0, 1, 3], [2, 5], [4]]
    assert cluster_vectors([]) == []


def test_the_threshold_is_inclusive_and_vectors_need_not_be_unit_length() -> None:
    exactly = math.degrees(math.acos(0.80))
    vectors = [at_angle(0), [3 * x for x in at_angle(exactly - 0.01)], at_angle(exactly + 0.5)]

    assert cluster_vectors(vectors, threshold=0.80) == [[0, 1], [2]]
    assert cluster_vectors(vectors, threshold=0.5) == [[0, 1, 2]]
    assert cluster_vectors([[0.0, 0.0, 0.0], at_angle(0)]) == [[0], [1]]


def test_a_chain_of_small_steps_does_not_drift_into_another_question() -> None:
    # Each 30 degrees from the last (cos 0.87), the third 60 from the first (cos 0.5).
    vectors = [at_angle(0), at_angle(30), at_angle(60)]

    assert cluster_vectors(vectors) == [[0, 1], [2]]


def test_a_vector_joins_the_cluster_it_is_closest_to() -> None:
    vectors = [at_angle(0), at_angle(40), at_angle(30)]  # 30 is closer to 40 than to 0

    assert cluster_vectors(vectors, threshold=0.80) == [[0], [1, 2]]


def test_the_central_member_stands_for_its_cluster() -> None:
    vectors = [at_angle(0), at_angle(20), at_angle(10), at_angle(-60)]

    assert central_member(vectors, [0, 1, 2]) == 2
    assert central_member(vectors, [3]) == 3


def test_clusters_count_each_asking_and_show_the_other_wordings() -> None:
    day = datetime(2026, 3, 2, 9, tzinfo=UTC)
    asked = [
        ("P1 reefer ticket SLA?", 0, at_angle(2)),
        ("Can hazmat use the tunnel?", 1, at_angle(90)),
        ("What is the SLA for a P1 reefer ticket?", 2, at_angle(0)),
        ("what is the sla for a  P1 reefer ticket?", 3, at_angle(0)),  # same words
        ("how fast for a P1 reefer ticket", 4, at_angle(-3)),
        ("Can hazmat use the tunnel?", 5, at_angle(90)),
        ("Fuel card declined?", 6, at_angle(180)),
    ]
    questions = [
        GapQuestion(n, text, day + timedelta(hours=hours))
        for n, (text, hours, _) in enumerate(asked)
    ]
    vectors = [vector for *_, vector in asked]

    reefer, tunnel, fuel = cluster_questions(list(reversed(questions)), list(reversed(vectors)))

    assert reefer.question == "What is the SLA for a P1 reefer ticket?"
    assert reefer.count == 4
    assert reefer.examples == ("P1 reefer ticket SLA?", "how fast for a P1 reefer ticket")
    assert (reefer.first_asked, reefer.last_asked) == (day, day + timedelta(hours=4))
    assert (tunnel.question, tunnel.count, tunnel.examples) == ("Can hazmat use the tunnel?", 2, ())
    six = day + timedelta(hours=6)
    assert (fuel.count, fuel.first_asked, fuel.last_asked) == (1, six, six)
    assert cluster_questions(questions, vectors, examples=1)[0].examples == (
        "P1 reefer ticket SLA?",
    )
    assert reefer.to_json() == {
        "question": "What is the SLA for a P1 reefer ticket?",
        "count": 4,
        "examples": ["P1 reefer ticket SLA?", "how fast for a P1 reefer ticket"],
        "first_asked": "2026-03-02T09:00:00+00:00",
        "last_asked": "2026-03-02T13:00:00+00:00",
    }


# The store


# Stand-in embeddings: the reefer SLA questions, the tunnel ones and the rest apart.
REEFER = [
    "What is the SLA for a P1 reefer ticket?",
    "P1 reefer ticket SLA?",
    "how fast must a P1 reefer ticket be answered",
]
TUNNEL = "Can a hazmat load go through the Baltimore tunnel?"
VECTORS = {
    REEFER[0]: at_angle(0),
    REEFER[1]: at_angle(5),
    REEFER[2]: at_angle(-8),
    TUNNEL: at_angle(90),
    "Is the Baltimore tunnel open for hazmat?": at_angle(93),
    "Who approves a 30,000 lb load?": at_angle(180),
    "who signs off a 30k lb load": at_angle(183),
    "What do I do when a fuel card is declined?": unit(0, 0, 1),
    "fuel card declined at the pump, what now": unit(0, 0.1, 1),
    "Where do I park a reefer overnight?": unit(0.5, -0.5, -1),
    "Can I take a passenger in the truck?": unit(-0.5, -1, 0.3),
    "old question": unit(1, 1, 1),
}


@dataclass
class Embedder:
    """Looks texts up in VECTORS, and remembers what it was asked."""

    calls: list[list[str]]

    def __call__(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        return [VECTORS[text] for text in texts]


@pytest.fixture
def embed() -> Embedder:
    return Embedder([])


class Seeder:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.threads = 0

    def ask(
        self,
        text: str,
        when: datetime,
        *,
        declined: bool = True,
        escalate: EscalationTrigger | None = None,
        downvote: bool = False,
    ) -> int:
        """One question in its own thread, the bot's answer, then what people did.
        Returns the escalation id, or 0."""
        self.threads += 1
        conversation = repository.find_or_open_conversation(
            self.session, team_id="T1", channel_id="C1", thread_ts=f"{self.threads}.0", user_id="U1"
        )
        asked = repository.record_user_message(self.session, conversation, text=text, user_id="U1")
        asked.created_at = when
        answer = repository.record_answer(
            self.session,
            conversation,
            AnswerRecord(
                text=NOT_COVERED if declined else "The shift lead approves it [1].",
                prompt="",
                model=NO_GENERATION if declined else "smollm2",
                endpoint=NO_GENERATION,
                latency_ms=10,
                needs_human=declined,
            ),
        )
        answer.message.created_at = when + timedelta(seconds=2)
        if downvote:
            repository.record_feedback(self.session, answer_id=answer.id, user_id="U1", value=-1)
        escalation_id = 0
        if escalate is not None:
            escalation, _ = repository.open_escalation(
                self.session,
                conversation,
                trigger=escalate,
                question_message_id=asked.id,
                # Escalated in words: the escalation names the question only.
                answer_id=None if escalate is EscalationTrigger.ASKED else answer.id,
            )
            escalation.created_at = when + timedelta(minutes=1)
            escalation_id = escalation.id
        self.session.flush()
        return escalation_id

    def verified(
        self, question: str, escalation_id: int | None, status: VerifiedAnswerStatus
    ) -> None:
        saved = verified_answers.save(
            self.session,
            question=question,
            answer="A person's answer.",
            author="U0LEAD",
            audience="all",
            policy_refs=[],
            escalation_id=escalation_id or None,
        )
        saved.status = status


WEAK = EscalationTrigger.WEAK_EVIDENCE


def seed_gaps(database: Database) -> None:
    with database.transaction() as session:
        seed = Seeder(session)
        # 2026-W10: the reefer SLA question three ways (escalated for weak evidence, asked
        # for a person after the "not covered" reply, voted down), the tunnel one twice.
        seed.ask(REEFER[0], MONDAY, escalate=WEAK)
        seed.ask(REEFER[1], MONDAY + timedelta(days=1), escalate=EscalationTrigger.ASKED)
        seed.ask(REEFER[2], MONDAY + timedelta(days=2), downvote=True)
        seed.ask(TUNNEL, MONDAY + timedelta(days=2, hours=1), escalate=WEAK, downvote=True)
        # Sunday evening here, Monday in UTC: still W10.
        seed.ask(
            "Is the Baltimore tunnel open for hazmat?",
            datetime(2026, 3, 8, 20, 0, tzinfo=CENTRAL),
            escalate=WEAK,
        )
        # Not gaps: a good answer escalated from its button, a good answer voted down.
        seed.ask(
            "Who approves a 30,000 lb load?",
            MONDAY,
            declined=False,
            escalate=EscalationTrigger.BUTTON,
        )
        seed.ask("who signs off a 30k lb load", MONDAY, declined=False, downvote=True)
        # A declined answer nobody escalated or voted on is not counted either.
        seed.ask("Can I take a passenger in the truck?", MONDAY)
        # Covered since: an active verified answer saved from its escalation.
        covered = seed.ask("What do I do when a fuel card is declined?", MONDAY, escalate=WEAK)
        seed.verified(
            "What do I do when a fuel card is declined?", covered, VerifiedAnswerStatus.ACTIVE
        )
        # A retired one covers nothing.
        withdrawn = seed.ask("Where do I park a reefer overnight?", MONDAY, escalate=WEAK)
        seed.verified(
            "Where do I park a reefer overnight?", withdrawn, VerifiedAnswerStatus.RETIRED
        )

        # 2026-W11: the reefer question again; the fuel card in other words, which the
        # active verified answer covers by its closeness.
        seed.ask(REEFER[1], NEXT_MONDAY + timedelta(days=3), escalate=WEAK)
        seed.ask("fuel card declined at the pump, what now", NEXT_MONDAY, escalate=WEAK)

        # Before the window.
        seed.ask("old question", MONDAY - timedelta(days=1), escalate=WEAK)


def test_each_week_counts_the_uncovered_questions_once_however_worded(
    database: Database, embed: Embedder
) -> None:
    seed_gaps(database)

    with database.transaction() as session:
        weeks = coverage_gaps(session, MONDAY - timedelta(hours=9), embed)

    assert [(week.week, week.starts_on.isoformat()) for week in weeks] == [
        ("2026-W10", "2026-03-02"),
        ("2026-W11", "2026-03-09"),
    ]
    first, second = weeks
    assert [(cluster.question, cluster.count) for cluster in first.clusters] == [
        (REEFER[0], 3),
        (TUNNEL, 2),
        ("Where do I park a reefer overnight?", 1),
    ]
    reefer = first.clusters[0]
    assert set(reefer.examples) == {REEFER[1], REEFER[2]}
    assert reefer.first_asked == MONDAY
    assert reefer.last_asked == MONDAY + timedelta(days=2)
    assert first.clusters[1].last_asked == datetime(2026, 3, 8, 20, 0, tzinfo=CENTRAL)
    assert [(cluster.question, cluster.count) for cluster in second.clusters] == [(REEFER[1], 1)]
    # Each text embedded once, in one call, with the active verified answers' questions.
    (texts,) = embed.calls
    assert len(texts) == len(set(texts))
    assert "What do I do when a fuel card is declined?" in texts

    assert [week.to_json() for week in weeks][1] == {
        "week": "2026-W11",
        "clusters": [
            {
                "question": REEFER[1],
                "count": 1,
                "examples": [],
                "first_asked": second.clusters[0].first_asked.isoformat(),
                "last_asked": second.clusters[0].last_asked.isoformat(),
            }
        ],
    }


def test_the_window_and_the_limit(database: Database, embed: Embedder) -> None:
    seed_gaps(database)

    with database.transaction() as session:
        later = coverage_gaps(session, NEXT_MONDAY, embed)
        limited = coverage_gaps(session, MONDAY, embed, until=NEXT_MONDAY, limit=1)
        nothing = coverage_gaps(session, NEXT_MONDAY + timedelta(days=30), embed)

    assert [week.week for week in later] == ["2026-W11"]
    assert [week.week for week in limited] == ["2026-W10"]
    assert [cluster.question for cluster in limited[0].clusters] == [REEFER[0]]
    assert nothing == []
    assert len(embed.calls) == 2  # no questions, no embedding


def test_the_questions_read_from_the_store(database: Database) -> None:
    seed_gaps(database)

    with database.transaction() as session:
        asked = uncovered_questions(session, MONDAY, NEXT_MONDAY + timedelta(days=7))

    # Escalated and voted down, the tunnel question is one question.
    assert sorted(question.text for question in asked) == sorted(
        [
            *REEFER,
            TUNNEL,
            "Is the Baltimore tunnel open for hazmat?",
            "Where do I park a reefer overnight?",
            REEFER[1],
            "fuel card declined at the pump, what now",  # covered by closeness, not here
        ]
    )


def test_the_home_tab_gets_the_last_seven_days_top_questions(
    database: Database, embed: Embedder
) -> None:
    seed_gaps(database)
    now = MONDAY + timedelta(days=6, hours=12)  # Sunday 21:00: W10, not the Sunday before

    with database.transaction() as session:
        top = recent_gaps(session, now, embed, limit=2)
        with pytest.raises(ValueError, match="timezone-aware"):
            recent_gaps(session, now.replace(tzinfo=None), embed)

    assert [(cluster.question, cluster.count) for cluster in top] == [(REEFER[0], 3), (TUNNEL, 2)]


# The real embedding model


def test_real_paraphrases_count_once() -> None:
    embedder = default_embedder()
    day = datetime(2026, 3, 2, 9, tzinfo=UTC)
    texts = [
        "What is the SLA for a P1 reefer ticket?",
        "Can a hazmat load go through the Baltimore tunnel?",
        "P1 reefer ticket SLA?",
        "are hazmat loads allowed in the Baltimore tunnel",
        "what's the SLA on a priority 1 reefer ticket",
        "who approves a 30,000 lb load?",
    ]
    questions = [GapQuestion(n, text, day + timedelta(hours=n)) for n, text in enumerate(texts)]

    clusters = cluster_questions(questions, embedder.encode_documents(texts))

    assert sorted((cluster.count, cluster.question) for cluster in clusters) == [
        (1, "who approves a 30,000 lb load?"),
        (2, "Can a hazmat load go through the Baltimore tunnel?"),
        (3, "What is the SLA for a P1 reefer ticket?"),
    ]


# The command line


def test_the_command_prints_each_week_and_json(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    default_embedder()  # loaded once per process: the command gets this one
    database = Database(sqlite_url)
    schema.upgrade(database)
    now = datetime.now(UTC).astimezone()
    # Noon on last week's Wednesday: within the default 28 days, in one known week.
    wednesday = datetime.combine(
        now.date() - timedelta(days=now.weekday() + 5), time(12), tzinfo=now.tzinfo
    )
    with database.transaction() as session:
        seed = Seeder(session)
        for hours, text in enumerate(
            [
                "What is the SLA for a P1 reefer ticket?",
                "P1 reefer ticket SLA?",
                "Can a hazmat load go through the Baltimore tunnel?",
            ]
        ):
            seed.ask(text, wednesday + timedelta(hours=hours), escalate=WEAK)
        old = now - timedelta(days=40)  # before the default window
        seed.ask("what's the SLA on a priority 1 reefer ticket", old, escalate=WEAK)
    database.dispose()
    monkeypatch.chdir(tmp_path)
    env = {
        "DATABASE_URL": sqlite_url,
        "DISPATCHBOT_DATA_DIR": str(tmp_path / "data"),
        "QDRANT_URL": "",
        "COLUMNS": "200",
    }
    runner = CliRunner()

    as_json = runner.invoke(app, ["gaps", "--json"], env=env)

    assert as_json.exit_code == 0, as_json.output
    (week,) = json.loads(as_json.stdout)
    iso = wednesday.isocalendar()
    assert week["week"] == f"{iso.year}-W{iso.week:02d}"
    assert [(cluster["question"], cluster["count"]) for cluster in week["clusters"]] == [
        ("What is the SLA for a P1 reefer ticket?", 2),
        ("Can a hazmat load go through the Baltimore tunnel?", 1),
    ]
    assert week["clusters"][0]["examples"] == ["P1 reefer ticket SLA?"]

    table = runner.invoke(app, ["gaps"], env=env)
    assert table.exit_code == 0, table.output
    assert "What is the SLA for a P1 reefer ticket?" in table.stdout
    assert "P1 reefer ticket SLA?" in table.stdout

    later = runner.invoke(app, ["gaps", "--since", "2999-01-01"], env=env)
    assert later.exit_code == 0
    assert "No uncovered questions since 2999-01-01." in later.stdout
    wrong = runner.invoke(app, ["gaps", "--since", "last week"], env=env)
    assert wrong.exit_code == 2
    assert "--since takes a date like 2026-03-01, not 'last week'" in wrong.stderr
