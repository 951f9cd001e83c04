"""The learning loop end to end on this CPU, as an operator runs it: answers, feedback and a
person's resolution in the store → dataset export → LoRA training → evaluation against the
base → promotion into the running vLLM → a new answer written by the adapter → rollback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vllm_support import MODELS_DIR, RunningServer

from serving.model_gate import GateResult, Measure
from serving.vllm_admin import list_served_models, unload_adapter
from store import repository
from store.database import Database
from store.models import Answer, Conversation, EscalationTrigger, ModelVersion

REPO = Path(__file__).resolve().parents[2]
POLICIES = REPO / "examples" / "policies"
SEED = REPO / "examples" / "training" / "seed.jsonl"
EVAL = REPO / "examples" / "eval"
DISPATCHBOT = shutil.which("dispatchbot", path=str(Path(sys.executable).parent))
QUESTIONS = [
    "who approves a 30,000 lb load?",
    "what's the SLA on a priority-1 reefer ticket?",
    "who signs off on a 45,000 lb load?",
    "what placards does a hazmat load need?",
]
CONTACT = "lead.dispatcher@northwind.example or (555) 010-2233"
ADAPTER = "loop-v1"


class Operator:
    def __init__(self, tmp_path: Path, vllm: RunningServer) -> None:
        self.cwd = tmp_path
        self.data = tmp_path / "data"
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_"))
        } | {
            "DISPATCHBOT_DATA_DIR": str(self.data),
            "MODELS_DIR": str(MODELS_DIR),
            "LLM_BASE_URL": vllm.base_url,
            "LLM_MAX_TOKENS": "48",
        }

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        assert DISPATCHBOT
        result = subprocess.run(  # noqa: S603 - our own console script
            [DISPATCHBOT, *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if ok:
            assert result.returncode == 0, f"{args}: {result.stderr}"
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json").stdout)

    @property
    def database(self) -> Database:
        return Database(f"sqlite:///{self.data / 'dispatchbot.db'}")


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def operator(vllm_server: RunningServer, tmp_path: Path) -> Iterator[Operator]:
    yield Operator(tmp_path, vllm_server)
    # The test server is shared by the whole session: leave it serving what it served.
    if ADAPTER in {model.id for model in list_served_models(vllm_server.base_url)}:
        unload_adapter(vllm_server.base_url, ADAPTER)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_feedback_becomes_an_adapter_that_answers_and_can_be_rolled_back(
    vllm_server: RunningServer, operator: Operator, tmp_path: Path
) -> None:
    operator.run("db", "upgrade")
    operator.run("ingest", *(str(POLICIES / f) for f in ("load-approval.md", "service-slas.md")))

    # The store: four answered questions, votes from several people, one 👎 answer that a
    # person then answered (with contact details that must not reach training data).
    answers = [operator.json("ask", question)["answer_id"] for question in QUESTIONS]
    database = operator.database
    with database.transaction() as session:
        for answer_id, user, value in [
            (answers[0], "U1", 1),
            (answers[0], "U2", 1),
            (answers[1], "U1", 1),
            (answers[2], "U1", -1),
            (answers[3], "U2", -1),
        ]:
            repository.record_feedback(session, answer_id=answer_id, user_id=user, value=value)
        downvoted = session.get_one(Answer, answers[2])
        conversation = session.get_one(Conversation, downvoted.message.conversation_id)
        escalation, _ = repository.open_escalation(
            session, conversation, trigger=EscalationTrigger.BUTTON, answer_id=answers[2]
        )
        repository.resolve_escalation(
            session,
            escalation.id,
            resolution=f"The operations manager approves 40,001 lb and up [1]. Ask {CONTACT}.",
            resolved_by="U0LEAD",
        )
    database.dispose()

    # Export: every row type, redacted, split by conversation, with a manifest.
    dataset = tmp_path / "dataset"
    manifest = operator.json("dataset", "export", "--out", str(dataset), "--seed", str(SEED))
    counts = manifest["counts"]
    assert counts["kto"]["train"] + counts["kto"]["heldout"] == 4
    assert counts["dpo"]["train"] + counts["dpo"]["heldout"] == 1
    assert counts["sft"]["train"] >= 10  # seed rows, 👍 answers and the resolution
    assert counts["sft"]["heldout"] >= 1
    assert manifest["redactions"] >= 2
    everything = "".join(path.read_text() for path in dataset.glob("*.jsonl"))
    assert "lead.dispatcher@northwind.example" not in everything
    assert "010-2233" not in everything
    kto = _rows(dataset / "kto.train.jsonl") + _rows(dataset / "kto.heldout.jsonl")
    assert sorted(row["label"] for row in kto) == [False, False, True, True]
    [dpo] = _rows(dataset / "dpo.train.jsonl") + _rows(dataset / "dpo.heldout.jsonl")
    assert "operations manager" in dpo["chosen"][0]["content"]
    train_ids = {row["conversation"] for row in _rows(dataset / "sft.train.jsonl")}
    heldout_ids = {row["conversation"] for row in _rows(dataset / "sft.heldout.jsonl")}
    assert not train_ids & heldout_ids

    # Train a few steps, then judge the adapter against the base on the same questions.
    trained = operator.json(
        "train", "--data", str(dataset), "--name", ADAPTER, "--max-steps", "2",
        "--out", str(tmp_path / "adapters" / ADAPTER),
    )  # fmt: skip
    assert Path(trained["adapter_path"], "adapter_config.json").is_file()
    evaluated = operator.run(
        "evaluate", "model", "--candidate", ADAPTER, "--file", str(EVAL / "answers.jsonl"),
        "-n", "5", "--data", str(dataset), "--json", ok=False,
    )  # fmt: skip
    assert evaluated.returncode in (0, 1), evaluated.stderr
    assert evaluated.stdout.startswith("{"), evaluated.stderr
    evaluation = json.loads(evaluated.stdout)
    assert (evaluation["candidate"]["name"], evaluation["incumbent"]["name"]) == (ADAPTER, "base")
    gate = GateResult.model_validate(evaluation["gate"])
    assert gate.passed is (evaluated.returncode == 0)
    assert gate.questions == evaluation["candidate"]["scores"]["questions"] == 5
    assert {c.measure for c in gate.comparisons} == set(Measure)
    assert gate.passed or gate.reasons
    # Paired: both versions answered the same questions, in the same order.
    answers = evaluation["answers"]
    assert [a["id"] for a in answers["candidate"]] == [a["id"] for a in answers["incumbent"]]
    assert evaluation["candidate"]["heldout"] >= 1
    assert evaluation["candidate"]["rouge_l"] is not None
    database = operator.database
    with database.transaction() as session:
        stored = repository.find_model_version(session, ADAPTER)
        assert isinstance(stored, ModelVersion)
        assert GateResult.stored_on(stored.metrics) == gate
    database.dispose()

    # Promote (a 135M model after three steps may well not pass the gate: then only --force).
    if not gate.passed:
        refused = operator.run("promote", "loop-v1", ok=False)
        assert refused.returncode == 2
        assert "evaluation gate" in refused.stderr
    assert operator.json("promote", "loop-v1", "--force")["promoted"] == "loop-v1"
    assert "loop-v1" in {model.id for model in list_served_models(vllm_server.base_url)}

    with_adapter = operator.json("ask", QUESTIONS[0])
    assert with_adapter["adapter"] == "loop-v1"
    report = {row["name"]: row for row in operator.json("model", "report")}
    assert report["loop-v1"]["answers"] == 1
    assert report["loop-v1"]["status"] == "promoted"

    assert operator.json("rollback")["promoted"] is None
    assert operator.json("ask", QUESTIONS[0])["adapter"] is None
