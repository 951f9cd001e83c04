"""`dispatchbot retention ...`: delete conversations past the retention window, keeping
their counts per day."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from bot.commands.common import command_database, settings_of
from store.retention import DEFAULT_BATCH_SIZE, PurgeReport, purge_older_than
from store.types import utcnow

app = typer.Typer(
    help="Data retention: delete old conversations, keep their counts per day.",
    no_args_is_help=True,
)
console = Console(soft_wrap=True)
progress_console = Console(stderr=True)  # keeps stdout to the summary, for scripts


@app.command("purge")
def purge(
    ctx: typer.Context,
    older_than: Annotated[
        int,
        typer.Option(
            "--older-than",
            min=1,
            metavar="DAYS",
            help="Delete conversations with no message in the last DAYS days.",
        ),
    ],
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Count what would be deleted; change nothing."
    ),
    batch_size: int = typer.Option(
        DEFAULT_BATCH_SIZE,
        "--batch-size",
        min=1,
        help="Conversations deleted per transaction: smaller batches hold locks for less time.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object instead of a table."),
) -> None:
    """Delete conversations quiet for DAYS days; keep their counts per day.

    Deleted: each conversation with no message in the last DAYS days, with its messages,
    answers, citations, feedback and escalations; Slack event ids older than DAYS days.

    Kept: per UTC day, the counts of conversations, questions, answers, 👍, 👎 and
    escalations (by trigger), in the activity_daily table; every conversation with an open
    or claimed escalation, however old, since a person still owes an answer there; model
    versions. Safe to run while the bot is answering, and on a schedule.
    """
    cutoff = utcnow() - timedelta(days=older_than)
    with command_database(settings_of(ctx)) as database:
        if as_json or not progress_console.is_terminal:
            report = purge_older_than(database, cutoff, dry_run=dry_run, batch_size=batch_size)
        else:
            with progress_console.status("Purging conversations...") as status:

                def show(done: int) -> None:
                    status.update(f"Purging conversations... {done} so far")

                report = purge_older_than(
                    database, cutoff, dry_run=dry_run, batch_size=batch_size, on_batch=show
                )
    if as_json:
        typer.echo(json.dumps(report_json(report, older_than), indent=2))
    else:
        _print_report(report, older_than)


def report_json(report: PurgeReport, older_than: int) -> dict[str, Any]:
    """The stable `--json` shape."""
    return {
        "cutoff": report.cutoff.isoformat(),
        "older_than_days": older_than,
        "dry_run": report.dry_run,
        "removed": report.removed(),
        "kept_unresolved": report.kept_unresolved,
        "days_counted": report.days,
    }


def _print_report(report: PurgeReport, older_than: int) -> None:
    verb = "would delete" if report.dry_run else "deleted"
    console.print(
        f"Rows with no activity in the last {older_than} days "
        f"(before {report.cutoff:%Y-%m-%d %H:%M} UTC):"
    )
    table = Table("table", verb)
    for name, count in report.removed().items():
        table.add_row(name, str(count), end_section=name == "escalations")
    console.print(table)
    counted = "would be added to" if report.dry_run else "added to"
    console.print(f"Their counts for {report.days} UTC day(s) {counted} activity_daily.")
    if report.kept_unresolved:
        console.print(
            f"Kept {report.kept_unresolved} older conversation(s) with an open or claimed "
            "escalation: see `dispatchbot escalations list`."
        )
    if report.dry_run:
        console.print("Dry run: nothing was changed.")
