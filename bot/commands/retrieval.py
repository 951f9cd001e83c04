"""`dispatchbot ingest` and `dispatchbot search`, plus the store access other commands share."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import OperationalError

from bot.commands.common import EXIT_UNAVAILABLE, fail, qdrant_errors_as_ours, settings_of, stderr
from bot.policy_admin import (
    admin_socket,
    ingest_policies,
    keep_verified_current,
    send_ingest,
)
from retrieval.client import open_store
from retrieval.collection import require_collection
from retrieval.embedding import load_embedder_for
from retrieval.errors import StoreBusyError
from retrieval.ingest import FileStatus, IngestReport
from retrieval.search import PolicySearch, SearchMode, SearchResult
from retrieval.store import PolicyStore
from retrieval.versions import local_today
from store.schema import SchemaOutOfDate, open_current_database
from store.settings import Settings

console = Console()

# Fewer chunks than this embed in a few seconds; a bar would only flicker.
PROGRESS_BAR_MIN_CHUNKS = 50
_SNIPPET_CHARS = 400


@contextmanager
def policy_store(settings: Settings) -> Iterator[PolicyStore]:
    """The policy store for this run; retrieval errors end the command with their message."""
    with qdrant_errors_as_ours(), open_store(settings) as store:
        yield store


def through_running_bot(settings: Settings) -> Path:
    """The running bot's socket, announced: it holds the embedded store and applies changes."""
    stderr.print("The running bot holds the policy store; it applies this change.")
    return admin_socket(settings)


def policy_search(settings: Settings, store: PolicyStore) -> PolicySearch:
    """Retrieval as the bot does it: the configured embedding model, checked against the store."""
    embedder = load_embedder_for(settings)
    require_collection(store, embedder.dimension, embedder.name)
    return PolicySearch(store, embedder, settings.search_prefetch_limit)


def verified_kept_current(
    settings: Settings, store: PolicyStore, retired_docs: list[str] | None = None
) -> list[int]:
    """After a policy change: hold back the verified answers it made stale.

    A database that has no verified answers table yet has no verified answers; one that
    cannot be reached is named, since its answers may now be out of date.
    """
    try:
        database = open_current_database(settings.database_url)
    except SchemaOutOfDate:
        return []
    except OperationalError as error:
        fail(
            f"the policy changed, but the database ({error.orig}) could not be reached to "
            "hold back verified answers that cite it: run the command again once it is up",
            EXIT_UNAVAILABLE,
        )
    try:
        return keep_verified_current(database, store, retired_docs or [])
    finally:
        database.dispose()


def parse_as_of(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"--as-of takes a date like 2026-03-01, not {value!r}")


def ingest(
    ctx: typer.Context,
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Policy files or folders (searched recursively for .md, .txt, .html, .pdf)."
        ),
    ],
) -> None:
    """Add policy documents: a changed document becomes a new version, an unchanged one stays.

    Exits with status 1 when some files could not be ingested (the others are).
    """
    settings = settings_of(ctx)
    with qdrant_errors_as_ours():
        try:
            with open_store(settings) as store, _EmbeddingBar() as bar:
                embedder = load_embedder_for(settings)
                report = ingest_policies(paths, store, embedder, settings, bar.update)
                stale = verified_kept_current(settings, store)
        except StoreBusyError:
            report, stale = send_ingest(through_running_bot(settings), paths)
    _print_report(report, settings.qdrant_collection)
    if stale:
        numbers = ", ".join(f"#{number}" for number in stale)
        console.print(
            f"Verified answers {numbers} cite a changed policy: held back until re-approved "
            "(`dispatchbot verified approve ID`) or retired.",
            highlight=False,
        )
    if report.count(FileStatus.SKIPPED):
        raise typer.Exit(1)


def search(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="The question, in plain words."),
    k: int | None = typer.Option(None, "-k", min=1, help="How many results (default: SEARCH_K)."),
    as_of: str | None = typer.Option(
        None, "--as-of", metavar="DATE", help="Search the policy in force on DATE (YYYY-MM-DD)."
    ),
    mode: Annotated[
        SearchMode,
        typer.Option("--mode", case_sensitive=False, help="hybrid, dense or sparse."),
    ] = SearchMode.HYBRID,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of results."),
) -> None:
    """Find the policy sections that answer QUERY, from the versions in force today."""
    settings = settings_of(ctx)
    day = parse_as_of(as_of)
    with policy_store(settings) as store:
        searcher = policy_search(settings, store)
        results = searcher.search(query, k=k or settings.search_k, mode=mode, as_of=day)
    if as_json:
        typer.echo(json.dumps([result.to_json() for result in results], indent=2))
    else:
        _print_results(results, day or local_today())


class _EmbeddingBar:
    """A progress bar on stderr while chunks are embedded, when there are enough of them."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> _EmbeddingBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._progress:
            self._progress.stop()

    def update(self, done: int, total: int) -> None:
        if self._progress is None:
            if total < PROGRESS_BAR_MIN_CHUNKS:
                return
            self._progress = Progress(
                TextColumn("embedding chunks"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=stderr,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("embed", total=total)
        assert self._task is not None
        self._progress.update(self._task, completed=done)


_STATUS_STYLE = {
    FileStatus.NEW: "green",
    FileStatus.UPDATED: "cyan",
    FileStatus.UNCHANGED: "dim",
    FileStatus.REINDEXED: "yellow",
    FileStatus.SKIPPED: "red",
}


def _print_report(report: IngestReport, collection: str) -> None:
    table = Table("status", "doc_id", "version", "chunks", "file", "note")
    table.columns[1].no_wrap = True
    table.columns[4].overflow = "fold"
    for outcome in report.outcomes:
        table.add_row(
            Text(outcome.status.value, style=_STATUS_STYLE[outcome.status]),
            Text(outcome.doc_id or ""),
            "" if outcome.version is None else str(outcome.version),
            str(outcome.chunks) if outcome.chunks else "",
            Text(outcome.path),
            Text(outcome.reason),
        )
    console.print(table)
    counts = ", ".join(
        f"{report.count(status)} {status.value}" for status in FileStatus if report.count(status)
    )
    console.print(
        f"{len(report.outcomes)} files: {counts}; "
        f"{report.chunks_written} chunks written to collection {collection!r}.",
        highlight=False,
        markup=False,
    )


def _print_results(results: list[SearchResult], day: date) -> None:
    if not results:
        console.print(f"No policy text in force on {day.isoformat()} matches that question.")
        return
    for rank, result in enumerate(results, start=1):
        window = f"in force from {result.effective_from.isoformat()}"
        if result.effective_to:
            window += f" to {result.effective_to.isoformat()}"
        heading = Text(f"{rank}. ", style="bold")
        # The section path starts with the title unless the document's headings do not.
        cited = result.section
        if not cited.startswith(result.title):
            cited = f"{result.title} — {cited}"
        heading.append(cited, style="bold")
        heading.append(f"  (v{result.version}, {window}, score {result.score:.3f})", style="dim")
        console.print(heading)
        console.print(Text(_indented_snippet(result.text)))
        console.print(Text(f"   {result.doc_id} · {result.source}", style="dim"))


def _indented_snippet(text: str) -> str:
    """The start of a chunk, line breaks kept (tables stay readable), indented under its rank."""
    snippet = (
        text if len(text) <= _SNIPPET_CHARS else text[:_SNIPPET_CHARS].rsplit(" ", 1)[0] + " …"
    )
    return "\n".join(f"   {line}" for line in snippet.splitlines() if line.strip())
