"""`dispatchbot documents ...`: the stored policy documents, their versions, and deletion."""

from __future__ import annotations

import json
from datetime import date

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bot.commands.common import fail, settings_of
from bot.commands.retrieval import (
    policy_store,
    qdrant_errors_as_ours,
    through_running_bot,
    verified_kept_current,
)
from bot.policy_admin import send_delete
from retrieval.client import open_store
from retrieval.collection import require_collection
from retrieval.errors import StoreBusyError
from retrieval.versions import StoredVersion, delete_versions, local_today, read_versions

app = typer.Typer(help="List and delete stored policy documents.", no_args_is_help=True)
console = Console()


def version_state(version: StoredVersion, day: date) -> str:
    """'in force', 'scheduled' (starts later) or 'superseded' (ended) on `day`."""
    if version.in_force_on(day):
        return "in force"
    return "scheduled" if day < version.effective_from else "superseded"


@app.command("list")
def list_documents(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list, one object a version."),
) -> None:
    """Every stored version of every document, and whether it is in force today."""
    settings = settings_of(ctx)
    with policy_store(settings) as store:
        require_collection(store)
        registry = read_versions(store)
    today = local_today()
    versions = [version for doc_id in sorted(registry) for version in registry[doc_id]]
    if as_json:
        rows = [_as_json(version, today) for version in versions]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("doc_id", "version", "from", "to", "state", "audience", "chunks", "title")
    for column in table.columns[:5]:
        column.no_wrap = True
    for version in versions:
        state = version_state(version, today)
        table.add_row(
            Text(version.doc_id),
            str(version.version),
            version.effective_from.isoformat(),
            version.effective_to.isoformat() if version.effective_to else "",
            Text(state, style="green" if state == "in force" else "dim"),
            Text(version.audience),
            str(version.chunk_count),
            Text(version.title),
        )
    console.print(table)


@app.command("delete")
def delete_document(
    ctx: typer.Context,
    doc_id: str = typer.Argument(..., help="The document to delete (see `documents list`)."),
    version: int | None = typer.Option(
        None, "--version", min=1, help="Delete only this version; the one before it reopens."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete a document with all its versions (or one version) from the collection."""
    settings = settings_of(ctx)
    what = f"version {version} of {doc_id!r}" if version else f"{doc_id!r} and all its versions"
    if not yes:
        typer.confirm(f"Delete {what}?", abort=True)
    with qdrant_errors_as_ours():
        try:
            with open_store(settings) as store:
                require_collection(store)
                deleted = delete_versions(store, doc_id, version)
                verified_kept_current(settings, store, [] if version else [doc_id])
        except StoreBusyError:
            deleted = send_delete(through_running_bot(settings), doc_id, version)
    if not deleted:
        missing = f"document {doc_id!r}" + (f" version {version}" if version else "")
        fail(
            f"no {missing} in collection {settings.qdrant_collection!r}; "
            "see `dispatchbot documents list`"
        )
    console.print(
        f"Deleted {doc_id} version(s) {', '.join(map(str, deleted))}.",
        highlight=False,
        markup=False,
    )


def _as_json(version: StoredVersion, today: date) -> dict[str, object]:
    return {
        "doc_id": version.doc_id,
        "title": version.title,
        "version": version.version,
        "effective_from": version.effective_from.isoformat(),
        "effective_to": version.effective_to.isoformat() if version.effective_to else None,
        "audience": version.audience,
        "tags": list(version.tags),
        "state": version_state(version, today),
        "chunks": version.chunk_count,
        "source": version.source,
        "ingested_at": version.ingested_at.isoformat(),
    }
