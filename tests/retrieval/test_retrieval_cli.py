"""The real `dispatchbot` commands on the embedded policy store in a temporary data dir."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from retrieval_support import write
from typer.testing import CliRunner, Result

from bot.cli import app
from bot.commands.common import EXIT_UNAVAILABLE
from retrieval.collection import ensure_collection
from retrieval.edge_store import EdgeStore
from retrieval.embedding import Embedder

APPROVAL = """---
doc_id: load-approval
title: Load Approval Thresholds
version: 3
effective_from: 2026-03-01
audience: dispatch
---
# Load Approval Thresholds

## Approval by weight

From 26,001 to 40,000 lb the shift lead on duty approves the load.
"""
APPROVAL_V2 = (
    APPROVAL.replace("version: 3", "version: 2")
    .replace("effective_from: 2026-03-01", "effective_from: 2025-06-01")
    .replace("26,001 to 40,000", "24,001 to 38,000")
)
Run = Callable[..., Result]

REEFER = """<html><head><title>Reefer Temperature Control</title></head><body>
<h1>Reefer Temperature Control</h1><h2>Setpoints</h2>
<p>Ice cream travels at minus 20 degrees Fahrenheit.</p></body></html>
"""


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "var"


@pytest.fixture
def run(data_dir: Path, embedder: Embedder) -> Run:
    """Invoke `dispatchbot ARGS...` in process; the embedder fixture warms the model cache."""
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        env = {"DISPATCHBOT_DATA_DIR": str(data_dir), "QDRANT_URL": "", "COLUMNS": "200"}
        return runner.invoke(app, list(args), env=env)

    return invoke


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    write(folder, "load-approval.md", APPROVAL)
    write(folder, "archive/load-approval-v2.md", APPROVAL_V2)
    write(folder, "reefer.html", REEFER)
    return folder


def test_ingest_search_list_and_delete(run: Run, policies: Path) -> None:
    ingested = run("ingest", str(policies))
    assert ingested.exit_code == 0, ingested.output
    assert "3 files: 2 new, 1 updated; 3 chunks written to collection 'policies'" in ingested.stdout

    again = run("ingest", str(policies))
    assert again.exit_code == 0
    assert "3 files: 3 unchanged; 0 chunks written" in again.stdout

    found = run("search", "who approves a 30,000 lb load", "-k", "1", "--json")
    assert found.exit_code == 0, found.output
    (top,) = json.loads(found.stdout)
    assert {"doc_id", "title", "section", "version", "score", "text", "source"} <= set(top)
    assert (top["doc_id"], top["version"], top["section"]) == (
        "load-approval",
        3,
        "Load Approval Thresholds > Approval by weight",
    )
    assert top["effective_from"] == "2026-03-01"

    earlier = run("search", "who approves a 30,000 lb load", "-k", "1", "--as-of", "2025-12-01")
    assert earlier.exit_code == 0
    assert "v2, in force from 2025-06-01 to 2026-03-01" in earlier.stdout
    assert "24,001 to 38,000" in earlier.stdout

    for mode in ("dense", "sparse", "hybrid"):
        moded = run("search", "ice cream temperature", "--mode", mode, "-k", "1", "--json")
        assert json.loads(moded.stdout)[0]["doc_id"] == "reefer", mode

    listed = json.loads(run("documents", "list", "--json").stdout)
    assert [(row["doc_id"], row["version"], row["state"]) for row in listed] == [
        ("load-approval", 2, "superseded"),
        ("load-approval", 3, "in force"),
        ("reefer", 1, "in force"),
    ]

    deleted = run("documents", "delete", "reefer", "--yes")
    assert deleted.exit_code == 0
    assert "Deleted reefer version(s) 1." in deleted.stdout
    remaining = json.loads(run("documents", "list", "--json").stdout)
    assert {row["doc_id"] for row in remaining} == {"load-approval"}
    unknown = run("documents", "delete", "reefer", "--yes")
    assert unknown.exit_code == 2
    assert "no document 'reefer'" in unknown.stderr


def test_ingest_reports_a_bad_file_by_name_and_ingests_the_rest(run: Run, policies: Path) -> None:
    broken = write(policies, "broken.pdf", "this is not a PDF")

    result = run("ingest", str(policies))

    assert result.exit_code == 1
    assert str(broken) in result.stdout
    assert "not a PDF" in result.stdout
    assert "4 files: 2 new, 1 updated, 1 skipped;" in result.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("search", "load"), 3, "nothing ingested yet into collection 'policies': run "),
        (("documents", "list"), 3, "`dispatchbot ingest examples/policies`"),
        (("ingest", "no/such/folder"), 2, "no/such/folder: no such file or folder"),
        (("search", "load", "--as-of", "yesterday"), 2, "--as-of takes a date like 2026-03-01"),
    ],
)
def test_user_errors_say_what_to_do_without_a_traceback(
    run: Run,
    args: tuple[str, ...],
    code: int,
    message: str,
) -> None:
    result = run(*args)

    assert result.exit_code == code
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.output


def test_folder_without_policies_is_an_error(run: Run, tmp_path: Path) -> None:
    write(tmp_path / "empty", "notes.rst", "nothing to see")

    result = run("ingest", str(tmp_path / "empty"))

    assert result.exit_code == 2
    assert (
        "no policy files in this folder (supported: .htm, .html, .markdown, .md, .pdf"
        in " ".join(result.stderr.split())
    )


def test_a_store_another_process_holds_names_the_folder_and_the_way_out(
    run: Run, data_dir: Path
) -> None:
    edge = data_dir / "qdrant" / "edge"
    holder = EdgeStore(edge, "policies")  # as the running bot would
    try:
        result = run("search", "load")
    finally:
        holder.close()

    assert result.exit_code == EXIT_UNAVAILABLE
    stderr = " ".join(result.stderr.split())
    assert f"dispatchbot process {os.getpid()} holds the policy store at {edge}" in stderr
    assert "QDRANT_URL set to a server" in stderr
    assert "Traceback" not in result.output
    released = run("search", "load")  # the lock went with the holder
    assert "nothing ingested yet" in " ".join(released.stderr.split())


def test_collection_built_for_another_model_fails_fast(run: Run, data_dir: Path) -> None:
    other = EdgeStore(data_dir / "qdrant" / "edge", "policies")
    ensure_collection(other, 768, "some/768-dim-model")
    other.close()

    result = run("search", "load")

    assert result.exit_code == 2
    assert "has 768-dim 'dense' vectors but the embedding model gives 384" in " ".join(
        result.stderr.split()
    )


def test_evaluate_retrieval_prints_the_three_modes(
    run: Run, policies: Path, tmp_path: Path
) -> None:
    run("ingest", str(policies))
    labelled = tmp_path / "set.jsonl"
    labelled.write_text(
        json.dumps(
            {"question": "ice cream temperature", "doc_id": "reefer", "section": "Setpoints"}
        )
        + "\n"
        + json.dumps(
            {
                "question": "who approves 30,000 lb",
                "doc_id": "load-approval",
                "section": "Approval by weight",
            }
        )
        + "\n"
    )

    table = run("evaluate", "retrieval", "--file", str(labelled))
    as_json = run("evaluate", "retrieval", "--file", str(labelled), "--json")

    assert table.exit_code == 0, table.output
    for header in ("mode", "recall@1", "recall@5", "MRR@10", "hybrid", "dense", "sparse"):
        assert header in table.stdout
    report = json.loads(as_json.stdout)
    assert report["questions"] == 2
    assert set(report["modes"]) == {"hybrid", "dense", "sparse"}
    assert report["modes"]["hybrid"]["recall@5"] == 1.0
