"""`dispatchbot learn` as a scheduler runs it: two replicas at once on PostgreSQL (one trains,
one reports the lock), the real vLLM judging a real one-step adapter, the summary in the
local Slack mock, and a second run on unchanged data that trains nothing. The cheap paths
(lock held, bad input, model server down, what a run would do) run in process."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from embedding_support import EMBEDDINGS_DIR, default_embedder
from sqlalchemy import func, select
from typer.testing import CliRunner, Result
from vllm_support import MODELS_DIR, RunningServer, free_port

from bot.cli import app
from bot.commands.learn import EXIT_GATE_NOT_PASSED, EXIT_LOCKED, post_summary
from bot.learn_blocks import LearnSummary, MeasureRow, learn_summary_message
from retrieval.chunking import ChunkingOptions
from retrieval.client import EDGE_FOLDER
from retrieval.edge_store import EdgeStore
from retrieval.ingest import ingest_files
from serving.base_weights import converted_model_dir
from serving.evaluation import VersionReport
from serving.model_gate import GateResult, VersionScores
from serving.prompts import build_prompt
from serving.vllm_admin import list_served_models, unload_adapter
from store import repository, schema
from store.database import Database
from store.locks import hold_lock
from store.models import JobLock, ModelVersion, ModelVersionStatus
from store.repository import AnswerRecord
from store.settings import Settings
from tests.slack.slack_mock import BOT_TOKEN, MockSlack, assert_valid_blocks, block_text

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "examples" / "policies" / "load-approval.md"
LABELLED = REPO / "examples" / "eval" / "answers.jsonl"
DISPATCHBOT = shutil.which("dispatchbot", path=str(Path(sys.executable).parent))
CHANNEL = "C0LEARN"
QUESTIONS = "questions.jsonl"  # the first labelled question, written into each test's folder
HOUR = timedelta(hours=1)
# Rated 👍 in three threads: SFT rows, one conversation held out for ROUGE-L.
APPROVED = [
    ("who approves a 30,000 lb load?", "The shift lead on duty approves it [1]."),
    ("who signs off on 28k lb", "The shift lead on duty, ext. 4411 [1]."),
    ("do i need approval for 39,000 lb", "Yes: the shift lead on duty approves it [1]."),
]


@dataclass(frozen=True)
class Source:
    doc_id: str
    title: str
    section: str
    version: int
    effective_from: date | None
    text: str


SOURCE = Source(
    "load-approval",
    "Load Approval Thresholds",
    "Approval by weight",
    3,
    date(2026, 3, 1),
    "From 26,001 to 40,000 lb the shift lead on duty approves the load (ext. 4411).",
)


@pytest.fixture(scope="module")
def policy_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embedded policy store with the load-approval policy, copied into each test's data
    dir (its `qdrant` folder)."""
    folder = tmp_path_factory.mktemp("index") / "qdrant"
    store = EdgeStore(folder / EDGE_FOLDER, "policies")
    ingest_files(
        [POLICY],
        store=store,
        embedder=default_embedder(),
        chunking=ChunkingOptions(max_tokens=256, overlap_tokens=32),
    )
    store.close()
    return folder


def _seed_store(url: str) -> None:
    database = Database(url)
    schema.upgrade(database)
    with database.transaction() as session:
        for number, (question, answer) in enumerate(APPROVED):
            conversation = repository.find_or_open_conversation(
                session, team_id="T1", channel_id="C1", thread_ts=f"17000.{number}", user_id="U1"
            )
            repository.record_user_message(session, conversation, text=question, user_id="U1")
            stored = repository.record_answer(
                session,
                conversation,
                AnswerRecord(
                    text=answer,
                    prompt=build_prompt(question, [SOURCE]).serialized(),
                    model="smollm2-135m-instruct",
                    endpoint="http://127.0.0.1:8100/v1",
                    latency_ms=900,
                ),
            )
            repository.record_feedback(session, answer_id=stored.id, user_id="U2", value=1)
    database.dispose()


