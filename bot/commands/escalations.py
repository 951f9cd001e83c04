"""`dispatchbot escalations ...`: the queue of questions handed to people, and how fast
people picked them up."""

from __future__ import annotations

import json
import statistics
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from bot.commands.common import command_database, settings_of
from store import repository
from store.models import Escalation, EscalationStatus
from store.types import utcnow

app = typer.Typer(help="The questions handed to people: queue and response times.")
console = Console(soft_wrap=True)


@app.command("list")
def list_escalations(
    ctx: typer.Context,
    status: Annotated[
        EscalationStatus | None,
        typer.Option("--status", help="Only open, claimed or resolved escalations."),
    ] = None,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """The escalations, oldest first, with their age and time to claim and resolve."""
    with command_database(settings_of(ctx)) as database, database.transaction() as session:
        rows = [_row(escalation) for escalation in repository.list_escalations(session, status)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        console.print("No escalations." if status is None else f"No {status.value} escalations.")
        return
    table = Table("id", "status", "priority", "trigger", "age", "to claim", "to resolve", "who")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["status"],
            row["priority"],
            row["trigger"],
            _duration(row["age_s"]),
            _duration(row["claim_s"]),
            _duration(row["resolve_s"]),
            row["assignee"] or "",
        )
    console.print(table)


@app.command("stats")
def escalation_stats(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object per trigger."),
) -> None:
    """Per trigger: how many, and the median time to claim and to resolve."""
    with command_database(settings_of(ctx)) as database, database.transaction() as session:
        rows = [_row(escalation) for escalation in repository.list_escalations(session)]
    stats = per_trigger(rows)
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    table = Table("trigger", "count", "open", "median to claim", "median to resolve")
    for trigger, figures in stats.items():
        table.add_row(
            trigger,
            str(figures["count"]),
            str(figures["open"]),
            _duration(figures["median_claim_s"]),
            _duration(figures["median_resolve_s"]),
        )
    console.print(table)


def per_trigger(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    stats: dict[str, dict[str, Any]] = {}
    for trigger in sorted({row["trigger"] for row in rows}):
        mine = [row for row in rows if row["trigger"] == trigger]
        claims = [row["claim_s"] for row in mine if row["claim_s"] is not None]
        resolves = [row["resolve_s"] for row in mine if row["resolve_s"] is not None]
        stats[trigger] = {
            "count": len(mine),
            "open": sum(row["status"] == EscalationStatus.OPEN.value for row in mine),
            "median_claim_s": statistics.median(claims) if claims else None,
            "median_resolve_s": statistics.median(resolves) if resolves else None,
        }
    return stats


def _row(escalation: Escalation) -> dict[str, Any]:
    """The stable `--json` shape of one escalation."""
    return {
        "id": escalation.id,
        "status": escalation.status.value,
        "priority": escalation.priority,
        "trigger": escalation.trigger,
        "channel_id": escalation.conversation.channel_id,
        "thread_ts": escalation.conversation.thread_ts,
        "requested_by": escalation.requested_by,
        "assignee": escalation.assignee,
        "created_at": escalation.created_at.isoformat(),
        "claimed_at": _iso(escalation.claimed_at),
        "resolved_at": _iso(escalation.resolved_at),
        "age_s": round((utcnow() - escalation.created_at).total_seconds()),
        "claim_s": _seconds(escalation.created_at, escalation.claimed_at),
        "resolve_s": _seconds(escalation.created_at, escalation.resolved_at),
        "reminders_sent": escalation.reminders_sent,
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _seconds(start: datetime, end: datetime | None) -> int | None:
    return round((end - start).total_seconds()) if end else None


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"
