"""`dispatchbot verified ...`: people's verified answers, reviewed from the command line.

The database row is the record; the policy store holds the searchable copy of each active
one. They change in the order bot/verified.py keeps for the Home tab's buttons: approving
records first, then indexes; retiring drops the searchable copy first, then records, so a
retired answer is never served. When the policy store cannot be reached the command says
what was and was not changed, and that running it again finishes the job. While a bot holds
the embedded store, the change goes through it (bot/policy_admin.py).
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bot.commands.common import command_database, fail, fail_with, settings_of
from bot.commands.retrieval import policy_search, qdrant_errors_as_ours, through_running_bot
from bot.policy_admin import send_verified_index, send_verified_unindex
from bot.verified import entry_of
from retrieval.client import open_store
from retrieval.errors import StoreBusyError
from retrieval.verified import index_verified, unindex_verified
from retrieval.versions import local_today
from store import verified_answers
from store.errors import DispatchbotError
from store.models import VerifiedAnswer, VerifiedAnswerStatus

app = typer.Typer(
    help="People's verified answers: list, show, approve, retire and export them.",
    no_args_is_help=True,
)
console = Console(soft_wrap=True)

_QUESTION_CHARS = 70
DEFAULT_RETIRE_REASON = "retired with `dispatchbot verified retire`"


def _operator() -> str:
    """Who reviews when --by is not given: the account running the command."""
    try:
        return getpass.getuser()
    except OSError:  # no login name (some containers)
        return "cli"


@app.command("list")
def list_verified(
    ctx: typer.Context,
    status: Annotated[
        VerifiedAnswerStatus | None,
        typer.Option("--status", help="Only active, stale or retired answers."),
    ] = None,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """The verified answers, oldest first, with their status and how often they were reused."""
    with command_database(settings_of(ctx)) as database, database.transaction() as session:
        rows = [as_json_row(verified) for verified in verified_answers.listed(session, status)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        console.print(
            "No verified answers." if status is None else f"No {status.value} verified answers."
        )
        return
    table = Table("id", "status", "reused", "author", "audience", "created", "expires", "question")
    for column in table.columns[:7]:
        column.no_wrap = True
    for row in rows:
        table.add_row(
            str(row["id"]),
            Text(row["status"], style=_STATUS_STYLE[row["status"]]),
            str(row["reuse_count"]),
            Text(row["author"]),
            Text(row["audience"]),
            _local(row["created_at"])[:10],
            row["expires_on"] or "",
            Text(_shortened(row["question"])),
        )
    console.print(table)


@app.command("show")
def show_verified(
    ctx: typer.Context,
    verified_id: int = typer.Argument(..., help="The verified answer (see `verified list`)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
) -> None:
    """One verified answer in full.

    Its question and answer, who wrote it, the escalation it came from, who may see it, the
    policy versions it rests on, its status and why, its review, expiry and reuse."""
    with command_database(settings_of(ctx)) as database, database.transaction() as session:
        row = as_json_row(_get(session, verified_id))
    if as_json:
        typer.echo(json.dumps(row, indent=2, ensure_ascii=False))
        return
    table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    status = Text(row["status"], style=_STATUS_STYLE[row["status"]])
    if row["status_reason"]:
        status.append(f" ({row['status_reason']})", style="default")
    refs = ", ".join(
        f"{ref.get('title') or ref['doc_id']} ({ref['doc_id']} v{ref['version']})"
        for ref in row["policy_refs"]
    )
    reviewed = _local(row["reviewed_at"]) if row["reviewed_at"] else "never"
    if row["reviewed_by"]:
        reviewed += f" by {row['reviewed_by']}"
    reused = f"{row['reuse_count']} times"
    if row["last_reused_at"]:
        reused += f", last on {_local(row['last_reused_at'])}"
    source = f"escalation #{row['escalation_id']}" if row["escalation_id"] is not None else "-"
    for label, value in (
        ("id", str(row["id"])),
        ("status", status),
        ("question", row["question"]),
        ("answer", row["answer"]),
        ("author", row["author"]),
        ("source", source),
        ("audience", row["audience"]),
        ("policies", refs or "none cited"),
        ("created", _local(row["created_at"])),
        ("reviewed", reviewed),
        ("expires", row["expires_on"] or "never"),
        ("reused", reused),
    ):
        table.add_row(label, value if isinstance(value, Text) else Text(value))
    console.print(table)


@app.command("approve")
def approve_verified(
    ctx: typer.Context,
    verified_id: int = typer.Argument(..., help="The verified answer (see `verified list`)."),
    by: str | None = typer.Option(
        None, "--by", help="Who checked it against today's policy (default: this account)."
    ),
) -> None:
    """Put a verified answer (back) in service: checked against the policy in force today.

    It is marked active, then added to the policy store again, so the next matching
    question gets it. Approving an active answer re-indexes it.
    """
    settings = settings_of(ctx)
    reviewer = by or _operator()
    with command_database(settings) as database, database.transaction() as session:
        verified = _get(session, verified_id)
        today = local_today()
        if verified.expires_on is not None and verified.expires_on <= today:
            fail(
                f"verified answer #{verified_id} expired on {verified.expires_on.isoformat()}; "
                "it cannot answer again. Save a new one from the next escalation of it"
            )
        entry = entry_of(verified_answers.approve(session, verified_id, reviewer))
    approved_but = (
        f"Verified answer #{verified_id} is active in the database, but the policy store was "
        "not updated"
    )
    with _policy_store_step(approved_but, f"approve {verified_id}"):
        try:
            with open_store(settings) as store:
                index_verified(store, policy_search(settings, store).embedder, entry)
        except StoreBusyError:
            send_verified_index(through_running_bot(settings), entry)
    console.print(
        f"Verified answer #{verified_id} approved by {reviewer}: it answers matching "
        "questions again.",
        highlight=False,
        markup=False,
    )


@app.command("retire")
def retire_verified(
    ctx: typer.Context,
    verified_id: int = typer.Argument(..., help="The verified answer (see `verified list`)."),
    reason: str = typer.Option(
        DEFAULT_RETIRE_REASON, "--reason", help="Why it is withdrawn, in words."
    ),
    by: str | None = typer.Option(None, "--by", help="Who retires it (default: this account)."),
) -> None:
    """Withdraw a verified answer: removed from the policy store, then marked retired.

    Search drops it first, so a retired answer is never served."""
    settings = settings_of(ctx)
    reviewer = by or _operator()
    with command_database(settings) as database:
        with database.transaction() as session:
            _get(session, verified_id)
        not_retired = (
            f"Verified answer #{verified_id} was not retired: the policy store must drop it first"
        )
        with _policy_store_step(not_retired, f"retire {verified_id}"):
            try:
                with open_store(settings) as store:
                    if store.exists():  # nothing ingested: nothing to remove
                        unindex_verified(store, verified_id)
            except StoreBusyError:
                send_verified_unindex(through_running_bot(settings), verified_id)
        with database.transaction() as session:
            verified_answers.retire(session, verified_id, reviewer, reason)
    console.print(
        f"Verified answer #{verified_id} retired by {reviewer}: {reason}.",
        highlight=False,
        markup=False,
    )


@app.command("export")
def export_verified(
    ctx: typer.Context,
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON list instead of JSON Lines."
    ),
) -> None:
    """Every verified answer, whatever its status, as JSON Lines, for review or backup.

    One object a line, as `show --json` prints it:
    `dispatchbot verified export > verified.jsonl`."""
    with command_database(settings_of(ctx)) as database, database.transaction() as session:
        rows = [as_json_row(verified) for verified in verified_answers.listed(session)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for row in rows:
        typer.echo(json.dumps(row, ensure_ascii=False))


def as_json_row(verified: VerifiedAnswer) -> dict[str, Any]:
    """The stable `--json` shape of one verified answer."""
    return {
        "id": verified.id,
        "status": verified.status.value,
        "status_reason": verified.status_reason,
        "question": verified.question,
        "answer": verified.answer,
        "author": verified.author,
        "escalation_id": verified.escalation_id,
        "audience": verified.audience,
        "policy_refs": [dict(ref) for ref in verified.policy_refs],
        "created_at": verified.created_at.isoformat(),
        "reviewed_at": _iso(verified.reviewed_at),
        "reviewed_by": verified.reviewed_by,
        "expires_on": _iso(verified.expires_on),
        "reuse_count": verified.reuse_count,
        "last_reused_at": _iso(verified.last_reused_at),
    }


def _get(session: Any, verified_id: int) -> VerifiedAnswer:
    return verified_answers.get(session, verified_id)


@contextmanager
def _policy_store_step(outcome: str, command: str) -> Iterator[None]:
    """The policy store's half of a change: when it fails, the store's error, then what that
    left (`outcome`) and what to run again."""
    try:
        with qdrant_errors_as_ours():
            yield
    except DispatchbotError as error:
        fail_with(
            error, f"\n{outcome}: run `dispatchbot verified {command}` again once it is available."
        )


def _iso(moment: datetime | date | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _local(moment: str) -> str:
    """A stored time as the reader's clock shows it."""
    return datetime.fromisoformat(moment).astimezone().strftime("%Y-%m-%d %H:%M")


def _shortened(question: str) -> str:
    flat = " ".join(question.split())
    return flat if len(flat) <= _QUESTION_CHARS else flat[: _QUESTION_CHARS - 1] + "…"


_STATUS_STYLE = {
    VerifiedAnswerStatus.ACTIVE.value: "green",
    VerifiedAnswerStatus.STALE.value: "yellow",
    VerifiedAnswerStatus.RETIRED.value: "dim",
}
