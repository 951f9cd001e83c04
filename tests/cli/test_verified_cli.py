"""`dispatchbot verified ...` as a reviewer runs it: a SQLite store with three verified
answers (active, stale, retired) and the embedded policy store in the data dir, written
directly or, while a bot holds it, through the bot's socket."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from embedding_support import default_embedder
from typer.testing import CliRunner, Result
from vllm_support import free_port

from bot.cli import app
from bot.commands.common import EXIT_UNAVAILABLE, EXIT_USAGE
from bot.policy_admin import PolicyAdminServer, admin_socket
from retrieval.chunking import ChunkingOptions
from retrieval.client import EDGE_FOLDER
from retrieval.edge_store import EdgeStore
from retrieval.ingest import ingest_files
from retrieval.store import Where
from retrieval.versions import local_today
from store import repository, schema, verified_answers
from store.database import Database
from store.models import EscalationTrigger, VerifiedAnswer, VerifiedAnswerStatus
from store.settings import Settings
from store.verified_answers import PolicyRef

REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "examples" / "policies" / "load-approval.md"
COLLECTION = "policies"
LEAD = "U0SHIFTLEAD"
QUESTION = "who approves a 30,000 lb load?"
ANSWER = "The shift lead on duty signs it off in the TMS; ring the dispatch desk on ext. 4411."
STALE_REASON = "Load Approval Thresholds v4 replaced v3"
REF = PolicyRef("load-approval", 3, "Load Approval Thresholds")
# qdrant-client's warning about a server that is down, from a thread, after the test.
pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version")
JSON_FIELDS = {
    "id",
    "status",
    "status_reason",
    "question",
    "answer",
    "author",
    "escalation_id",
    "audience",
    "policy_refs",
    "created_at",
    "reviewed_at",
    "reviewed_by",
    "expires_on",
    "reuse_count",
    "last_reused_at",
}


@pytest.fixture(scope="module")
def policy_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embedded policy store holding the load-approval policy, copied into each test's
    data dir (its `qdrant` folder); the embedding model loaded once for the CLI too."""
    folder = tmp_path_factory.mktemp("index") / "qdrant"
    store = EdgeStore(folder / EDGE_FOLDER, COLLECTION)
    ingest_files(
        [POLICY],
        store=store,
        embedder=default_embedder(),
        chunking=ChunkingOptions(max_tokens=256, overlap_tokens=32),
    )
    store.close()
    return folder


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def cli_env(
    data_dir: Path, sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)  # no stray .env from wherever the tests run
    return {
        "DATABASE_URL": sqlite_url,
        "DISPATCHBOT_DATA_DIR": str(data_dir),
        "QDRANT_URL": "",
        "COLUMNS": "200",
    }


@pytest.fixture
def indexed(data_dir: Path, policy_index: Path) -> Path:
    """The policy store in the data dir, where `open_store` looks."""
    shutil.copytree(policy_index, data_dir / "qdrant")
    return data_dir / "qdrant" / EDGE_FOLDER


@pytest.fixture
def database(sqlite_url: str) -> Iterator[Database]:
    database = Database(sqlite_url)
    schema.upgrade(database)
    yield database
    database.dispose()


@pytest.fixture
def saved(database: Database) -> dict[str, int]:
    """Three verified answers: #1 active, saved from a resolved escalation; #2 stale; #3
    retired. Returns their ids by status."""
    with database.transaction() as session:
        conversation = repository.find_or_open_conversation(
            session, team_id="T1", channel_id="C1", thread_ts="100.1", user_id="U1"
        )
        asked = repository.record_user_message(session, conversation, text=QUESTION, user_id="U1")
        escalation, _ = repository.open_escalation(
            session,
            conversation,
            trigger=EscalationTrigger.WEAK_EVIDENCE,
            requested_by="U1",
            question_message_id=asked.id,
        )
        repository.resolve_escalation(session, escalation.id, resolution=ANSWER, resolved_by=LEAD)
        active = verified_answers.save(
            session,
            question=QUESTION,
            answer=ANSWER,
            author=LEAD,
            audience="dispatch",
            policy_refs=[REF],
            escalation_id=escalation.id,
            expires_on=local_today() + timedelta(days=90),
        )
        stale = verified_answers.save(
            session,
            question="who signs off on a 28k lb load?",
            answer="The shift lead on duty.",
            author=LEAD,
            audience="all",
            policy_refs=[REF],
        )
        stale.status = VerifiedAnswerStatus.STALE
        stale.status_reason = STALE_REASON
        retired = verified_answers.save(
            session,
            question="is the Baltimore tunnel closed?",
            answer="Closed until Friday.",
            author="U0OTHER",
            audience="all",
            policy_refs=[],
        )
        verified_answers.retire(session, retired.id, "U0OTHER", "the tunnel reopened")
        verified_answers.record_reuse(session, active.id)
        return {"active": active.id, "stale": stale.id, "retired": retired.id}


