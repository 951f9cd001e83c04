"""The README and docs/ hold together: every relative link points at a file (and heading) that
exists, and the README stays short enough to read in one sitting."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
README_MAX_LINES = 260

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_HEADING = re.compile(r"^#{1,6} (.+?)\s*#*$", re.MULTILINE)


def _prose(page: Path) -> str:
    """The page without code, where brackets and parentheses are not links."""
    return _CODE_SPAN.sub("", _FENCE.sub("", page.read_text(encoding="utf-8")))


def _anchors(page: Path) -> set[str]:
    """The ids GitHub gives the page's headings: lower case, punctuation dropped, spaces to
    hyphens, a repeated heading numbered."""
    seen: Counter[str] = Counter()
    anchors = set()
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    for heading in _HEADING.findall(text):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        anchors.add(f"{slug}-{seen[slug]}" if seen[slug] else slug)
        seen[slug] += 1
    return anchors


def _relative_links(page: Path) -> list[str]:
    return [
        target
        for target in _LINK.findall(_prose(page))
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target)  # https:, mailto:, ...
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in _relative_links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target}: no such heading in {resolved.relative_to(REPO)}")

    assert not broken, broken


def test_the_pages_link_to_each_other() -> None:
    assert _relative_links(PAGES[0]), "the README links to the docs"
    linked = {
        (page.parent / target.partition("#")[0]).resolve()
        for page in PAGES
        for target in _relative_links(page)
    }
    orphans = [page.relative_to(REPO) for page in PAGES[1:] if page.resolve() not in linked]

    assert not orphans, f"pages nothing links to: {orphans}"


def test_the_readme_is_short() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").count("\n")

    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail into docs/"
