"""A person's verified answer answers the same question again, with no model call; close
questions get it as a marked source; it is held back once the policy it cites moves on."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from embedding_support import default_embedder
from policy_store_support import ingested_search
from vllm_support import CannedChatServer, make_client

from bot.policy_admin import keep_verified_current
from retrieval.chunking import ChunkingOptions
from retrieval.ingest import ingest_files
from retrieval.search import PolicySearch
from retrieval.verified import VerifiedEntry, index_verified
from serving.assistant import VERIFIED_ANSWER, Assistant, AssistantSettings, ThreadKey
from store import schema, verified_answers
from store.database import Database
from store.models import Answer, VerifiedAnswer, VerifiedAnswerStatus
from store.verified_answers import PolicyRef

POLICIES = Path(__file__).resolve().parents[2] / "examples" / "policies"
SAVED = "who approves a 30,000 lb load?"
ANSWER = "The shift lead on duty signs it off in the TMS; ring the dispatch desk on ext. 4411."
LEAD = "U0SHIFTLEAD"


@pytest.fixture
def policy_search(tmp_path: Path) -> Iterator[PolicySearch]:
    with ingested_search(tmp_path, [POLICIES / "load-approval.md"]) as search:
        yield search


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'store.db'}")
    schema.upgrade(database)
    yield database
    database.dispose()


@pytest.fixture
def model() -> Iterator[CannedChatServer]:
    server = CannedChatServer(["The shift lead approves it [1]."])
    yield server
    server.close()


@pytest.fixture
def saved(database: Database, policy_search: PolicySearch) -> int:
    """The verified answer a shift lead saved when resolving an escalation."""
    with database.transaction() as session:
        row = verified_answers.save(
            session,
            question=SAVED,
            answer=ANSWER,
            author=LEAD,
            audience="dispatch",
            policy_refs=[PolicyRef("load-approval", 3, "Load Approval Thresholds")],
        )
        entry = VerifiedEntry(
            verified_id=row.id,
            question=row.question,
            answer=row.answer,
            author=row.author,
            created_at=datetime(2026, 12, 3, 15, 0, tzinfo=UTC),
            audience=row.audience,
            policy_refs=tuple(row.policy_refs),
        )
    index_verified(policy_search.store, policy_search.embedder, entry)
    return entry.verified_id


def assistant(search: PolicySearch, database: Database, model: CannedChatServer) -> Assistant:
    return Assistant(
        search=search,
        model=make_client([model.url], max_tokens=32, read_timeout_s=30),
        database=database,
        settings=AssistantSettings(k=4, min_relevance=0.30, reserved_for_answer=32),
    )


def thread(name: str) -> ThreadKey:
    return ThreadKey("T0", "C0DISPATCH", name)


@pytest.mark.parametrize(
    "question",
    [SAVED, "Who approves a 30,000 lb load", "30,000 lb load - who approves it?"],
)
def test_the_same_question_gets_the_persons_answer_with_no_model_call(
    policy_search: PolicySearch,
    database: Database,
    model: CannedChatServer,
    saved: int,
    question: str,
) -> None:
    bot = assistant(policy_search, database, model)

    answer = bot.answer(question, thread=thread("1.1"), user_id="U0ASKER")

    assert model.requests == []
    assert answer.text == ANSWER
    assert (answer.credit.author, answer.credit.day) == (LEAD, "3 Dec")  # type: ignore[union-attr]
    assert answer.model == VERIFIED_ANSWER
    assert [(c.doc_id, c.version) for c in answer.citations] == [("load-approval", 3)]
    with database.transaction() as session:
        stored = session.get_one(Answer, answer.answer_id)
        assert stored.verified_answer_id == saved
        assert f"Answered by <@{LEAD}> on 3 Dec, verified" in stored.message.text
        assert session.get_one(VerifiedAnswer, saved).reuse_count == 1


def test_other_figures_or_another_audience_go_to_the_model(
    policy_search: PolicySearch, database: Database, model: CannedChatServer, saved: int
) -> None:
    bot = assistant(policy_search, database, model)

    heavier = bot.answer("who approves a 45,000 lb load?", thread=thread("2.1"), user_id="U0A")
    elsewhere = bot.stream_answer(SAVED, thread=thread("2.2"), user_id="U0B", audiences={"service"})
    list(elsewhere)

    assert heavier.model != VERIFIED_ANSWER
    # Close but not the same: the model may read it, with the question it answered.
    assert f"Question: {SAVED}" in str(model.requests[0]["messages"])
    assert elsewhere.result.model != VERIFIED_ANSWER
    assert ANSWER not in elsewhere.result.text


def test_a_follow_up_reads_the_verified_answer_as_a_marked_source(
    policy_search: PolicySearch, database: Database, model: CannedChatServer, saved: int
) -> None:
    bot = assistant(policy_search, database, model)
    bot.answer("what is a multi-stop load?", thread=thread("3.1"), user_id="U0A")

    follow_up = bot.answer(SAVED, thread=thread("3.1"), user_id="U0A")

    assert follow_up.model != VERIFIED_ANSWER
    prompt = str(model.requests[-1]["messages"])
    assert "Verified answer by a person on 3 Dec (not policy text)" in prompt
    assert ANSWER in prompt
    assert all(not c.doc_id.startswith("verified-answer-") for c in follow_up.citations)


def test_a_new_policy_version_holds_the_answer_back_in_the_same_ingest(
    policy_search: PolicySearch,
    database: Database,
    model: CannedChatServer,
    saved: int,
    tmp_path: Path,
) -> None:
    changed = tmp_path / "load-approval-v4.md"
    text = (POLICIES / "load-approval.md").read_text(encoding="utf-8")
    changed.write_text(text.replace("version: 3", "version: 4", 1), encoding="utf-8")
    ingest_files(
        [changed],
        store=policy_search.store,
        embedder=default_embedder(),
        chunking=ChunkingOptions(max_tokens=256, overlap_tokens=32),
    )

    held_back = keep_verified_current(database, policy_search.store)
    answer = assistant(policy_search, database, model).answer(
        SAVED, thread=thread("4.1"), user_id="U0A"
    )

    assert held_back == [saved]
    with database.transaction() as session:
        row = session.get_one(VerifiedAnswer, saved)
        assert row.status is VerifiedAnswerStatus.STALE
        assert "v3 is no longer current (now v4)" in (row.status_reason or "")
    assert answer.model != VERIFIED_ANSWER
    assert policy_search.verified_matches(SAVED) == []
