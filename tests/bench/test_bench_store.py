"""The store benchmark at its tiniest: every backend and mode measured, the answers really
stored with their citations, and a PostgreSQL that is down reported as skipped."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
from bench_support import run_part
from sqlalchemy import func, select
from vllm_support import free_port

import bench.store_writes as store_writes
from bench.report import BenchResult, write_result
from store.database import Database
from store.models import Answer, Citation, Conversation, Message, MessageRole

ANSWERS = 6
THREADS = 2
TURNS_PER_THREAD = 2


def _run(postgres_url: str) -> BenchResult:
    return run_part(
        store_writes,
        [
            "--answers",
            str(ANSWERS),
            "--threads",
            str(THREADS),
            "--turns-per-thread",
            str(TURNS_PER_THREAD),
            "--postgres-url",
            postgres_url,
        ],
    )


def _rows(result: BenchResult) -> list[dict[str, Any]]:
    (table,) = result.tables
    return [dict(zip(table.columns, row, strict=True)) for row in table.rows]


@pytest.mark.postgres
def test_both_backends_one_writer_and_several(postgres_admin_url: str, tmp_path: Path) -> None:
    result = _run(postgres_admin_url)

    rows = _rows(result)
    assert [(row["backend"], row["mode"], row["writers"]) for row in rows] == [
        ("sqlite", "sequential", 1),
        ("sqlite", "concurrent", THREADS),
        ("postgresql", "sequential", 1),
        ("postgresql", "concurrent", THREADS),
    ]
    for row in rows:
        assert row["answers"] == ANSWERS  # counted back from the database after the run
        assert row["errors"] == 0
        for column in store_writes.COLUMNS[5:]:
            assert 0 < row[column] < math.inf, column
        assert row["logging p50 ms"] <= row["logging p95 ms"] <= row["logging p99 ms"]
    for backend in ("sqlite", "postgresql"):
        assert result.findings[f"{backend}_logging_p50_ms"] > 0
        assert 0 < result.findings[f"{backend}_logging_share_of_answer_pct"] < 100
    assert result.findings["postgresql_over_sqlite_sequential_answers_per_s"] > 0
    assert result.config["prompt_bytes"] > 3000  # a realistic stored prompt
    assert not result.notes

    written = json.loads(write_result(result, time.time(), tmp_path).read_text())
    assert written["tables"][0]["rows"] == [list(row.values()) for row in rows]
    assert written["findings"] == result.findings
    assert written["config"]["durability"]["sqlite"]["journal_mode"] == "wal"


def test_a_postgresql_that_is_down_is_skipped_with_the_reason() -> None:
    result = _run(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/postgres")

    rows = _rows(result)
    assert [(row["backend"], row["mode"]) for row in rows] == [
        ("sqlite", "sequential"),
        ("sqlite", "concurrent"),
        ("postgresql", "skipped"),
    ]
    assert all(math.isnan(value) for value in list(rows[-1].values())[2:])
    [note] = result.notes
    assert note.startswith("postgresql skipped: cannot create a database on postgresql")
    assert "postgresql_logging_p50_ms" not in result.findings
    assert result.findings["sqlite_logging_p50_ms"] > 0


def test_a_turn_is_stored_as_the_assistant_stores_it(database: Database) -> None:
    prompt = store_writes.realistic_prompt()

    writes = store_writes.log_answers(
        database, "any", "concurrent", ANSWERS, THREADS, TURNS_PER_THREAD, prompt
    )

    logged = ANSWERS + THREADS  # one uncounted turn per writer opens its connection
    assert writes.answers_in_database == ANSWERS
    assert len(writes.logging_ms) == ANSWERS
    with database.transaction() as session:
        assert session.scalar(select(func.count(Answer.id))) == logged
        assert session.scalar(select(func.count(Citation.id))) == logged * store_writes.CITATIONS
        roles = session.execute(select(Message.role, func.count()).group_by(Message.role)).all()
        assert dict(roles) == {MessageRole.USER: logged, MessageRole.ASSISTANT: logged}
        # Each writer's turns share threads: its warm-up and first turn, and so on.
        assert session.scalar(select(func.count(Conversation.id))) == THREADS * math.ceil(
            (ANSWERS // THREADS + 1) / TURNS_PER_THREAD
        )
        answer = session.scalars(select(Answer).order_by(Answer.id)).first()
        assert answer is not None
        assert answer.prompt == prompt
        assert [citation.rank for citation in answer.citations] == [1, 2, 3, 4, 5]
