"""`dispatchbot docs`: the documentation pages written from the code and the measurements.

docs/configuration.md comes from the settings' own descriptions (store/settings.py) and
docs/benchmarks.md from bench/results/*.json, so neither can drift from what it describes;
a test runs `dispatchbot docs --check` against the committed pages.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bot.commands.common import fail
from bot.docgen import benchmarks, configuration

console = Console(soft_wrap=True)


def pages(root: Path) -> dict[Path, str]:
    """Each generated page's path under `root` and its content."""
    writers: dict[Path, Callable[[], str]] = {
        configuration.PAGE: configuration.render,
        benchmarks.PAGE: lambda: benchmarks.render(root),
    }
    return {root / page: write() for page, write in writers.items()}


def docs(
    root: Annotated[
        Path,
        typer.Option("--root", metavar="DIR", help="The repository's root (default: here)."),
    ] = Path("."),
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Change nothing; exit 1 if a committed page is not what it would be."
        ),
    ] = False,
) -> None:
    """Write docs/configuration.md from the settings' descriptions and docs/benchmarks.md
    from bench/results/*.json.

    Run it after adding or changing a setting, a benchmark's results or the benchmark page's
    template (bench/benchmarks.template.md), and commit the pages."""
    if not (root / benchmarks.RESULTS).is_dir():
        fail(f"{root / benchmarks.RESULTS} not found: run this from the repository's root")
    try:
        wanted = pages(root)
    except (OSError, ValueError) as error:
        fail(f"cannot build the pages: {error}")
    stale = [path for path, text in wanted.items() if _read(path) != text]
    if check:
        for path in stale:
            console.print(f"out of date: {path} (run `dispatchbot docs`)", highlight=False)
        if stale:
            raise typer.Exit(1)
        console.print("the generated pages are current", highlight=False)
        return
    for path in stale:
        try:
            path.write_text(wanted[path], "utf-8")
        except OSError as error:
            fail(f"cannot write {path}: {error}")
        console.print(f"wrote {path}", highlight=False)
    if not stale:
        console.print("the generated pages are current", highlight=False)


def _read(path: Path) -> str | None:
    try:
        return path.read_text("utf-8")
    except FileNotFoundError:
        return None
