"""Where sentences end, for policy text and for an answer as it streams.

A sentence ends at `.`, `!` or `?` followed by white space (and any citation marks right
after it), or at a line break, so a list item is a sentence of its own. A full stop after a
common abbreviation ("ext. 4411", "e.g. a", "a.m.") or inside a number ("1.5") ends
nothing: splitting there would cut a claim from what it is about.
"""

from __future__ import annotations

import re

_CANDIDATE_END = re.compile(r"[.!?][\"')\]]*(?:\s*\[\d{1,2}\])*(?=\s)|\n")
_ABBREVIATION = re.compile(
    r"(?:\b(?:ext|e\.g|i\.e|etc|no|nos|approx|vs|st|dr|mr|ms|mrs|inc|dept|min|hrs|a\.m|p\.m|"
    r"u\.s|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)|\b[A-Za-z])\.$",
    re.IGNORECASE,
)


def sentence_ends(text: str) -> list[int]:
    """Offsets just past each complete sentence of `text`, in order.

    The end of `text` is not one: a streamed sentence may go on in the next chunk.
    """
    ends = []
    for match in _CANDIDATE_END.finditer(text):
        if match.group(0) != "\n" and _ABBREVIATION.search(text[: match.start() + 1]):
            continue
        if match.end() < len(text) or match.group(0) == "\n":
            ends.append(match.end())
    return ends


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`, stripped; a last one without an end mark is kept too."""
    pieces, start = [], 0
    for end in sentence_ends(text):
        pieces.append(text[start:end])
        start = end
    pieces.append(text[start:])
    return [piece.strip() for piece in pieces if piece.strip()]


def whole_sentences(text: str) -> str:
    """`text` up to its last complete sentence; unchanged when it has none.

    A sentence that ends `text` with its end mark counts as complete.
    """
    stripped = text.rstrip()
    if re.search(r"[.!?][\"')\]]*(?:\s*\[\d{1,2}\])*$", stripped):
        return stripped
    ends = sentence_ends(text)
    if not ends:
        return text
    return text[: ends[-1]].rstrip()
