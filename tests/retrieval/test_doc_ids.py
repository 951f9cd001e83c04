"""doc_ids as companies write them ("HL-OPS-201", "POL 7.2", "HR/Leave-03"): kept as written,
matched without regard to case, on both engines and through the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from retrieval_support import SAMPLE_POLICIES, Ingest, WriteDoc, write
from typer.testing import CliRunner

from bot.cli import app
from retrieval.documents import DOC_ID_MAX_LENGTH
from retrieval.embedding import Embedder
from retrieval.ingest import FileStatus
from retrieval.loaders import collect_files
from retrieval.search import PolicySearch
from retrieval.store import PolicyStore
from retrieval.versions import delete_versions, read_versions

BODY = """# Yard Operations

## Gate hours

The north gate of the yard is open from 5 am to 11 pm; trucks wait in lane 3 after hours.
"""
CHANGED = BODY.replace("lane 3", "lane 4")


def with_id(doc_id: str, body: str = BODY) -> str:
    return f"---\ndoc_id: {doc_id}\n---\n{body}"


def test_an_id_with_capitals_is_kept_as_written(
    ingest: Ingest, store: PolicyStore, policy_search: PolicySearch, write_doc: WriteDoc
) -> None:
    report = ingest(write_doc("yard.md", with_id("HL-OPS-201")))

    assert [(o.status, o.doc_id, o.version) for o in report.outcomes] == [
        (FileStatus.NEW, "HL-OPS-201", 1)
    ]
    registry = read_versions(store)
    assert list(registry) == ["HL-OPS-201"]
    assert [v.doc_id for v in registry["HL-OPS-201"]] == ["HL-OPS-201"]
    # Looked up in any case, listed as written.
    assert list(read_versions(store, "hl-ops-201")) == ["HL-OPS-201"]
    results = policy_search.search("when is the north gate open", k=3)
    assert results
    assert {r.doc_id for r in results} == {"HL-OPS-201"}


@pytest.mark.parametrize("doc_id", ["POL 7.2", "HR/Leave-03", "x" * DOC_ID_MAX_LENGTH])
def test_spaces_dots_slashes_and_long_ids_are_accepted(
    ingest: Ingest, store: PolicyStore, write_doc: WriteDoc, doc_id: str
) -> None:
    report = ingest(write_doc("policy.md", with_id(doc_id)))

    assert [(o.status, o.doc_id) for o in report.outcomes] == [(FileStatus.NEW, doc_id)]
    assert list(read_versions(store)) == [doc_id]
    assert list(read_versions(store, doc_id.upper())) == [doc_id]


def test_an_id_yaml_reads_as_a_number_is_kept_as_text(
    ingest: Ingest, store: PolicyStore, write_doc: WriteDoc
) -> None:
    report = ingest(write_doc("policy.md", with_id("7.2")))

    assert [(o.status, o.doc_id) for o in report.outcomes] == [(FileStatus.NEW, "7.2")]
    assert list(read_versions(store)) == ["7.2"]


@pytest.mark.parametrize(
    "doc_id",
    ['"HL\\tOPS-201"', "x" * (DOC_ID_MAX_LENGTH + 1)],
    ids=["tab", "too-long"],
)
def test_an_id_with_a_tab_or_too_long_is_skipped_saying_what_is_allowed(
    ingest: Ingest, store: PolicyStore, write_doc: WriteDoc, doc_id: str
) -> None:
    bad = write_doc("bad.md", with_id(doc_id))
    good = write_doc("good.md", with_id("HL-OPS-201"))

    report = ingest(bad, good)

    skipped, ingested = report.outcomes
    assert (skipped.path, skipped.status, skipped.doc_id) == (str(bad), FileStatus.SKIPPED, None)
    assert "doc_id" in skipped.reason
    assert f"printable text of at most {DOC_ID_MAX_LENGTH} characters" in skipped.reason
    assert "without tabs or line breaks" in skipped.reason
    assert "such as HL-OPS-201" in skipped.reason
    assert ingested.status is FileStatus.NEW
    assert list(read_versions(store)) == ["HL-OPS-201"]


def test_delete_finds_the_document_whatever_the_case(
    ingest: Ingest, store: PolicyStore, policy_search: PolicySearch, write_doc: WriteDoc
) -> None:
    ingest(write_doc("yard.md", with_id("HL-OPS-201")))
    ingest(write_doc("other.md", with_id("HL-OPS-202", "# Other\n\nParking rules for the yard.")))

    assert delete_versions(store, "hl-ops-201") == [1]

    assert list(read_versions(store)) == ["HL-OPS-202"]
    assert {r.doc_id for r in policy_search.search("north gate hours", k=10)} == {"HL-OPS-202"}
    assert delete_versions(store, "HL-OPS-201") == []


def test_an_id_in_another_case_is_a_new_version_of_the_same_document(
    ingest: Ingest, store: PolicyStore, policy_search: PolicySearch, write_doc: WriteDoc
) -> None:
    ingest(write_doc("yard.md", with_id("HL-OPS-201")))

    report = ingest(write_doc("yard-lower.md", with_id("hl-ops-201", CHANGED)))

    (outcome,) = report.outcomes
    assert (outcome.status, outcome.doc_id, outcome.version) == (
        FileStatus.UPDATED,
        "HL-OPS-201",
        2,
    )
    assert "'hl-ops-201' is 'HL-OPS-201'" in outcome.reason
    assert "ids that differ only in case are one document" in outcome.reason
    registry = read_versions(store)
    assert list(registry) == ["HL-OPS-201"]
    assert [(v.doc_id, v.version) for v in registry["HL-OPS-201"]] == [
        ("HL-OPS-201", 1),
        ("HL-OPS-201", 2),
    ]
    (top,) = policy_search.search("where do trucks wait after hours", k=1)
    assert (top.doc_id, top.version) == ("HL-OPS-201", 2)
    assert "lane 4" in top.text


def test_the_same_content_under_another_case_is_unchanged(
    ingest: Ingest, store: PolicyStore, write_doc: WriteDoc
) -> None:
    ingest(write_doc("yard.md", with_id("HL-OPS-201")))

    report = ingest(write_doc("yard-lower.md", with_id("hl-ops-201")))

    (outcome,) = report.outcomes
    assert (outcome.status, outcome.doc_id, outcome.version) == (
        FileStatus.UNCHANGED,
        "HL-OPS-201",
        1,
    )
    assert "ids that differ only in case are one document" in outcome.reason
    assert [v.version for v in read_versions(store)["HL-OPS-201"]] == [1]


SAMPLE_IDS = [
    "accident-procedure",
    "border-crossing",
    "breakdown-procedure",
    "cargo-claims",
    "cargo-securement",
    "claims-authority",
    "customer-communication",
    "detention-layover",
    "driver-check-in-eld",
    "driver-discipline",
    "escalation-contacts",
    "fuel-card",
    "hazmat-handling",
    "hours-of-service",
    "load-approval",
    "reefer-temperature",
    "route-deviations",
    "service-slas",
    "ticket-priorities",
]


def test_the_sample_corpus_keeps_its_ids(ingest: Ingest, store: PolicyStore) -> None:
    if not SAMPLE_POLICIES.is_dir():
        pytest.skip("examples/policies is not there")

    report = ingest(*collect_files([SAMPLE_POLICIES]))

    assert report.count(FileStatus.SKIPPED) == 0, report.outcomes
    assert all(outcome.reason == "" for outcome in report.outcomes)
    assert sorted(read_versions(store)) == SAMPLE_IDS


def test_the_delete_command_finds_the_document_whatever_the_case(
    tmp_path: Path, embedder: Embedder
) -> None:
    del embedder  # warms load_embedder's cache for the commands below
    env = {"DISPATCHBOT_DATA_DIR": str(tmp_path / "var"), "QDRANT_URL": "", "COLUMNS": "200"}
    runner = CliRunner()
    policies = tmp_path / "policies"
    write(policies, "yard.md", with_id("HL-OPS-201"))
    write(policies, "other.md", with_id("POL 7.2", "# Other\n\nParking rules for the yard."))
    assert runner.invoke(app, ["ingest", str(policies)], env=env).exit_code == 0

    deleted = runner.invoke(app, ["documents", "delete", "hl-ops-201", "--yes"], env=env)

    assert deleted.exit_code == 0, deleted.output
    assert "version(s) 1." in deleted.stdout
    listed = json.loads(runner.invoke(app, ["documents", "list", "--json"], env=env).stdout)
    assert [(row["doc_id"], row["version"]) for row in listed] == [("POL 7.2", 1)]
    again = runner.invoke(app, ["documents", "delete", "HL-OPS-201", "--yes"], env=env)
    assert again.exit_code == 2
    assert "no document 'HL-OPS-201'" in again.stderr
