"""The assistant core end to end: real retrieval, the real vLLM, the real store."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from embedding_support import default_embedder
from policy_store_support import ingested_search
from sqlalchemy import select
from vllm_support import MODELS_DIR, CannedChatServer, RunningServer, forced_answer, make_client

from retrieval.embedding import Embedder
from retrieval.search import PolicySearch, SearchResult
from serving.assistant import (
    NOT_COVERED,
    POLICY_WORDS_LEAD,
    Assistant,
    AssistantSettings,
    ThreadKey,
    keep_cited_sources,
)
from serving.llm_client import ModelUnavailable
from serving.sentences import whole_sentences
from serving.verification import Outcome
from store import schema
from store.database import Database
from store.models import Answer, Conversation, Message, MessageRole

REPO_ROOT = Path(__file__).resolve().parents[2]
POLICIES = REPO_ROOT / "examples" / "policies"
CORPUS = [POLICIES / name for name in ("load-approval.md", "service-slas.md", "hazmat-handling.md")]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return default_embedder()


@pytest.fixture(scope="module")
def policy_search(
    embedder: Embedder, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PolicySearch]:
    with ingested_search(tmp_path_factory.mktemp("store"), CORPUS, embedder) as search:
        yield search


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'store.db'}")
    schema.upgrade(database)
    yield database
    database.dispose()


def _assistant(
    policy_search: PolicySearch,
    database: Database,
    endpoints: list[str],
    sampling: dict[str, object] | None = None,
) -> Assistant:
    return Assistant(
        search=policy_search,
        model=make_client(endpoints, max_tokens=64, read_timeout_s=60, sampling=sampling),
        database=database,
        settings=AssistantSettings(k=4, min_relevance=0.30, reserved_for_answer=64),
    )


RIGHT = "The shift lead on duty approves it [1]. Call the dispatch desk at ext. 4411."


def _thread(name: str) -> ThreadKey:
    return ThreadKey("T1", "C1", name)


def test_a_streamed_answer_is_recorded_with_its_prompt_sources_and_timings(
    vllm_server: RunningServer, policy_search: PolicySearch, database: Database
) -> None:
    assistant = _assistant(
        policy_search, database, [vllm_server.base_url], sampling=forced_answer(RIGHT)
    )

    stream = assistant.stream_answer(
        "who approves a 30k lb load", thread=_thread("1.0001"), user_id="U1"
    )
    chunks = list(stream)
    answer = stream.result

    # Text streams a checked sentence at a time, before the answer is complete.
    assert chunks[0] == "The shift lead on duty approves it [1]."
    assert "".join(chunks) == RIGHT
    assert answer.text == RIGHT
    assert answer.verification.outcome is Outcome.PASSED
    assert answer.quote is not None
    assert "| 26,001 to 40,000 lb | Shift lead on duty |" in answer.quote.markdown
    assert answer.endpoint == vllm_server.base_url
    assert (answer.prompt_tokens or 0) > 100
    assert (answer.completion_tokens or 0) > 0
    assert 0 < (answer.ttft_ms or 0) <= answer.latency_ms
    assert answer.citations[0].doc_id == "load-approval"
    assert (answer.confidence or 0) >= 0.30

    with database.transaction() as session:
        stored = session.get_one(Answer, answer.answer_id)
        messages = json.loads(stored.prompt)
        assert messages[0]["role"] == "system"
        assert '<source id="1">' in messages[-1]["content"]
        assert "Load Approval Thresholds" in messages[-1]["content"]
        assert messages[-1]["content"].endswith("Question: who approves a 30k lb load")
        assert (stored.prompt_tokens, stored.completion_tokens) == (
            answer.prompt_tokens,
            answer.completion_tokens,
        )
        assert stored.ttft_ms == answer.ttft_ms
        assert stored.endpoint == vllm_server.base_url
        assert stored.model == "smollm2-135m-instruct"
        assert [c.doc_id for c in stored.citations] == [c.doc_id for c in answer.citations]
        roles = [m.role for m in stored.message.conversation.messages]
        assert roles == [MessageRole.USER, MessageRole.ASSISTANT]
        assert stored.generated_text == RIGHT
        assert stored.verification == {"outcome": "passed", "found": [], "cut_at_repeat": False}
        assert stored.quote is not None
        assert (stored.quote["doc_id"], stored.quote["version"]) == ("load-approval", 3)
        assert stored.quote["text"] == answer.quote.markdown


def test_an_answer_that_fails_verification_shows_the_policy_words_instead(
    vllm_server: RunningServer, policy_search: PolicySearch, database: Database
) -> None:
    invented = "Call the load desk at 1-800-555-0199 to approve it."
    assistant = _assistant(
        policy_search, database, [vllm_server.base_url], sampling=forced_answer(invented)
    )

    stream = assistant.stream_answer(
        "who approves a 30k lb load", thread=_thread("1.0002"), user_id="U1"
    )
    streamed = "".join(stream)
    answer = stream.result

    assert "555-0199" not in streamed
    assert answer.text == POLICY_WORDS_LEAD
    assert answer.verification.outcome is Outcome.UNSUPPORTED_CLAIM
    assert answer.verification.found == ("1-800-555-0199",)
    assert answer.quote is not None
    assert answer.citations == [answer.quote.source]
    assert answer.generated_text.startswith("Call the load desk at 1-800-555-0199")
    assert answer.needs_human is False  # the policy's words answer it


def test_a_dead_first_endpoint_falls_back_and_the_answer_records_who_served(
    vllm_server: RunningServer,
    dead_endpoint: str,
    policy_search: PolicySearch,
    database: Database,
) -> None:
    assistant = _assistant(policy_search, database, [dead_endpoint, vllm_server.base_url])

    answer = assistant.answer("p1 reefer response time", thread=_thread("2.0001"), user_id="U1")

    assert answer.endpoint == vllm_server.base_url
    with database.transaction() as session:
        assert session.get_one(Answer, answer.answer_id).endpoint == vllm_server.base_url


def test_weak_evidence_flags_a_person_without_calling_the_model(
    dead_endpoint: str, policy_search: PolicySearch, database: Database
) -> None:
    # Only a dead endpoint: had the model been called, this would raise ModelUnavailable.
    assistant = _assistant(policy_search, database, [dead_endpoint])

    stream = assistant.stream_answer(
        "who won the game last night", thread=_thread("3.0001"), user_id="U1"
    )
    chunks = list(stream)
    answer = stream.result

    assert chunks == [NOT_COVERED]
    assert answer.needs_human is True
    assert answer.citations == []
    with database.transaction() as session:
        stored = session.get_one(Answer, answer.answer_id)
        assert stored.needs_human is True
        assert stored.model == "none"
        assert stored.confidence is not None
        assert stored.confidence < 0.30


def test_the_question_is_kept_when_no_model_answers(
    dead_endpoint: str, policy_search: PolicySearch, database: Database
) -> None:
    assistant = _assistant(policy_search, database, [dead_endpoint])

    with pytest.raises(ModelUnavailable, match="dispatchbot model serve"):
        assistant.answer("who approves a 30k lb load", thread=_thread("4.0001"), user_id="U7")

    with database.transaction() as session:
        texts = session.scalars(select(Message.text).where(Message.role == MessageRole.USER)).all()
        assert texts == ["who approves a 30k lb load"]
        assert session.scalars(select(Answer)).all() == []


def test_a_follow_up_in_the_thread_sees_the_earlier_turns(
    vllm_server: RunningServer, policy_search: PolicySearch, database: Database
) -> None:
    assistant = _assistant(policy_search, database, [vllm_server.base_url])
    thread = _thread("5.0001")

    first = assistant.answer("who approves a 30k lb load", thread=thread, user_id="U1")
    second = assistant.answer("and a 41k one?", thread=thread, user_id="U1")

    assert first.conversation_id == second.conversation_id
    with database.transaction() as session:
        messages = json.loads(session.get_one(Answer, second.answer_id).prompt)
        conversation = session.get_one(Conversation, second.conversation_id)
        assert len(conversation.messages) == 4
    assert messages[1] == {"role": "user", "content": "who approves a 30k lb load"}
    # The earlier answer as it was shown: its text, and the policy's words quoted under it.
    assert first.quote is not None
    assert messages[2] == {
        "role": "assistant",
        "content": f"{first.text}\n\n{first.quote.markdown}",
    }
    assert messages[-1]["content"].endswith("Question: and a 41k one?")


SOURCE = SearchResult(
    chunk_id="c1",
    text="t",
    score=1.0,
    relevance=0.7,
    doc_id="load-approval",
    title="Load Approval Thresholds",
    section="Load Approval Thresholds > Approval by weight",
    version=3,
    effective_from=date(2026, 3, 1),
    effective_to=None,
    audience="dispatch",
    source="examples/policies/load-approval.md",
    tags=(),
)
SOURCES = [replace(SOURCE, chunk_id=f"c{n}", doc_id=f"doc-{n}") for n in range(1, 6)]


def test_an_answer_cut_at_the_token_limit_ends_at_its_last_whole_sentence(
    policy_search: PolicySearch, database: Database
) -> None:
    # A real model cannot be made to run into the limit on demand; this endpoint can.
    cut = ["The shift lead approves loads over 26,000 lb [1].", " Then file the load", " sheet in"]
    server = CannedChatServer(cut, finish_reason="length")
    try:
        answer = _assistant(policy_search, database, [server.url]).answer(
            "who approves a 30k lb load", thread=_thread("1.0009"), user_id="U1"
        )
    finally:
        server.close()

    assert answer.text == "The shift lead approves loads over 26,000 lb [1]."
    with database.transaction() as session:
        assert session.get_one(Answer, answer.answer_id).message.text == answer.text


@pytest.mark.parametrize(
    ("written", "shown"),
    [
        (
            "Get the shift lead's sign-off [1]. Then file form W-2 before the",
            "Get the shift lead's sign-off [1].",
        ),
        (
            "Over 26,000 lb needs approval. The 1.5 t rule [2] applies",
            "Over 26,000 lb needs approval.",
        ),
        (
            "Call the desk! It is open 24/7 [1][3]. Ask for",
            "Call the desk! It is open 24/7 [1][3].",
        ),
        ("- check the seal\n- check the temp and", "- check the seal"),
        ("no sentence ends here at all", "no sentence ends here at all"),
    ],
)
def test_whole_sentences_drops_the_unfinished_tail(written: str, shown: str) -> None:
    assert whole_sentences(written) == shown


def test_only_citations_the_answer_uses_are_kept_in_order_of_mention() -> None:
    text, cited = keep_cited_sources("Call the shift lead [3]; log it in the TMS [1][3].", SOURCES)

    assert [c.doc_id for c in cited] == ["doc-3", "doc-1"]
    assert text == "Call the shift lead [3]; log it in the TMS [1][3]."


def test_a_citation_to_a_source_that_was_not_given_is_removed() -> None:
    text, cited = keep_cited_sources("Approve it [2] and file form 9 [9].", SOURCES)

    assert [c.doc_id for c in cited] == ["doc-2"]
    assert "[9]" not in text


def test_an_answer_that_cites_nothing_falls_back_to_the_top_sources() -> None:
    _, cited = keep_cited_sources("The shift lead approves.", SOURCES)
    assert [c.doc_id for c in cited] == ["doc-1", "doc-2", "doc-3"]


DISPATCHBOT = shutil.which("dispatchbot", path=str(Path(sys.executable).parent))


def test_ask_prints_a_cited_answer_as_json_and_fails_clearly_without_a_model(
    vllm_server: RunningServer, dead_endpoint: str, tmp_path: Path
) -> None:
    assert DISPATCHBOT
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_"))}
    # MODELS_DIR: the shared one, where the embedding model's ONNX export already is.
    env |= {
        "DISPATCHBOT_DATA_DIR": str(tmp_path / "data"),
        "MODELS_DIR": str(MODELS_DIR),
        "LLM_MAX_TOKENS": "48",
    }

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - our own console script
            [DISPATCHBOT, *args],
            env=env | extra,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )

    refused = run("ask", "who approves a 30k lb load")
    assert refused.returncode == 3
    assert "dispatchbot db upgrade" in refused.stderr

    assert run("db", "upgrade").returncode == 0
    assert run("ingest", *map(str, CORPUS)).returncode == 0

    asked = run("ask", "who approves a 30k lb load", "--json", LLM_BASE_URL=vllm_server.base_url)
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert set(answer) >= {"answer", "citations", "needs_human", "answer_id", "model", "latency_ms"}
    assert answer["citations"][0]["doc_id"] == "load-approval"
    assert set(answer["citations"][0]) >= {"doc_id", "title", "section", "version", "score"}
    assert answer["needs_human"] is False
    assert answer["model"] == "smollm2-135m-instruct"
    # The policy's own words, and what verification made of the model's text.
    assert answer["quote"]["doc_id"] == "load-approval"
    assert "Shift lead on duty" in answer["quote"]["text"]
    assert set(answer["quote"]) >= {"text", "doc_id", "section", "version"}
    assert answer["verification"]["outcome"] in {o.value for o in Outcome}

    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text(
        json.dumps(
            {
                "id": "load-30k",
                "kind": "table",
                "question": "who approves a 30k lb load",
                "doc_id": "load-approval",
                "section": "Approval by weight",
                "facts": [["shift lead"], ["4411"]],
            }
        )
        + "\n"
        + json.dumps({"id": "wifi", "kind": "uncovered", "question": "wifi password?"})
        + "\n",
        encoding="utf-8",
    )
    evaluated = run(
        "evaluate", "answers", "--file", str(labelled), "--json",
        LLM_BASE_URL=vllm_server.base_url,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert (report["questions"], report["covered"], report["uncovered"]) == (2, 1, 1)
    assert report["shown"]["unsupported"] == 0
    assert report["model"] == "smollm2-135m-instruct"
    assert [row["id"] for row in report["answers"]] == ["load-30k", "wifi"]
    # Evaluating writes nothing to the store: only the answer `ask` gave is there.
    with sqlite3.connect(tmp_path / "data" / "dispatchbot.db") as store:
        assert store.execute("SELECT count(*) FROM answers").fetchone() == (1,)
    bad = run("evaluate", "answers", "--file", str(tmp_path / "missing.jsonl"))
    assert bad.returncode == 2
    assert "cannot read" in bad.stderr

    down = run("ask", "who approves a 30k lb load", LLM_BASE_URL=dead_endpoint)
    assert down.returncode == 3
    assert "dispatchbot model serve" in down.stderr
    assert "question was saved" in down.stderr
    assert "Traceback" not in down.stderr