def _environment(tmp_path: Path, database_url: str, policy_index: Path) -> dict[str, str]:
    """A data dir holding the index, a models dir whose base weights and embedding export are
    the repository's (adapters are written here, not there), the labelled question."""
    data, models = tmp_path / "data", tmp_path / "models"
    shutil.copytree(policy_index, data / "qdrant")
    models.mkdir()
    (models / converted_model_dir(Path()).name).symlink_to(converted_model_dir(MODELS_DIR))
    (models / EMBEDDINGS_DIR.name).symlink_to(EMBEDDINGS_DIR)
    (tmp_path / QUESTIONS).write_text(LABELLED.read_text(encoding="utf-8").splitlines()[0] + "\n")
    return {
        "DISPATCHBOT_DATA_DIR": str(data),
        "MODELS_DIR": str(models),
        "DATABASE_URL": database_url,
        "LLM_MAX_TOKENS": "48",
        "COLUMNS": "200",
    }


def _learn_args(tmp_path: Path, *extra: str) -> list[str]:
    """Judged on one labelled question and one held-out row, to keep the run short."""
    return ["learn", "--questions", str(tmp_path / QUESTIONS), "--question-count", "1", *extra]


def _versions(url: str) -> list[ModelVersion]:
    database = Database(url)
    try:
        with database.transaction() as session:
            return list(session.scalars(select(ModelVersion).order_by(ModelVersion.id)))
    finally:
        database.dispose()


# Two replicas at once, then a rerun: the real thing


@pytest.fixture
def replicas_env(
    tmp_path: Path,
    postgres_url: str,
    policy_index: Path,
    vllm_server: RunningServer,
    mock_slack: MockSlack,
) -> Iterator[dict[str, str]]:
    _seed_store(postgres_url)
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "DATABASE_", "LLM_"))
    }
    yield (
        inherited
        | _environment(tmp_path, postgres_url, policy_index)
        | {
            "LLM_BASE_URL": vllm_server.base_url,
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_API_URL": mock_slack.api_url,
            "LEARN_REPORT_CHANNEL": CHANNEL,
        }
    )
    # The vLLM server is the whole session's: leave it serving what it served.
    served = {model.id for model in list_served_models(vllm_server.base_url)}
    for version in _versions(postgres_url):
        if version.name in served:
            unload_adapter(vllm_server.base_url, version.name)


@pytest.fixture
def mock_slack() -> Iterator[MockSlack]:
    mock = MockSlack().start()
    yield mock
    mock.stop()