def run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(app, ["verified", *args], env=env)


def row(database: Database, verified_id: int) -> VerifiedAnswer:
    with database.transaction() as session:
        return verified_answers.get(session, verified_id)


def searchable(edge: Path, verified_id: int) -> int:
    """How many points of this verified answer the policy store holds."""
    store = EdgeStore(edge, COLLECTION)
    try:
        return store.count(Where(verified=True, verified_id=verified_id))
    finally:
        store.close()


def test_list_shows_every_answer_or_one_status(
    cli_env: dict[str, str], saved: dict[str, int]
) -> None:
    listed = run(cli_env, "list", "--json")

    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [(item["id"], item["status"]) for item in rows] == [
        (saved["active"], "active"),
        (saved["stale"], "stale"),
        (saved["retired"], "retired"),
    ]
    assert all(set(item) == JSON_FIELDS for item in rows)
    stale = json.loads(run(cli_env, "list", "--status", "stale", "--json").stdout)
    assert [item["id"] for item in stale] == [saved["stale"]]
    assert stale[0]["status_reason"] == STALE_REASON

    table = run(cli_env, "list")
    assert table.exit_code == 0
    assert QUESTION in table.stdout
    assert "stale" in table.stdout
    assert "No active verified answers." not in table.stdout


def test_show_prints_everything_about_one_answer(
    cli_env: dict[str, str], saved: dict[str, int]
) -> None:
    shown = run(cli_env, "show", str(saved["active"]), "--json")

    assert shown.exit_code == 0, shown.output
    fields = json.loads(shown.stdout)
    assert set(fields) == JSON_FIELDS
    assert fields["question"] == QUESTION
    assert fields["answer"] == ANSWER
    assert fields["author"] == LEAD
    assert fields["escalation_id"] is not None
    assert fields["audience"] == "dispatch"
    assert fields["policy_refs"] == [REF.to_json()]
    assert fields["status"] == "active"
    assert fields["reviewed_by"] == LEAD
    assert fields["reuse_count"] == 1
    assert fields["expires_on"] == (local_today() + timedelta(days=90)).isoformat()

    table = run(cli_env, "show", str(saved["retired"]))
    assert table.exit_code == 0
    for expected in (
        "is the Baltimore tunnel closed?",
        "Closed until Friday.",
        "retired (the tunnel reopened)",
        "U0OTHER",
        "none cited",
    ):
        assert expected in table.stdout
    cited = run(cli_env, "show", str(saved["active"]))
    assert "Load Approval Thresholds (load-approval v3)" in cited.stdout
    assert f"escalation #{fields['escalation_id']}" in cited.stdout


@pytest.mark.parametrize(
    "args",
    [("show", "99"), ("approve", "99"), ("retire", "99"), ("show", "99", "--json")],
)
def test_an_unknown_id_says_where_to_look(
    cli_env: dict[str, str], saved: dict[str, int], args: tuple[str, ...]
) -> None:
    result = run(cli_env, *args)

    assert result.exit_code == EXIT_USAGE
    assert "no verified answer #99; see `dispatchbot verified list`" in result.stderr
    assert "Traceback" not in result.output


def test_approve_and_retire_change_the_row_then_the_policy_store(
    cli_env: dict[str, str], saved: dict[str, int], database: Database, indexed: Path
) -> None:
    stale = saved["stale"]
    assert searchable(indexed, stale) == 0

    approved = run(cli_env, "approve", str(stale), "--by", "U0REVIEWER")

    assert approved.exit_code == 0, approved.output
    assert f"Verified answer #{stale} approved by U0REVIEWER" in approved.stdout
    after = row(database, stale)
    assert (after.status, after.status_reason, after.reviewed_by) == (
        VerifiedAnswerStatus.ACTIVE,
        None,
        "U0REVIEWER",
    )
    assert searchable(indexed, stale) == 1
    again = run(cli_env, "approve", str(stale), "--by", "U0REVIEWER")
    assert again.exit_code == 0
    assert searchable(indexed, stale) == 1  # replaced, not doubled

    retired = run(cli_env, "retire", str(stale), "--reason", "the limits changed", "--by", "U0R")

    assert retired.exit_code == 0, retired.output
    assert f"Verified answer #{stale} retired by U0R: the limits changed." in retired.stdout
    after = row(database, stale)
    assert (after.status, after.status_reason, after.reviewed_by) == (
        VerifiedAnswerStatus.RETIRED,
        "the limits changed",
        "U0R",
    )
    assert searchable(indexed, stale) == 0


