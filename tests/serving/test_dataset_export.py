"""`dataset export` on a store seeded as the bot fills it, on SQLite and PostgreSQL: which
answers and resolutions become SFT, KTO and DPO rows, with personal data redacted, duplicates
dropped, conversations kept whole across the held-out split, and a manifest that matches."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from embedding_support import default_embedder
from policy_store_support import ingested_search
from typer.testing import CliRunner

from bot.cli import app as cli
from retrieval.chunking import ChunkingOptions
from retrieval.edge_store import EdgeStore
from retrieval.ingest import ingest_files
from retrieval.search import PolicySearch
from serving.assistant import NO_GENERATION, NOT_COVERED, NOTHING_WRITTEN
from serving.dataset_export import (
    SEED_PROMPT_SOURCES,
    ExportDirectoryError,
    SeedFileError,
    export_dataset,
    heldout_conversations,
    read_seed_file,
)
from serving.prompts import SYSTEM_PROMPT, build_prompt
from serving.redaction import redact
from serving.training import Method, read_training_data
from serving.training_rows import DatasetManifest
from store import repository, schema, verified_answers
from store.database import Database
from store.models import Conversation, EscalationTrigger, MessageRole, VerifiedAnswerStatus
from store.repository import AnswerRecord
from store.verified_answers import PolicyRef

POLICIES = Path(__file__).resolve().parents[2] / "examples" / "policies"
FILES = [
    "sft.train.jsonl",
    "sft.heldout.jsonl",
    "kto.train.jsonl",
    "kto.heldout.jsonl",
    "dpo.train.jsonl",
    "dpo.heldout.jsonl",
]
MODEL = "smollm2-135m-instruct"
# Personal data written into the store; none of it may reach a file.
PERSONAL = [
    "(555) 010-2233",
    "joe.driver@example.com",
    "555-010-4477",
    "pat.lee@example.com",
    "555-010-9876",
    "555-010-9999",
]


@dataclass(frozen=True)
class Source:
    doc_id: str
    title: str
    section: str
    version: int
    effective_from: date | None
    text: str


SOURCES = [
    Source(
        "load-approval",
        "Load Approval Thresholds",
        "Approval by weight",
        3,
        date(2026, 3, 1),
        "From 26,001 to 40,000 lb the shift lead on duty approves the load (ext. 4411).",
    ),
    Source(
        "hazmat-handling",
        "Hazardous Materials Handling",
        "Routes",
        2,
        date(2025, 11, 1),
        "Hazmat loads never use tunnels. After a spill call the safety line 1-800-555-0142.",
    ),
]

RESOLUTION_HAZMAT = (
    "No. Hazmat loads never use tunnels; take I-695 around. "
    "Questions: call me at 555-010-4477 or write to pat.lee@example.com."
)
RESOLUTION_HAZMAT_REDACTED = (
    "No. Hazmat loads never use tunnels; take I-695 around. "
    "Questions: call me at [phone] or write to [email]."
)
RESOLUTION_ACCIDENT = "Call the safety line at 1-800-555-0142, then the dispatch desk at ext. 4400."


@dataclass(frozen=True)
class Turn:
    conversation: Conversation
    question_id: int
    answer_id: int
    prompt: str


@dataclass(frozen=True)
class SeededStore:
    """The prompts as stored, and the conversations that should yield rows."""

    approval: Turn
    hazmat: Turn
    accident: Turn


def _turn(
    session: Any,
    thread_ts: str,
    question: str,
    answer: str,
    *,
    model: str = MODEL,
    user: str = "U1",
) -> Turn:
    conversation = repository.find_or_open_conversation(
        session, team_id="T1", channel_id="C1", thread_ts=thread_ts, user_id=user
    )
    asked = repository.record_user_message(session, conversation, text=question, user_id=user)
    prompt = "" if model == NO_GENERATION else build_prompt(question, SOURCES).serialized()
    stored = repository.record_answer(
        session,
        conversation,
        AnswerRecord(
            text=answer,
            prompt=prompt,
            model=model,
            endpoint=NO_GENERATION if model == NO_GENERATION else "http://127.0.0.1:8100/v1",
            latency_ms=640,
            needs_human=model == NO_GENERATION,
        ),
    )
    return Turn(conversation, asked.id, stored.id, prompt)


def _vote(session: Any, turn: Turn, **votes: int) -> None:
    for user, value in votes.items():
        repository.record_feedback(session, answer_id=turn.answer_id, user_id=user, value=value)


def _resolve(session: Any, escalation_id: int, resolution: str) -> None:
    repository.claim_escalation(session, escalation_id, "UDISPATCH")
    repository.resolve_escalation(
        session, escalation_id, resolution=resolution, resolved_by="UDISPATCH"
    )


def seed_store(database: Database) -> SeededStore:
    with database.transaction() as session:
        # 👍 from two people, 👎 from one: net positive → SFT and KTO true.
        approval = _turn(
            session,
            "100.1",
            "Who approves a 30,000 lb load? Call me at (555) 010-2233",
            "The shift lead on duty approves loads from 26,001 to 40,000 lb [1].",
        )
        _vote(session, approval, U2=1, U3=-1, U4=1)
        repository.record_feedback(session, answer_id=approval.answer_id, user_id="U3", value=1)
        repository.record_feedback(session, answer_id=approval.answer_id, user_id="U5", value=-1)

    with database.transaction() as session:
        # 👎 twice, escalated from its button and resolved: KTO false, SFT of the resolution,
        # and a DPO pair. The bot's later turn in the escalated thread, and the dispatcher's
        # own message, stay out.
        hazmat = _turn(
            session,
            "100.2",
            "Can a hazmat load go through the Baltimore tunnel? Email joe.driver@example.com",
            "Yes, any route is fine for hazmat [2].",
        )
        _vote(session, hazmat, U1=-1, U5=-1)
        escalation, _ = repository.open_escalation(
            session,
            hazmat.conversation,
            trigger=EscalationTrigger.BUTTON,
            requested_by="U1",
            question_message_id=hazmat.question_id,
            answer_id=hazmat.answer_id,
        )
        inside = _turn(session, "100.2", "hello?", "Hazmat loads never use tunnels [2].")
        _vote(session, inside, U1=1)
        repository.record_message(
            session,
            hazmat.conversation,
            role=MessageRole.HUMAN,
            text="Checking with the shift lead, reach me at 555-010-9999",
            user_id="UDISPATCH",
        )
        _resolve(session, escalation.id, RESOLUTION_HAZMAT)

    with database.transaction() as session:
        # The "not covered" reply never reached a model: neither it nor its resolution counts.
        uncovered = _turn(
            session,
            "100.3",
            "What is the SLA for a P1 reefer ticket?",
            NOT_COVERED,
            model=NO_GENERATION,
        )
        _vote(session, uncovered, U1=-1)
        escalation, _ = repository.open_escalation(
            session,
            uncovered.conversation,
            trigger=EscalationTrigger.WEAK_EVIDENCE,
            question_message_id=uncovered.question_id,
            answer_id=uncovered.answer_id,
        )
        _resolve(session, escalation.id, "P1 reefer tickets get a call back within 30 minutes.")

    with database.transaction() as session:
        # The same question and answer in another thread, with another phone number: after
        # redaction the rows are duplicates of the first thread's.
        duplicate = _turn(
            session,
            "100.4",
            "Who approves a 30,000 lb load? Call me at 555-010-9876",
            "The shift lead on duty approves loads from 26,001 to 40,000 lb [1].",
            user="U6",
        )
        _vote(session, duplicate, U6=1)

    with database.transaction() as session:
        # Nothing to learn from: no votes, a tie, an empty answer, the canned "nothing
        # written" reply, and an escalation nobody resolved yet.
        unrated = _turn(session, "100.5", "Who signs off a 38,000 lb load?", "The shift lead [1].")
        tied = _turn(session, "100.5", "And a 41,000 lb one?", "The operations manager [1].")
        _vote(session, tied, U1=1, U2=-1)
        empty = _turn(session, "100.5", "And an empty trailer?", "")
        _vote(session, empty, U1=1)
        canned = _turn(session, "100.5", "And a reefer?", NOTHING_WRITTEN)
        _vote(session, canned, U1=-1)
        repository.open_escalation(
            session,
            unrated.conversation,
            trigger=EscalationTrigger.ASKED,
            question_message_id=canned.question_id,
        )

    with database.transaction() as session:
        # Escalated in words, without a draft: matched to the 👎 answer by its question.
        accident = _turn(
            session,
            "100.6",
            "Who do I call after a minor accident with no injuries?",
            "Call 911 first [1].",
        )
        _vote(session, accident, U1=-1)
        escalation, _ = repository.open_escalation(
            session,
            accident.conversation,
            trigger=EscalationTrigger.ASKED,
            question_message_id=accident.question_id,
        )
        _resolve(session, escalation.id, RESOLUTION_ACCIDENT)

    return SeededStore(approval, hazmat, accident)


def read_rows(out: Path, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / name).read_text("utf-8").splitlines()]


def all_rows(out: Path, kind: str) -> list[dict[str, Any]]:
    return read_rows(out, f"{kind}.train.jsonl") + read_rows(out, f"{kind}.heldout.jsonl")


def canonical(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(row, sort_keys=True) for row in rows)


def thread_id(thread_ts: str) -> str:
    return hashlib.sha256(f"T1/C1/{thread_ts}".encode()).hexdigest()[:16]


def stored_prompt(turn: Turn, *replacements: tuple[str, str]) -> list[dict[str, str]]:
    text = turn.prompt
    for personal, placeholder in replacements:
        assert personal in text
        text = text.replace(personal, placeholder)
    return json.loads(text)


def assistant(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def test_rows_hold_exactly_what_was_learned(database: Database, tmp_path: Path) -> None:
    store = seed_store(database)
    out = tmp_path / "export"

    export_dataset(database, out, heldout_fraction=0.1)

    approval_prompt = stored_prompt(store.approval, ("(555) 010-2233", "[phone]"))
    hazmat_prompt = stored_prompt(store.hazmat, ("joe.driver@example.com", "[email]"))
    accident_prompt = stored_prompt(store.accident)
    approval_answer = "The shift lead on duty approves loads from 26,001 to 40,000 lb [1]."
    approval, hazmat, accident = thread_id("100.1"), thread_id("100.2"), thread_id("100.6")
    assert canonical(all_rows(out, "sft")) == canonical(
        [
            {"messages": approval_prompt + assistant(approval_answer), "conversation": approval},
            {
                "messages": hazmat_prompt + assistant(RESOLUTION_HAZMAT_REDACTED),
                "conversation": hazmat,
            },
            {
                "messages": accident_prompt + assistant(RESOLUTION_ACCIDENT),
                "conversation": accident,
            },
        ]
    )
    assert canonical(all_rows(out, "kto")) == canonical(
        [
            {
                "prompt": approval_prompt,
                "completion": assistant(approval_answer),
                "label": True,
                "conversation": approval,
            },
            {
                "prompt": hazmat_prompt,
                "completion": assistant("Yes, any route is fine for hazmat [2]."),
                "label": False,
                "conversation": hazmat,
            },
            {
                "prompt": accident_prompt,
                "completion": assistant("Call 911 first [1]."),
                "label": False,
                "conversation": accident,
            },
        ]
    )
    assert canonical(all_rows(out, "dpo")) == canonical(
        [
            {
                "prompt": hazmat_prompt,
                "chosen": assistant(RESOLUTION_HAZMAT_REDACTED),
                "rejected": assistant("Yes, any route is fine for hazmat [2]."),
                "conversation": hazmat,
            },
            {
                "prompt": accident_prompt,
                "chosen": assistant(RESOLUTION_ACCIDENT),
                "rejected": assistant("Call 911 first [1]."),
                "conversation": accident,
            },
        ]
    )


def test_the_trainer_reads_back_what_the_store_held(sqlite_url: str, tmp_path: Path) -> None:
    database = Database(sqlite_url)
    schema.upgrade(database)
    store = seed_store(database)
    out = tmp_path / "export"
    export_dataset(database, out, heldout_fraction=0)
    database.dispose()

    approval_prompt = stored_prompt(store.approval, ("(555) 010-2233", "[phone]"))
    hazmat_prompt = stored_prompt(store.hazmat, ("joe.driver@example.com", "[email]"))
    accident_prompt = stored_prompt(store.accident)
    approved = assistant("The shift lead on duty approves loads from 26,001 to 40,000 lb [1].")
    hazmat_answer = assistant("Yes, any route is fine for hazmat [2].")
    accident_answer = assistant("Call 911 first [1].")
    expected = {
        Method.SFT: [
            {"prompt": approval_prompt, "completion": approved},
            {"prompt": hazmat_prompt, "completion": assistant(RESOLUTION_HAZMAT_REDACTED)},
            {"prompt": accident_prompt, "completion": assistant(RESOLUTION_ACCIDENT)},
        ],
        Method.KTO: [
            {"prompt": approval_prompt, "completion": approved, "label": True},
            {"prompt": hazmat_prompt, "completion": hazmat_answer, "label": False},
            {"prompt": accident_prompt, "completion": accident_answer, "label": False},
        ],
        Method.DPO: [
            {
                "prompt": hazmat_prompt,
                "chosen": assistant(RESOLUTION_HAZMAT_REDACTED),
                "rejected": hazmat_answer,
            },
            {
                "prompt": accident_prompt,
                "chosen": assistant(RESOLUTION_ACCIDENT),
                "rejected": accident_answer,
            },
        ],
    }
    for method, rows in expected.items():
        data = read_training_data(out, method)

        assert canonical([row.for_trainer() for row in data.rows]) == canonical(rows)
        assert data.heldout_rows == 0
        assert data.content_hash == json.loads((out / "manifest.json").read_text())["content_hash"]


def test_the_prompt_is_the_one_the_model_saw(database: Database, tmp_path: Path) -> None:
    store = seed_store(database)
    out = tmp_path / "export"

    export_dataset(database, out, heldout_fraction=0.1)

    (kto,) = [row for row in all_rows(out, "kto") if row["conversation"] == thread_id("100.6")]
    assert json.dumps(kto["prompt"], ensure_ascii=False) == store.accident.prompt
    assert kto["prompt"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    # Policy content inside the prompt is not personal data.
    assert "1-800-555-0142" in kto["prompt"][-1]["content"]
    assert "26,001 to 40,000 lb" in kto["prompt"][-1]["content"]


def test_personal_data_is_redacted_everywhere_and_counted(
    database: Database, tmp_path: Path
) -> None:
    seed_store(database)
    out = tmp_path / "export"

    report = export_dataset(database, out, heldout_fraction=0.1)

    written = "".join((out / name).read_text("utf-8") for name in FILES)
    for personal in PERSONAL:
        assert personal not in written
    for name in FILES:
        for line in (out / name).read_text("utf-8").splitlines():
            assert redact(line) == (line, 0)
    # approval: SFT + KTO prompts (1 each); hazmat: SFT prompt + resolution (3), KTO prompt
    # (1), DPO prompt + chosen (3). The duplicate thread's phone went out with its rows.
    assert report.redactions == 9
    assert json.loads((out / "manifest.json").read_text())["redactions"] == 9


def test_what_stays_out_is_counted(database: Database, tmp_path: Path) -> None:
    seed_store(database)
    out = tmp_path / "export"

    report = export_dataset(database, out, heldout_fraction=0.1)

    assert report.skipped == {
        "canned reply": 1,
        "duplicate kto row": 1,
        "duplicate sft row": 1,
        "empty answer": 1,
        "escalated thread": 1,
        "human message": 1,
        "no feedback": 1,
        "not generated": 1,
        "resolution without prompt": 1,
        "tied feedback": 1,
        "unresolved escalation": 1,
    }
    written = "".join((out / name).read_text("utf-8") for name in FILES)
    for excluded in (
        NOT_COVERED,
        NOTHING_WRITTEN,
        "Hazmat loads never use tunnels [2].",  # the bot inside the escalated thread
        "Checking with the shift lead",  # the dispatcher's chatter
        "P1 reefer tickets",  # a resolution with no prompt to pair it with
        "The operations manager",  # tied
        "The shift lead [1].",  # unrated
        thread_id("100.4"),  # the duplicate's thread
    ):
        assert excluded not in written


def test_held_out_conversations_stay_whole_and_the_split_is_deterministic(
    database: Database, tmp_path: Path
) -> None:
    seed_store(database)

    first = export_dataset(database, tmp_path / "first", heldout_fraction=0.1)
    second = export_dataset(database, tmp_path / "second", heldout_fraction=0.1)

    sides: dict[str, set[str]] = {}
    for name in FILES:
        side = name.split(".")[1]
        for row in read_rows(tmp_path / "first", name):
            sides.setdefault(row["conversation"], set()).add(side)
    assert len(sides) == 3
    assert all(len(side) == 1 for side in sides.values())
    # Few conversations: one is held out all the same, and some are left to train on.
    assert {"heldout"} in sides.values()
    assert {"train"} in sides.values()
    for name in FILES:
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes()
    assert first.content_hash == second.content_hash


def test_no_held_out_set_when_the_fraction_is_zero(database: Database, tmp_path: Path) -> None:
    seed_store(database)

    report = export_dataset(database, tmp_path / "out", heldout_fraction=0)

    assert report.counts == {
        "sft": {"train": 3, "heldout": 0},
        "kto": {"train": 3, "heldout": 0},
        "dpo": {"train": 2, "heldout": 0},
    }


def test_the_held_out_choice_follows_the_fraction_and_keeps_its_sides() -> None:
    ids = [f"conversation-{n}" for n in range(2000)]

    held = heldout_conversations(ids, 0.1)
    more = heldout_conversations([*ids, *(f"later-{n}" for n in range(500))], 0.1)

    assert 150 < len(held) < 250
    assert held == {conversation for conversation in more if conversation in set(ids)}
    assert heldout_conversations(ids, 0) == frozenset()
    assert heldout_conversations(["only"], 0.1) == frozenset()
    two = heldout_conversations(["a", "b"], 0.01)
    assert len(two) == 1
    assert two == heldout_conversations(["b", "a"], 0.01)
    assert len(heldout_conversations(["a", "b"], 0.999)) == 1


def test_the_manifest_matches_the_files(database: Database, tmp_path: Path) -> None:
    seed_store(database)
    out = tmp_path / "export"

    report = export_dataset(database, out, heldout_fraction=0.25)

    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    assert manifest == report.manifest().model_dump(mode="json")
    assert DatasetManifest.model_validate(manifest) == report.manifest()
    assert sorted(path.name for path in out.iterdir()) == sorted([*FILES, "manifest.json"])
    assert set(manifest) == {
        "created_at",
        "database",
        "counts",
        "skipped",
        "redactions",
        "heldout_fraction",
        "seed_rows",
        "content_hash",
        "format",
    }
    for name in FILES:
        kind, side, _ = name.split(".")
        lines = (out / name).read_text("utf-8").splitlines()
        assert manifest["counts"][kind][side] == len(lines)
    assert sum(sum(sides.values()) for sides in manifest["counts"].values()) == 8
    digest = hashlib.sha256()
    for name in FILES:
        data = (out / name).read_bytes()
        digest.update(f"{name}\n{len(data)}\n".encode())
        digest.update(data)
    assert manifest["content_hash"] == digest.hexdigest()
    assert manifest["format"] == 1
    assert manifest["heldout_fraction"] == 0.25
    assert manifest["seed_rows"] == 0
    assert manifest["database"] == database.display_url()
    assert datetime.fromisoformat(manifest["created_at"]).tzinfo is not None


def test_a_previous_export_is_replaced_and_anything_else_refused(
    database: Database, tmp_path: Path
) -> None:
    seed_store(database)
    out = tmp_path / "export"
    export_dataset(database, out, heldout_fraction=0.1)
    (out / "sft.train.jsonl").write_text("stale\n")

    again = export_dataset(database, out, heldout_fraction=0.1)

    assert "stale" not in (out / "sft.train.jsonl").read_text()
    assert json.loads((out / "manifest.json").read_text())["content_hash"] == again.content_hash
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ExportDirectoryError, match="not a previous dataset export"):
        export_dataset(database, foreign, heldout_fraction=0.1)
    assert [path.name for path in foreign.iterdir()] == ["notes.txt"]


# People's verified answers


VERIFIED_QUESTION = "Can hazmat loads use the Baltimore tunnel?"
VERIFIED_ANSWER = "No: hazmat loads never use tunnels. Take I-695 around the harbor."


def _escalation_of(session: Any, thread_ts: str) -> int:
    conversation = repository.find_conversation(
        session, team_id="T1", channel_id="C1", thread_ts=thread_ts
    )
    assert conversation is not None
    (escalation,) = conversation.escalations
    return escalation.id


def save_verified(database: Database) -> None:
    """Verified answers saved from the seeded escalations: the hazmat one edited, then held
    back as stale; the accident one retired; the "not covered" one active, though the bot
    wrote nothing for it."""
    with database.transaction() as session:
        hazmat = verified_answers.save(
            session,
            question=VERIFIED_QUESTION,
            answer=VERIFIED_ANSWER,
            author="UDISPATCH",
            audience="dispatch",
            policy_refs=[PolicyRef("hazmat-handling", 2, "Hazardous Materials Handling")],
            escalation_id=_escalation_of(session, "100.2"),
        )
        hazmat.status = VerifiedAnswerStatus.STALE
        accident = verified_answers.save(
            session,
            question="Who do I call after a minor accident?",
            answer=RESOLUTION_ACCIDENT,
            author="UDISPATCH",
            audience="all",
            policy_refs=[],
            escalation_id=_escalation_of(session, "100.6"),
        )
        verified_answers.retire(session, accident.id, "UDISPATCH", "numbers changed")
        verified_answers.save(
            session,
            question="What is the SLA for a P1 reefer ticket?",
            answer="P1 reefer tickets get a call back within 30 minutes.",
            author="UDISPATCH",
            audience="all",
            policy_refs=[],
            escalation_id=_escalation_of(session, "100.3"),
        )


def asked_as(prompt: list[dict[str, str]], question: str) -> list[dict[str, str]]:
    """The prompt with its question in other words, as the bot would have put them."""
    *earlier, last = prompt
    head, lead, _ = last["content"].rpartition("\n\nQuestion: ")
    assert lead
    return [*earlier, {"role": "user", "content": f"{head}{lead}{question}"}]


def test_a_verified_answer_is_learned_instead_of_its_resolution(
    database: Database, tmp_path: Path
) -> None:
    store = seed_store(database)
    save_verified(database)
    out = tmp_path / "export"

    report = export_dataset(database, out, heldout_fraction=0)

    approval_prompt = stored_prompt(store.approval, ("(555) 010-2233", "[phone]"))
    hazmat_prompt = stored_prompt(store.hazmat, ("joe.driver@example.com", "[email]"))
    approval_answer = "The shift lead on duty approves loads from 26,001 to 40,000 lb [1]."
    # Stale, it is still learned: the prompt holds the policy version it was written for.
    # The hazmat resolution is not, nor the retired accident answer or its resolution.
    assert canonical(all_rows(out, "sft")) == canonical(
        [
            {
                "messages": approval_prompt + assistant(approval_answer),
                "conversation": thread_id("100.1"),
            },
            {
                "messages": asked_as(hazmat_prompt, VERIFIED_QUESTION) + assistant(VERIFIED_ANSWER),
                "conversation": thread_id("100.2"),
            },
        ]
    )
    written = "".join((out / name).read_text("utf-8") for name in FILES)
    assert json.dumps(RESOLUTION_HAZMAT_REDACTED)[1:-1] not in written
    assert RESOLUTION_ACCIDENT not in written
    # The person's answer is also the one preferred over the 👎 answer.
    assert canonical(all_rows(out, "dpo")) == canonical(
        [
            {
                "prompt": hazmat_prompt,
                "chosen": assistant(VERIFIED_ANSWER),
                "rejected": assistant("Yes, any route is fine for hazmat [2]."),
                "conversation": thread_id("100.2"),
            }
        ]
    )
    assert len(all_rows(out, "kto")) == 3  # votes on the bot's answers: unchanged
    assert report.counts["sft"] == {"train": 2, "heldout": 0}
    assert report.counts["dpo"] == {"train": 1, "heldout": 0}
    assert report.skipped["resolution replaced by verified answer"] == 3
    assert report.skipped["retired verified answer"] == 1
    assert report.skipped["verified answer without prompt"] == 1
    assert "resolution without prompt" not in report.skipped
    manifest = json.loads((out / "manifest.json").read_text("utf-8"))
    assert manifest["counts"] == report.counts
    assert manifest["skipped"] == report.skipped


def test_a_verified_answer_whose_escalation_is_gone_has_no_prompt(
    database: Database, tmp_path: Path
) -> None:
    seed_store(database)
    with database.transaction() as session:
        for status in VerifiedAnswerStatus:
            saved = verified_answers.save(
                session,
                question="Who approves a 30,000 lb load?",
                answer=f"The shift lead ({status.value}).",
                author="UDISPATCH",
                audience="all",
                policy_refs=[],
            )
            saved.status = status

    report = export_dataset(database, tmp_path / "export", heldout_fraction=0)

    assert report.skipped["verified answer without prompt"] == 2  # active and stale
    assert report.skipped["retired verified answer"] == 1
    # The resolutions of escalations no verified answer came from stay as they were.
    assert report.counts["sft"] == {"train": 3, "heldout": 0}


# The seed: prompts built from real retrieval over a few policies


SEED = [
    {
        "question": "Who approves a 30,000 lb load?",
        "answer": "The shift lead on duty approves loads from 26,001 to 40,000 lb [load-approval].",
        "doc_ids": ["load-approval"],
    },
    {
        "question": "Which placards does a hazmat load need, and who approves a hazmat load?",
        "answer": "Placard it as the shipping papers say [hazmat-handling]; hazmat loads need "
        "the approvals in the load approval policy [load-approval].",
        "doc_ids": ["hazmat-handling", "load-approval"],
    },
    {
        "question": "A fuel card was declined at the pump, what now?",
        "answer": "Call fuel card support first [fuel-card].",
        "doc_ids": ["fuel-card"],
    },
]
TITLES = {
    "load-approval": "Load Approval Thresholds",
    "hazmat-handling": "Hazardous Materials Handling",
}
SEED_CORPUS = ["load-approval.md", "hazmat-handling.md", "service-slas.md"]
_SOURCE_HEADER = re.compile(r'<source id="(\d+)">\n\[\1\] (.+?) \| section:')


@pytest.fixture(scope="module")
def policy_search(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolicySearch]:
    corpus = [POLICIES / name for name in SEED_CORPUS]
    with ingested_search(tmp_path_factory.mktemp("store"), corpus) as search:
        yield search


def write_seed(path: Path) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in SEED), "utf-8")
    return path


def test_seed_rows_cite_their_sources_by_number(
    database: Database, policy_search: PolicySearch, tmp_path: Path
) -> None:
    seed_rows = read_seed_file(write_seed(tmp_path / "seed.jsonl"))
    out = tmp_path / "export"

    report = export_dataset(
        database, out, heldout_fraction=0.1, seed_rows=seed_rows, search=policy_search, search_k=4
    )

    rows = {row["conversation"]: row["messages"] for row in all_rows(out, "sft")}
    assert sorted(rows) == ["seed-1", "seed-2"]
    assert report.skipped == {"seed source not retrieved": 1}
    assert report.seed_rows == 2
    for number, seed in enumerate(SEED[:2], start=1):
        system, question, answer = rows[f"seed-{number}"]
        assert system == {"role": "system", "content": SYSTEM_PROMPT}
        assert question["role"] == "user"
        assert question["content"].endswith(f"Question: {seed['question']}")
        assert answer["role"] == "assistant"
        titles = {int(n): title for n, title in _SOURCE_HEADER.findall(question["content"])}
        expected = seed["answer"]
        for doc_id in seed["doc_ids"]:
            first = min(n for n, title in titles.items() if title == TITLES[doc_id])
            expected = expected.replace(f"[{doc_id}]", f"[{first}]")
        assert answer["content"] == expected
        assert re.search(r"\[\d+\]", answer["content"])
        # The bot's prompt shape: the cited document's best section first, then the best of
        # the rest as a distractor; personal data redacted.
        results = policy_search.search(seed["question"], k=4)
        cited = [r for r in results if r.doc_id in seed["doc_ids"]][:1]
        sources = [*cited, *[r for r in results if r not in cited]][:SEED_PROMPT_SOURCES]
        assert sources[0].doc_id in seed["doc_ids"]
        built = build_prompt(seed["question"], sources, []).messages
        assert [system, question] == [
            {"role": message["role"], "content": redact(message["content"])[0]} for message in built
        ]


def test_a_bad_seed_file_says_which_line(tmp_path: Path) -> None:
    path = tmp_path / "seed.jsonl"
    path.write_text(json.dumps(SEED[0]) + "\n" + '{"question": "no answer"}\n', "utf-8")

    with pytest.raises(SeedFileError, match=r"seed\.jsonl:2"):
        read_seed_file(path)
    with pytest.raises(SeedFileError, match="cannot read"):
        read_seed_file(tmp_path / "missing.jsonl")


# The command line


@pytest.fixture
def cli_env(sqlite_url: str, tmp_path: Path) -> dict[str, str]:
    database = Database(sqlite_url)
    schema.upgrade(database)
    seed_store(database)
    database.dispose()
    return {
        "DATABASE_URL": sqlite_url,
        "DISPATCHBOT_DATA_DIR": str(tmp_path / "data"),
        "QDRANT_URL": "",
        "COLUMNS": "200",
    }


def test_the_command_writes_the_files_and_prints_counts(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    runner = CliRunner()
    out = tmp_path / "new" / "export"

    result = runner.invoke(cli, ["dataset", "export", "--out", str(out)], env=cli_env)

    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in out.iterdir()) == sorted([*FILES, "manifest.json"])
    manifest = json.loads((out / "manifest.json").read_text())
    for kind in ("sft", "kto", "dpo"):
        sides = manifest["counts"][kind]
        assert re.search(rf"{kind}\s*│\s*{sides['train']}\s*│\s*{sides['heldout']}", result.stdout)
    assert "escalated thread" in result.stdout
    assert "9 personal details redacted" in result.stdout

    as_json = runner.invoke(cli, ["dataset", "export", "--out", str(out), "--json"], env=cli_env)

    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == json.loads((out / "manifest.json").read_text())
    assert json.loads(as_json.stdout)["content_hash"] == manifest["content_hash"]


def test_the_command_refuses_a_folder_that_is_not_an_export(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "docs"
    out.mkdir()
    (out / "README.md").write_text("mine")

    result = CliRunner().invoke(cli, ["dataset", "export", "--out", str(out)], env=cli_env)

    assert result.exit_code == 2
    assert "not a previous dataset export" in result.stderr
    assert "Traceback" not in result.output
    assert [path.name for path in out.iterdir()] == ["README.md"]


def test_the_command_adds_the_seed_from_the_local_policy_store(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    qdrant_path = tmp_path / "qdrant"
    store = EdgeStore(qdrant_path / "edge", "policies")  # where `open_store` looks
    ingest_files(
        [POLICIES / name for name in SEED_CORPUS],
        store=store,
        embedder=default_embedder(),
        chunking=ChunkingOptions(max_tokens=256, overlap_tokens=32),
    )
    store.close()
    seed = write_seed(tmp_path / "seed.jsonl")
    out = tmp_path / "export"

    result = CliRunner().invoke(
        cli,
        ["dataset", "export", "--out", str(out), "--seed", str(seed), "--json"],
        env={**cli_env, "QDRANT_PATH": str(qdrant_path)},
    )

    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    assert manifest["seed_rows"] == 2
    assert manifest["skipped"]["seed source not retrieved"] == 1
    assert sum(manifest["counts"]["sft"].values()) == 5
    conversations = {row["conversation"] for row in all_rows(out, "sft")}
    assert {"seed-1", "seed-2"} <= conversations
