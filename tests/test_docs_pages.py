"""`dispatchbot docs`: the committed generated pages are what the command writes today."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from bot.cli import app
from bot.commands.docs import pages
from bot.docgen import benchmarks, configuration

REPO = Path(__file__).resolve().parents[1]


def test_the_benchmarks_page_is_what_the_results_say() -> None:
    committed = (REPO / benchmarks.PAGE).read_text(encoding="utf-8")

    assert committed == benchmarks.render(REPO), (
        f"{benchmarks.PAGE} is out of date: run `dispatchbot docs` and commit the result"
    )


def test_every_results_file_has_its_section() -> None:
    page = benchmarks.render(REPO)

    for results in sorted((REPO / benchmarks.RESULTS).glob("*.json")):
        assert f"(../bench/results/{results.name})" in page, results.name


def test_secrets_show_no_default() -> None:
    rows = {
        line.split(" | ")[0].strip("| `"): line
        for line in configuration.render().splitlines()
        if line.startswith("| `")
    }

    for variable in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "LLM_API_KEY", "QDRANT_API_KEY"):
        assert " | (secret) | " in rows[variable], rows[variable]
    assert "EMPTY" not in rows["LLM_API_KEY"]


def test_check_passes_on_the_committed_pages() -> None:
    result = CliRunner().invoke(app, ["docs", "--check", "--root", str(REPO)])

    assert result.exit_code == 0, result.output
    assert "current" in result.output


def test_check_fails_on_a_stale_page_and_writing_fixes_it(tmp_path: Path) -> None:
    shutil.copytree(REPO / "bench", tmp_path / "bench", ignore=shutil.ignore_patterns("*.py"))
    (tmp_path / "docs").mkdir()
    (tmp_path / configuration.PAGE).write_text("# Configuration\n\nstale\n", "utf-8")
    runner = CliRunner()

    stale = runner.invoke(app, ["docs", "--check", "--root", str(tmp_path)])
    assert stale.exit_code == 1
    assert "out of date" in stale.output
    assert (tmp_path / configuration.PAGE).read_text("utf-8").endswith("stale\n")

    written = runner.invoke(app, ["docs", "--root", str(tmp_path)])
    assert written.exit_code == 0, written.output
    assert {path.read_text("utf-8") for path in pages(tmp_path)} == set(pages(tmp_path).values())
    assert runner.invoke(app, ["docs", "--check", "--root", str(tmp_path)]).exit_code == 0


def test_outside_a_checkout_it_says_where_to_run_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["docs", "--root", str(tmp_path)])

    assert result.exit_code == 2
    assert "repository's root" in result.output