def test_a_running_bot_holding_the_store_makes_the_change(
    cli_env: dict[str, str],
    saved: dict[str, int],
    database: Database,
    indexed: Path,
    data_dir: Path,
) -> None:
    settings = Settings(data_dir=data_dir, qdrant_url=None)
    store = EdgeStore(indexed, COLLECTION)  # the bot's, locked while it runs
    server = PolicyAdminServer(
        admin_socket(settings), store, default_embedder(), settings, database
    ).start()
    try:
        approved = run(cli_env, "approve", str(saved["stale"]))
        assert approved.exit_code == 0, approved.output
        assert "The running bot holds the policy store; it applies this change." in approved.stderr
        assert store.count(Where(verified=True, verified_id=saved["stale"])) == 1

        retired = run(cli_env, "retire", str(saved["stale"]))
        assert retired.exit_code == 0, retired.output
        assert store.count(Where(verified=True, verified_id=saved["stale"])) == 0
    finally:
        server.stop()
        store.close()
    after = row(database, saved["stale"])
    assert after.status is VerifiedAnswerStatus.RETIRED
    assert after.status_reason == "retired with `dispatchbot verified retire`"


def test_a_policy_store_not_there_leaves_the_row_changed_and_says_what_to_rerun(
    cli_env: dict[str, str], saved: dict[str, int], database: Database
) -> None:
    approved = run(cli_env, "approve", str(saved["stale"]))

    assert approved.exit_code == EXIT_UNAVAILABLE
    assert "nothing ingested yet" in approved.stderr
    assert (
        f"Verified answer #{saved['stale']} is active in the database, but the policy store was "
        f"not updated: run `dispatchbot verified approve {saved['stale']}` again"
    ) in approved.stderr
    assert row(database, saved["stale"]).status is VerifiedAnswerStatus.ACTIVE
    # Retiring needs nothing removed from a store that holds nothing.
    retired = run(cli_env, "retire", str(saved["stale"]))
    assert retired.exit_code == 0, retired.output


def test_an_unreachable_policy_store_leaves_a_retired_answer_unretired(
    cli_env: dict[str, str], saved: dict[str, int], database: Database
) -> None:
    down = {**cli_env, "QDRANT_URL": f"http://127.0.0.1:{free_port()}"}

    retired = run(down, "retire", str(saved["active"]))

    assert retired.exit_code == EXIT_UNAVAILABLE
    assert "cannot use the Qdrant server" in retired.stderr
    assert (
        f"Verified answer #{saved['active']} was not retired: the policy store must drop it "
        f"first: run `dispatchbot verified retire {saved['active']}` again"
    ) in retired.stderr
    # Still active, as still searchable: never retired on record yet served.
    assert row(database, saved["active"]).status is VerifiedAnswerStatus.ACTIVE


def test_an_expired_answer_is_not_approved(
    cli_env: dict[str, str], saved: dict[str, int], database: Database, indexed: Path
) -> None:
    with database.transaction() as session:
        session.get(VerifiedAnswer, saved["stale"]).expires_on = date(2020, 1, 1)  # type: ignore[union-attr]

    result = run(cli_env, "approve", str(saved["stale"]))

    assert result.exit_code == EXIT_USAGE
    assert f"verified answer #{saved['stale']} expired on 2020-01-01" in result.stderr
    assert row(database, saved["stale"]).status is VerifiedAnswerStatus.STALE
    assert searchable(indexed, saved["stale"]) == 0


def test_export_writes_every_answer_as_json_lines(
    cli_env: dict[str, str], saved: dict[str, int]
) -> None:
    exported = run(cli_env, "export")

    assert exported.exit_code == 0, exported.output
    lines = exported.stdout.splitlines()
    rows = [json.loads(line) for line in lines]
    assert [item["id"] for item in rows] == sorted(saved.values())
    assert {item["status"] for item in rows} == {"active", "stale", "retired"}
    assert all(set(item) == JSON_FIELDS for item in rows)
    as_list = json.loads(run(cli_env, "export", "--json").stdout)
    assert as_list == rows
    assert json.loads(run(cli_env, "show", str(saved["active"]), "--json").stdout) == rows[0]


def test_no_answers_yet(cli_env: dict[str, str], database: Database) -> None:
    assert run(cli_env, "list").stdout.strip() == "No verified answers."
    assert run(cli_env, "list", "--status", "stale").stdout.strip() == (
        "No stale verified answers."
    )
    assert json.loads(run(cli_env, "list", "--json").stdout) == []
    assert run(cli_env, "export").stdout == ""
