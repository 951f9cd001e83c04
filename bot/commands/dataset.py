"""`dispatchbot dataset ...`: training data for the next adapter, from the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bot.commands.common import command_database, fail, settings_of
from bot.commands.retrieval import policy_search, policy_store
from serving.dataset_export import (
    ExportReport,
    check_output_dir,
    export_dataset,
    read_seed_file,
)

app = typer.Typer(help="Training data for the next adapter, from the store.", no_args_is_help=True)
console = Console(soft_wrap=True)


@app.command("export")
def export(
    ctx: typer.Context,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Folder for the JSON Lines files and manifest.json: new, empty or a "
            "previous export (replaced).",
        ),
    ],
    seed: Annotated[
        Path | None,
        typer.Option(
            "--seed",
            help="JSON Lines of {question, answer, doc_ids} with [doc-id] citations: SFT rows "
            "for a fresh install, prompted with the sources retrieval finds today.",
        ),
    ] = None,
    heldout_fraction: Annotated[
        float,
        typer.Option(
            "--heldout-fraction",
            min=0.0,
            help="Share of conversations held out for evaluation, at least 0 and below 1.",
        ),
    ] = 0.1,
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """SFT, KTO and DPO rows from rated answers and people's resolutions, personal data
    redacted, split into train and held-out by conversation."""
    settings = settings_of(ctx)
    if heldout_fraction >= 1:
        fail(
            f"--heldout-fraction must be below 1, so some data is left to train on; "
            f"got {heldout_fraction}"
        )
    check_output_dir(out)
    seed_rows = read_seed_file(seed) if seed is not None else None
    with command_database(settings) as database:
        if seed_rows is None:
            report = export_dataset(database, out, heldout_fraction=heldout_fraction)
        else:
            with policy_store(settings) as store:
                report = export_dataset(
                    database,
                    out,
                    heldout_fraction=heldout_fraction,
                    seed_rows=seed_rows,
                    search=policy_search(settings, store),
                    search_k=settings.search_k,
                    context_tokens=settings.llm_context_tokens,
                    reserved_for_answer=settings.llm_max_tokens,
                )
    if as_json:
        typer.echo(report.manifest().model_dump_json(indent=2))
        return
    _print_report(report)


def _print_report(report: ExportReport) -> None:
    table = Table("rows", "train", "held out")
    for kind, sides in report.counts.items():
        table.add_row(kind, str(sides["train"]), str(sides["heldout"]))
    console.print(table)
    if report.skipped:
        skipped = Table("left out", "count")
        for reason, count in report.skipped.items():
            skipped.add_row(reason, str(count))
        console.print(skipped)
    console.print(
        f"{report.redactions} personal details redacted; {report.seed_rows} rows from the seed. "
        f"Written to {report.out_dir} (content hash {report.content_hash[:12]}).",
        highlight=False,
        markup=False,
    )