def _start(env: dict[str, str], cwd: Path, *args: str) -> subprocess.Popen[str]:
    assert DISPATCHBOT
    return subprocess.Popen(  # noqa: S603 - our own console script
        [DISPATCHBOT, *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_two_replicas_at_once_train_once_and_a_rerun_on_the_same_data_trains_nothing(
    replicas_env: dict[str, str], tmp_path: Path, postgres_url: str, mock_slack: MockSlack
) -> None:
    args = _learn_args(tmp_path, "--max-steps", "1", "--json")
    runs = [_start(replicas_env, tmp_path, *args) for _ in range(2)]
    outputs = [run.communicate(timeout=600) for run in runs]
    codes = [run.returncode for run in runs]

    assert codes.count(EXIT_LOCKED) == 1, (codes, [err for _, err in outputs])
    winner = codes.index(EXIT_LOCKED) ^ 1
    # One labelled question cannot show a gain beyond chance: the gate is not passed.
    assert codes[winner] == EXIT_GATE_NOT_PASSED, outputs[winner][1]
    locked_out = " ".join(outputs[1 - winner][1].split())
    assert "another `dispatchbot learn` is running" in locked_out
    assert f"held by {socket.gethostname()} pid {runs[winner].pid} since" in locked_out
    assert outputs[1 - winner][0] == ""

    report = json.loads(outputs[winner][0])
    assert report["outcome"] == "gate_not_passed"
    assert report["exit_status"] == EXIT_GATE_NOT_PASSED
    assert report["training"]["steps"] == 1
    assert report["against"] == "base"
    assert report["gate"]["passed"] is False
    assert report["gate"]["reasons"]
    assert report["promoted"] is None
    assert {row["measure"] for row in report["measures"]} >= {"expected facts present (covered)"}
    (version,) = _versions(postgres_url)  # exactly one replica trained
    assert version.name == report["candidate"]
    assert version.dataset_hash == report["dataset"]["content_hash"]
    assert Path(report["dataset"]["path"], "manifest.json").is_file()
    assert version.metrics["evaluation"]["gate"]["passed"] is False
    assert version.status is ModelVersionStatus.CANDIDATE
    database = Database(postgres_url)
    with database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(JobLock)) == 0
    database.dispose()

    (post,) = mock_slack.calls_to("chat.postMessage")
    assert post.args["channel"] == CHANNEL
    assert post.args["_token"] == BOT_TOKEN
    assert f"{version.name} did not pass the gate" in post.args["text"]
    assert_valid_blocks(post.args["blocks"])
    shown = block_text(post)
    assert "before" in shown
    assert "expected facts present" in shown
    assert "Why not promoted" in shown

    # As if that judgement had passed and the model server had gone before the promotion:
    # the next run promotes it, without training or judging again.
    _store_verdict(postgres_url, version.name, passed=True)
    resumed = _run(replicas_env, tmp_path)

    assert resumed.returncode == 0, resumed.stderr
    promoted = json.loads(resumed.stdout)
    assert promoted["outcome"] == "promoted"
    assert promoted["promoted"] == promoted["candidate"] == version.name
    assert promoted["training"] is None
    assert "promoting it" in resumed.stderr
    (version,) = _versions(postgres_url)
    assert version.status is ModelVersionStatus.PROMOTED
    assert version.name in {model.id for model in list_served_models(replicas_env["LLM_BASE_URL"])}
    assert (
        f"{version.name} passed the gate" in mock_slack.calls_to("chat.postMessage")[1].args["text"]
    )

    # Unchanged data: nothing is trained, judged or posted.
    rerun = _run(replicas_env, tmp_path)

    assert rerun.returncode == 0, rerun.stderr
    nothing = json.loads(rerun.stdout)
    assert nothing["outcome"] == "nothing_new"
    assert version.name in nothing["note"]
    assert nothing["dataset"]["content_hash"] == version.dataset_hash
    assert nothing["dataset"]["path"] is None  # the same export as before: not kept
    assert [v.name for v in _versions(postgres_url)] == [version.name]
    assert len(mock_slack.calls_to("chat.postMessage")) == 2


def _run(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own console script
        [DISPATCHBOT or "dispatchbot", *_learn_args(cwd, "--json")],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _store_verdict(url: str, name: str, *, passed: bool) -> None:
    """Rewrite the stored verdict's outcome, keeping its figures."""
    database = Database(url)
    with database.transaction() as session:
        version = session.scalars(select(ModelVersion).where(ModelVersion.name == name)).one()
        evaluation = dict(version.metrics["evaluation"])
        evaluation["gate"] = {**evaluation["gate"], "passed": passed, "reasons": []}
        version.metrics = {**version.metrics, "evaluation": evaluation}
    database.dispose()


# The cheap paths, in process


@pytest.fixture
def sqlite_env(
    tmp_path: Path, sqlite_url: str, policy_index: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)  # no developer .env steers these runs
    _seed_store(sqlite_url)
    return _environment(tmp_path, sqlite_url, policy_index) | {
        "LLM_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",  # nothing listens
        "SLACK_BOT_TOKEN": "",
    }


def _invoke(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


def _one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.postgres
def test_a_run_while_another_holds_the_lock_names_the_holder_and_does_nothing(
    tmp_path: Path,
    postgres_url: str,
    policy_index: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    _seed_store(postgres_url)
    env = _environment(tmp_path, postgres_url, policy_index)
    database = Database(postgres_url)
    try:
        with hold_lock(database, "learn", "dispatchbot-learn-7f9c pid 12", HOUR) as held:
            result = _invoke(env, *_learn_args(tmp_path))
    finally:
        database.dispose()

    assert result.exit_code == EXIT_LOCKED, result.output
    message = _one_line(result.stderr)
    assert "held by dispatchbot-learn-7f9c pid 12 since" in message
    assert f"{held.acquired_at:%Y-%m-%d %H:%M:%S} UTC" in message
    assert "Nothing was done" in message
    assert not (tmp_path / "data" / "datasets").exists() or not any(
        (tmp_path / "data" / "datasets").iterdir()
    )
    assert _versions(postgres_url) == []


def test_a_model_server_that_is_down_is_status_3_before_any_training(
    sqlite_env: dict[str, str], sqlite_url: str, tmp_path: Path
) -> None:
    result = _invoke(sqlite_env, *_learn_args(tmp_path, "--max-steps", "1"))

    assert result.exit_code == 3, result.output
    assert "cannot reach the model server at" in _one_line(result.stderr)
    assert "Nothing was trained" in _one_line(result.stderr)
    assert "Traceback" not in result.output
    assert _versions(sqlite_url) == []
    assert not any((Path(sqlite_env["DISPATCHBOT_DATA_DIR"]) / "datasets").iterdir())
    database = Database(sqlite_url)
    with database.transaction() as session:  # the lock went with the run
        assert session.scalar(select(func.count()).select_from(JobLock)) == 0
    database.dispose()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seed", "missing.jsonl"], "cannot read the seed file missing.jsonl"),
        (["--questions", "missing.jsonl"], "missing.jsonl"),
    ],
)
def test_bad_input_is_status_2_with_one_clear_line(
    sqlite_env: dict[str, str], tmp_path: Path, extra: list[str], message: str
) -> None:
    result = _invoke(sqlite_env, *_learn_args(tmp_path), *extra)

    assert result.exit_code == 2, result.output
    assert message in _one_line(result.stderr)
    assert "Traceback" not in result.output


def test_a_dry_run_says_whether_a_run_would_train_judge_or_do_nothing(
    sqlite_env: dict[str, str], sqlite_url: str, tmp_path: Path
) -> None:
    def dry_run() -> dict[str, Any]:
        result = _invoke(sqlite_env, *_learn_args(tmp_path, "--dry-run", "--json"))
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    first = dry_run()
    assert first["outcome"] == "would_train"
    assert first["dataset"]["counts"]["sft"]["train"] >= 1
    content_hash = first["dataset"]["content_hash"]

    # A version trained on this very data whose run stopped before judging it.
    database = Database(sqlite_url)
    with database.transaction() as session:
        repository.register_model_version(
            session,
            name="dispatchbot-20261205-031500",
            base_model="smollm2-135m-instruct",
            adapter_path="/models/adapters/dispatchbot-20261205-031500",
            dataset_hash=content_hash,
            metrics={},
        )
    assert dry_run()["outcome"] == "would_judge"

    with database.transaction() as session:  # judged against the base model, and passed
        session.scalars(select(ModelVersion)).one().metrics = _evaluation(passed=True)
    assert dry_run()["outcome"] == "would_promote"

    with database.transaction() as session:  # judged: the gate was not passed
        session.scalars(select(ModelVersion)).one().metrics = _evaluation(passed=False)
    database.dispose()
    nothing = dry_run()
    assert nothing["outcome"] == "nothing_new"
    assert "dispatchbot-20261205-031500" in nothing["note"]
    assert _versions(sqlite_url)[0].metrics["evaluation"]["gate"]["passed"] is False
    assert not (Path(sqlite_env["DISPATCHBOT_DATA_DIR"]) / "datasets").exists()


def _evaluation(*, passed: bool) -> dict[str, Any]:
    """A verdict as `evaluate model` stores it, against the base model."""
    scores = VersionScores(
        questions=1, covered=1, uncovered=0, facts_present=0.0, unsupported=0, repeating=0,
        uncovered_refused=0.0, covered_refused=0.0, citing=1.0, words=12.0,
        to_the_point=1.0, median_seconds=1.0, p95_seconds=1.0,
    )  # fmt: skip
    reports = {
        side: VersionReport(
            name=name, scores=scores, citation_validity=1.0, rouge_l=None, heldout=0
        ).model_dump(mode="json")
        for side, name in (("candidate", "dispatchbot-20261205-031500"), ("incumbent", "base"))
    }
    reasons = [] if passed else ["no gain"]
    gate = GateResult(passed=passed, reasons=reasons, questions=1, comparisons=[])
    return {"evaluation": {"gate": gate.model_dump(mode="json"), **reports}}


def test_an_empty_store_has_nothing_to_learn_from(
    tmp_path: Path, policy_index: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    database = Database(url)
    schema.upgrade(database)
    database.dispose()
    env = _environment(tmp_path, url, policy_index)

    result = _invoke(env, *_learn_args(tmp_path, "--json"))

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["outcome"] == "nothing_to_learn"


# The summary in Slack


def _summary(*, passed: bool) -> LearnSummary:
    return LearnSummary(
        candidate="dispatchbot-20261205-031500",
        incumbent="base",
        passed=passed,
        promoted=passed,
        reasons=[] if passed else ["facts present: 2 better, 1 worse of 9 <not beyond chance>"],
        measures=[
            MeasureRow("expected facts present (covered)", "8%", "12%"),
            MeasureRow("answers with unsupported claims", "19", "17"),
        ],
        dataset_hash="ab" * 32,
        train_rows=215,
        heldout_rows=24,
        training="sft on smollm2-135m-instruct: 1 steps in 12 s on cpu, final loss 2.400",
    )


@pytest.mark.parametrize("passed", [True, False])
def test_the_summary_is_valid_blocks_with_the_verdict_first(passed: bool) -> None:
    message = learn_summary_message(_summary(passed=passed))

    assert_valid_blocks(message.blocks)
    headline = message.blocks[0]["text"]["text"]
    assert "dispatchbot-20261205-031500" in headline
    assert ("promoted" in headline) is passed
    table = message.blocks[1]["text"]["text"]
    assert "```" in table
    assert "expected facts present (covered)" in table
    why = [
        b["text"]["text"] for b in message.blocks if "Why not" in b.get("text", {}).get("text", "")
    ]
    assert why == ([] if passed else [why[0]])
    if not passed:
        assert "&lt;not beyond chance&gt;" in why[0]  # escaped: shows as written


def test_the_summary_goes_to_the_report_channel_and_a_slack_failure_is_only_logged(
    mock_slack: MockSlack, caplog: pytest.LogCaptureFixture
) -> None:
    message = learn_summary_message(_summary(passed=True))
    base = {
        "_env_file": None,
        "slack_bot_token": BOT_TOKEN,
        "slack_api_url": mock_slack.api_url,
        "escalation_channel": "C0ONCALL",
    }

    assert post_summary(Settings(**base, learn_report_channel=CHANNEL), message)
    assert post_summary(Settings(**base), message)  # falls back to the escalation channel
    assert [c.args["channel"] for c in mock_slack.calls_to("chat.postMessage")] == [
        CHANNEL,
        "C0ONCALL",
    ]

    mock_slack.responses["chat.postMessage"] = {"ok": False, "error": "channel_not_found"}
    assert not post_summary(Settings(**base), message)
    assert "channel_not_found" in caplog.text
    assert BOT_TOKEN not in caplog.text

    calls = len(mock_slack.calls)
    no_token = Settings(**{**base, "slack_bot_token": None})
    assert not post_summary(no_token, message)
    assert len(mock_slack.calls) == calls
