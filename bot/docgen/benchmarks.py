"""docs/benchmarks.md: the measured tables of bench/results/*.json inside the hand-written
context of bench/benchmarks.template.md.

The template says what each part measures and what came of it; a line
`<!-- results: NAME -->` in it becomes the tables, notes and findings of
bench/results/NAME.json (and of bench/results/before/NAME.json, the run a change was
measured against, when there is one). A results file the template does not place gets a
section of its own at the end, so a new part is never left out.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bot.docgen.markdown import cell, number, table

PAGE = Path("docs/benchmarks.md")
TEMPLATE = Path("bench/benchmarks.template.md")
RESULTS = Path("bench/results")

# Tables longer than this fold away, so the page reads as prose with figures.
FOLD_AFTER_ROWS = 12
_MARKER = re.compile(r"^<!-- results: ([a-z0-9-]+) -->$", re.MULTILINE)
_HEADER = (
    "<!-- Written by `dispatchbot docs` from bench/benchmarks.template.md and "
    "bench/results/*.json: edit the template, or run the benchmark, then `dispatchbot docs`. -->"
)


def render(root: Path) -> str:
    """The whole page, from the template and the results under `root`."""
    template = (root / TEMPLATE).read_text("utf-8")
    placed = set(_MARKER.findall(template))
    body = _MARKER.sub(lambda match: _results(root, match.group(1)), template)
    for path in sorted((root / RESULTS).glob("*.json")):
        if path.stem not in placed:
            result = _load(path)
            body += f"\n## {result['title']}\n\n{_results(root, path.stem)}\n"
    return f"{_HEADER}\n\n{body.rstrip()}\n"


def _results(root: Path, name: str) -> str:
    path = root / RESULTS / f"{name}.json"
    if not path.exists():
        return f"_Not measured yet: run `.venv/bin/python -m bench {name}`._"
    parts = [_result(_load(path), f"../{RESULTS.as_posix()}/{name}.json", fold=True)]
    before = root / RESULTS / "before" / f"{name}.json"
    if before.exists():
        earlier = _result(_load(before), f"../{RESULTS.as_posix()}/before/{name}.json", fold=False)
        parts.append(
            "<details><summary>The run this part's last change was measured against"
            f"</summary>\n\n{earlier}\n\n</details>"
        )
    return "\n\n".join(parts)


def _result(result: dict[str, Any], link: str, *, fold: bool) -> str:
    parts = [_provenance(result, link)]
    for shown in result["tables"]:
        rows = [[number(value) for value in row] for row in shown["rows"]]
        rendered = table(shown["columns"], rows)
        if fold and len(rows) > FOLD_AFTER_ROWS:
            parts.append(
                f"<details><summary>{_html(shown['title'])} ({len(rows)} rows)</summary>"
                f"\n\n{rendered}\n\n</details>"
            )
        else:
            parts.append(f"**{cell(shown['title'])}**\n\n{rendered}")
    if result["notes"]:
        parts.append("\n".join(f"- {note}" for note in result["notes"]))
    if result["findings"]:
        findings = table(
            ["finding", "value"],
            [[str(key), number(value)] for key, value in result["findings"].items()],
        )
        parts.append(f"<details><summary>Findings</summary>\n\n{findings}\n\n</details>")
    return "\n\n".join(parts)


def _provenance(result: dict[str, Any], link: str) -> str:
    machine = result["machine"]
    gpu = machine.get("gpu") or "no GPU"
    return (
        f"_Measured {result['measured_at'][:10]} at commit `{machine.get('commit')}` on "
        f"{machine['cpu']} ({machine['cores_usable']} cores, {machine['memory_gib']} GiB, "
        f"{gpu}) in {number(result['duration_s'])} s: [`{link.removeprefix('../')}`]({link})._"
    )


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _load(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return loaded
