"""`dispatchbot gaps`: the questions people keep asking that no policy or verified answer
covers, per week, each question counted once however it was worded."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bot.commands.common import command_database, fail, settings_of
from retrieval.embedding import load_embedder_for
from store.gaps import GapCluster, WeekGaps, coverage_gaps

console = Console(soft_wrap=True)

DEFAULT_DAYS = 28
DEFAULT_LIMIT = 10


def gaps(
    ctx: typer.Context,
    since: str | None = typer.Option(
        None,
        "--since",
        metavar="DATE",
        help=f"Questions asked on or after DATE (YYYY-MM-DD; default: {DEFAULT_DAYS} days ago).",
    ),
    limit: int = typer.Option(
        DEFAULT_LIMIT, "--limit", min=1, help="The most asked questions shown per week."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print a JSON list of {week, clusters: [...]}, oldest week first."
    ),
) -> None:
    """Questions no policy or verified answer covered, per ISO week, the most asked first.

    They were escalated, or voted down, because the bot could not answer them from policy:
    what to write a policy or a verified answer for next. Paraphrases count as one question
    (embedding cosine of 0.80 or more); a question stops counting once an active verified
    answer covers it."""
    settings = settings_of(ctx)
    zone = datetime.now(UTC).astimezone().tzinfo
    first_day = _since(since) or datetime.now(zone).date() - timedelta(days=DEFAULT_DAYS)
    start = datetime.combine(first_day, time(), tzinfo=zone)
    embedder = None

    def embed(texts: Sequence[str]) -> list[list[float]]:
        nonlocal embedder
        if embedder is None:  # seconds to load: only when there is something to cluster
            embedder = load_embedder_for(settings)
        return embedder.encode_documents(texts, batch_size=settings.embedding_batch_size)

    with command_database(settings) as database, database.transaction() as session:
        weeks = coverage_gaps(session, start, embed, limit=limit)
    if as_json:
        typer.echo(json.dumps([week.to_json() for week in weeks], indent=2, ensure_ascii=False))
        return
    if not weeks:
        console.print(
            f"No uncovered questions since {first_day.isoformat()}.",
            highlight=False,
            markup=False,
        )
        return
    for week in weeks:
        console.print(_week_table(week))


def _week_table(week: WeekGaps) -> Table:
    title = f"{week.week} (from {week.starts_on.isoformat()})"
    table = Table("asked", "question", "also asked as", "first", "last", title=title)
    table.columns[0].justify = "right"
    for column in table.columns[3:]:
        column.no_wrap = True
    for cluster in week.clusters:
        table.add_row(
            str(cluster.count),
            Text(cluster.question),
            Text("\n".join(cluster.examples)),
            _when(cluster, first=True),
            _when(cluster, first=False),
        )
    return table


def _when(cluster: GapCluster, *, first: bool) -> str:
    moment = cluster.first_asked if first else cluster.last_asked
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def _since(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"--since takes a date like 2026-03-01, not {value!r}")
