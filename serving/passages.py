"""The policy's own words an answer rests on: the sentences, list items or table rows of a
retrieved section that answer the question, quoted verbatim.

A section is split into blocks (prose, a list, a table) and the blocks into units: the
sentences of prose, the items of a list, the rows of a table. Each unit of the best few
retrieved sections is scored against the question by
- the question's keywords it holds, weighted by how rare they are among the candidates
  (so "load" counts for less than "reefer"), the section's headings counting for half;
- its meaning: the embedding model's cosine of question and unit (so "chicken" finds
  "poultry"), read with the section's heading and, for a table row, the column names;
- a number of the question inside the range of a table row ("30,000 lb" in
  "26,001 to 40,000 lb"), which wins outright: that is how people read a table;
- the retrieval rank of its section, a little.

The passage comes from the section of the best unit: the units scoring near it, in reading
order. A table keeps its header and the rows chosen, a list its introducing sentence, a
short list (a procedure) all its items, since its steps only make sense together.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from retrieval.search import SearchResult
from retrieval.sparse import defined_acronyms, terms
from serving.sentences import split_sentences

Similarity = Callable[[str, Sequence[str]], Sequence[float]]

CANDIDATE_SECTIONS = 5
SECTION_UNITS = 2  # how many of a section's best units count for the section
SECTION_MEANING_WEIGHT = 0.0
# A section this short is quoted whole; a longer one down to its best units.
WHOLE_SECTION_CHARS = 0
QUOTE_BUDGET_CHARS = 400
# A list of at most this many items is a procedure to keep whole when any item is chosen.
WHOLE_LIST_ITEMS = 6
DENSE_WEIGHT = 1.0
HEADING_WEIGHT = 1.5
RANGE_BONUS = 0.5
RANK_PRIOR = 0.0  # taken off per place lower in the retrieval ranking
# A "Changes from version 2" section names the old rule beside the new one: it answers what
# changed, and is quoted for anything else only when nothing else comes close.
CHANGE_LOG_WEIGHT = 0.5
_CHANGE_LOG = re.compile(r"\b(?:changes?|change log|revision history|what'?s new)\b", re.I)
_ABOUT_CHANGES = re.compile(
    r"\b(?:chang\w*|new|old|used to|previous\w*|before|still|updat\w*|revis\w*|now)\b", re.I
)

_LIST_MARKER = re.compile(r"^\s*(?:[-*+•]|\d{1,2}[.)])\s+")
_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(?:\|\s*:?-{2,}:?\s*)*\|?\s*$")
# A number of the question, with "k" for thousands and a unit; times of day are not amounts.
_QUESTION_NUMBER = re.compile(
    r"(?<![\w.$:])\$?(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?![\d:])"
    r"(?!\s*(?:am|pm|a\.m|p\.m)\b)\s*(k\b)?\s*([a-z%°]+)?",
    re.IGNORECASE,
)
_RANGE_BETWEEN = re.compile(
    r"\$?(?P<low>\d[\d,]*(?:\.\d+)?)\s*(?P<unit1>[a-z%°]+)?\s*(?:to|-|–|—)\s*\$?"
    r"(?P<high>\d[\d,]*(?:\.\d+)?)\s*(?P<unit>[a-z%°]+)?",
    re.IGNORECASE,
)
_RANGE_UP_TO = re.compile(
    r"\b(?:up to|under|below|less than|at most|no more than)\s+\$?(?P<high>\d[\d,]*(?:\.\d+)?)"
    r"\s*(?P<unit>[a-z%°]+)?",
    re.IGNORECASE,
)
_RANGE_FROM = re.compile(
    r"\$?(?P<low>\d[\d,]*(?:\.\d+)?)\s*(?P<unit>[a-z%°]+)?\s*(?:and over|and above|or more|"
    r"and up|\+)",
    re.IGNORECASE,
)
_RANGE_OVER = re.compile(
    r"\b(?:over|above|more than|at least)\s+\$?(?P<low>\d[\d,]*(?:\.\d+)?)\s*(?P<unit>[a-z%°]+)?",
    re.IGNORECASE,
)
# Spellings of one unit, so "14 pts" meets "points" and "42k lb" meets "lbs".
_UNIT_FORMS = {
    "lbs": "lb", "pound": "lb", "pounds": "lb",
    "pts": "point", "pt": "point", "points": "point",
    "mi": "mile", "miles": "mile",
    "mins": "min", "minute": "min", "minutes": "min",
    "hrs": "hour", "hr": "hour", "hours": "hour",
    "days": "day", "mph": "mph", "gallons": "gallon", "gal": "gallon",
}  # fmt: skip
_UNITS = frozenset({*_UNIT_FORMS.values(), "ft", "kg", "km", "week", "month", "year", "%", "°f"})


class BlockKind(StrEnum):
    PROSE = "prose"
    LIST = "list"
    TABLE = "table"


@dataclass(frozen=True)
class Block:
    """Consecutive units of one kind; a table's header is its first line, not a unit."""

    kind: BlockKind
    units: tuple[str, ...]
    header: str | None = None
    lead_in: str | None = None  # the sentence ending in ":" that introduces a list

    @property
    def markdown(self) -> str:
        """The block as Markdown: a table stays a table, a list a list."""
        if self.kind is BlockKind.TABLE:
            rows = []
            if self.header:
                rows = [_table_row(self.header), "|" + "---|" * len(_cells(self.header))]
            return "\n".join([*rows, *(_table_row(unit) for unit in self.units)])
        if self.kind is BlockKind.LIST:
            items = "\n".join(_as_list_item(unit) for unit in self.units)
            return f"{self.lead_in}\n{items}" if self.lead_in else items
        return " ".join(self.units)


@dataclass(frozen=True)
class Passage:
    """Verbatim policy text from one retrieved section."""

    source: SearchResult
    blocks: tuple[Block, ...]  # each with only the units chosen, in reading order
    score: float  # the best unit's score
    # The rows of a quoted table that the question's number does not fall in: an answer
    # naming what only they say has read the wrong row.
    other_rows: tuple[str, ...] = ()

    @property
    def kind(self) -> BlockKind:
        """What it mostly is: a table when it holds one (it is shown as a table)."""
        kinds = {block.kind for block in self.blocks}
        for kind in (BlockKind.TABLE, BlockKind.LIST):
            if kind in kinds:
                return kind
        return BlockKind.PROSE

    @property
    def markdown(self) -> str:
        return "\n\n".join(block.markdown for block in self.blocks)


def split_blocks(text: str) -> list[Block]:
    """The prose, list and table blocks of a section's text, in reading order."""
    blocks: list[Block] = []
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        lines = [line.rstrip() for line in paragraph.splitlines() if line.strip()]
        while lines:
            kind = _line_kind(lines[0])
            run = [lines.pop(0)]
            while lines and (
                _line_kind(lines[0]) is kind
                # a list item wrapped onto a line of its own goes on
                or (kind is BlockKind.LIST and _line_kind(lines[0]) is BlockKind.PROSE)
            ):
                run.append(lines.pop(0))
            blocks.append(_block(kind, run, blocks))
    return [block for block in blocks if block.units]


@dataclass(frozen=True)
class _Unit:
    rank: int  # of its section in the retrieval results
    block: int  # index of its block in the section
    index: int  # index in its block
    text: str
    embedded: str  # what the embedding model reads


def select_passage(
    question: str,
    sources: Sequence[SearchResult],
    *,
    earlier_question: str | None = None,
    similarity: Similarity | None = None,
) -> Passage | None:
    """The passage of `sources` (best first, as retrieval ranked them) that answers
    `question`; None when no unit shares a keyword with it or means something close.

    `earlier_question` is the question before a follow-up ("and a 41k one?"): its keywords
    count for half, and its numbers only when the follow-up has none. `similarity` gives
    the cosine of a text and each of several others; without it, keywords alone decide.
    """
    candidates = list(sources[:CANDIDATE_SECTIONS])
    blocks = [split_blocks(source.text) for source in candidates]
    units = [
        _Unit(rank, b, i, unit, _embedded(source, block, unit))
        for rank, (source, section_blocks) in enumerate(zip(candidates, blocks, strict=True))
        for b, block in enumerate(section_blocks)
        for i, unit in enumerate(block.units)
    ]
    if not units:
        return None
    rarity = _rarity([unit.text for unit in units] + [s.section for s in candidates])
    asked = _Asked.of(question, earlier_question, rarity)
    cosines = (
        similarity(_with_earlier(question, earlier_question), [u.embedded for u in units])
        if similarity is not None
        else [0.0] * len(units)
    )
    headings = _headings(candidates)
    scores, in_range = [], []
    for unit, cosine in zip(units, cosines, strict=True):
        source, block = candidates[unit.rank], blocks[unit.rank][unit.block]
        score = asked.share(terms(unit.text)) + HEADING_WEIGHT * asked.share(headings[unit.rank])
        if block.kind is BlockKind.TABLE and block.header:
            # A row is read under its column names: "Priority | First response" files the row
            # "P1 | 10 minutes" under a question about a priority's response.
            score += HEADING_WEIGHT * asked.share(terms(block.header))
        score += DENSE_WEIGHT * max(0.0, cosine)
        in_range.append(block.kind is BlockKind.TABLE and _row_holds(unit.text, asked.numbers))
        if in_range[-1]:
            score += RANGE_BONUS
        if _is_change_log(source.section) and not asked.about_changes:
            score *= CHANGE_LOG_WEIGHT
        scores.append(score - RANK_PRIOR * unit.rank)
    best = _best_unit(units, scores, candidates)
    if scores[best] <= 0.0:
        return None  # no keyword in common, nothing close in meaning
    top, source, section_blocks = (
        units[best],
        candidates[units[best].rank],
        blocks[units[best].rank],
    )
    if in_range[best]:
        # A table read by the question's number: the rows it falls in, under the header.
        table = section_blocks[top.block]
        rows = [u.text for u, hit in zip(units, in_range, strict=True) if hit and _same(u, top)]
        others = tuple(row for row in table.units if row not in rows)
        quoted = Block(table.kind, tuple(rows), table.header)
        return Passage(source, (quoted,), scores[best], other_rows=others)
    section = [(u, score) for u, score in zip(units, scores, strict=True) if u.rank == top.rank]
    return _passage(source, section_blocks, section, scores[best])


def _headings(sources: Sequence[SearchResult]) -> list[list[str]]:
    """The terms each section is filed under: its heading path, and the acronyms its document
    defines ("Service Level Agreements (SLAs)" files every section of it under "SLA")."""
    texts: dict[str, list[str]] = {}
    for source in sources:
        texts.setdefault(source.doc_id, []).append(source.text)
    acronyms = {doc_id: " ".join(defined_acronyms(found)) for doc_id, found in texts.items()}
    return [terms(f"{source.section} {acronyms[source.doc_id]}") for source in sources]


def _is_change_log(section: str) -> bool:
    return bool(_CHANGE_LOG.search(section.split(" > ")[-1]))


def _best_unit(
    units: Sequence[_Unit], scores: Sequence[float], sources: Sequence[SearchResult]
) -> int:
    """The best unit of the best section: a section is as good as its SECTION_UNITS best
    units together, so one stray keyword match does not outweigh a section on the topic."""
    by_section: dict[int, list[float]] = {}
    for unit, score in zip(units, scores, strict=True):
        by_section.setdefault(unit.rank, []).append(score)
    strength = {
        rank: sum(sorted(found, reverse=True)[:SECTION_UNITS])
        + SECTION_MEANING_WEIGHT * sources[rank].relevance
        for rank, found in by_section.items()
    }
    rank = max(strength, key=strength.__getitem__)
    return max(
        (index for index, unit in enumerate(units) if unit.rank == rank), key=scores.__getitem__
    )


def _same(unit: _Unit, other: _Unit) -> bool:
    return (unit.rank, unit.block) == (other.rank, other.block)


def _passage(
    source: SearchResult, blocks: list[Block], section: list[tuple[_Unit, float]], best: float
) -> Passage:
    """A short section whole; a longer one trimmed to its best units within the budget."""
    if len(source.text) <= WHOLE_SECTION_CHARS:
        return Passage(source=source, blocks=tuple(blocks), score=best)
    picked: dict[int, set[int]] = {}
    size = 0
    for unit, _ in sorted(section, key=lambda pair: -pair[1]):
        if picked and size + len(unit.text) > QUOTE_BUDGET_CHARS:
            break
        picked.setdefault(unit.block, set()).add(unit.index)
        size += len(unit.text)
    kept: list[Block] = []
    for number in sorted(picked):
        block = blocks[number]
        indexes = picked[number]
        if block.kind is BlockKind.LIST and len(block.units) <= WHOLE_LIST_ITEMS:
            indexes = set(range(len(block.units)))
        units = tuple(unit for index, unit in enumerate(block.units) if index in indexes)
        if block.lead_in and kept and kept[-1].units[-1] == block.lead_in:
            # The list brings the sentence that introduces it: it must not show twice.
            kept[-1] = replace(kept[-1], units=kept[-1].units[:-1])
        kept.append(Block(block.kind, units, block.header, block.lead_in))
    return Passage(source=source, blocks=tuple(block for block in kept if block.units), score=best)


@dataclass(frozen=True)
class _Asked:
    weights: dict[str, float]  # the question's terms with their weight in the score
    total: float
    numbers: tuple[tuple[float, str | None], ...]  # with their units, if given
    about_changes: bool  # asks what changed, or how it used to be

    @classmethod
    def of(cls, question: str, earlier: str | None, rarity: Callable[[str], float]) -> _Asked:
        weights = {term: rarity(term) for term in terms(question)}
        for term in terms(earlier or ""):
            weights.setdefault(term, rarity(term) * 0.5)
        numbers = _numbers(question) or _numbers(earlier or "")
        about_changes = bool(_ABOUT_CHANGES.search(question))
        return cls(weights, sum(weights.values()), numbers, about_changes)

    def share(self, unit_terms: Sequence[str]) -> float:
        if not self.total:
            return 0.0
        present = set(unit_terms)
        return sum(w for term, w in self.weights.items() if term in present) / self.total


def _rarity(texts: Sequence[str]) -> Callable[[str], float]:
    """Inverse document frequency over the candidate units: rare words decide."""
    frequency = Counter(term for text in texts for term in set(terms(text)))
    count = len(texts)

    def weight(term: str) -> float:
        return math.log(1 + (count + 1) / (frequency[term] + 0.5))

    return weight


def _with_earlier(question: str, earlier: str | None) -> str:
    return f"{earlier}\n{question}" if earlier else question


def _embedded(source: SearchResult, block: Block, unit: str) -> str:
    """A unit as the embedding model reads it: under its heading, a row with its columns."""
    heading = source.section.split(" > ")[-1]
    if block.kind is BlockKind.TABLE and block.header:
        pairs = zip(_cells(block.header), _cells(unit), strict=False)
        unit = "; ".join(f"{name}: {value}" for name, value in pairs)
    return f"{heading}: {_LIST_MARKER.sub('', unit)}"


def _line_kind(line: str) -> BlockKind:
    if "|" in line and len(_cells(line)) >= 2:
        return BlockKind.TABLE
    if _LIST_MARKER.match(line):
        return BlockKind.LIST
    return BlockKind.PROSE


def _block(kind: BlockKind, lines: list[str], before: list[Block]) -> Block:
    if kind is BlockKind.TABLE:
        rows = [line.strip() for line in lines if not _TABLE_SEPARATOR.match(line)]
        return Block(kind, tuple(rows[1:]), header=rows[0] if rows else None)
    if kind is BlockKind.LIST:
        items: list[str] = []
        for line in lines:
            if _LIST_MARKER.match(line) or not items:
                items.append(line.strip())
            else:
                items[-1] = f"{items[-1]} {line.strip()}"
        return Block(kind, tuple(items), lead_in=_lead_in(before))
    return Block(kind, tuple(split_sentences(" ".join(line.strip() for line in lines))))


def _lead_in(before: list[Block]) -> str | None:
    """The sentence right before a list that introduces it ("…at least:")."""
    if before and before[-1].kind is BlockKind.PROSE and before[-1].units[-1].endswith(":"):
        return before[-1].units[-1]
    return None


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def _table_row(row: str) -> str:
    return "| " + " | ".join(_cells(row)) + " |"


def _as_list_item(unit: str) -> str:
    return unit if _LIST_MARKER.match(unit) else f"- {unit}"


def _unit(word: str | None) -> str | None:
    """The unit a word names, or None for a word that is not one ("700 for a pallet")."""
    if not word:
        return None
    word = word.lower()
    unit = _UNIT_FORMS.get(word, word)
    return unit if unit in _UNITS else None


def _numbers(text: str) -> tuple[tuple[float, str | None], ...]:
    found = []
    for match in _QUESTION_NUMBER.finditer(text):
        value = float(match.group(1).replace(",", ""))
        found.append((value * 1000 if match.group(2) else value, _unit(match.group(3))))
    return tuple(found)


def _row_holds(row: str, numbers: Sequence[tuple[float, str | None]]) -> bool:
    """Whether the range in a table row's first cell holds a number of the question; a
    unit on both sides must agree ("14 pts" is not in "11 to 15 mph")."""
    if not numbers:
        return False
    for low, high, unit in _ranges(_cells(row)[0]):
        for value, asked_unit in numbers:
            if asked_unit and unit and asked_unit != unit:
                continue
            if low <= value <= high:
                return True
    return False


def _ranges(cell: str) -> list[tuple[float, float, str | None]]:
    def number(text: str) -> float:
        return float(text.replace(",", ""))

    found = [
        (number(m["low"]), number(m["high"]), _unit(m["unit"] or m["unit1"]))
        for m in _RANGE_BETWEEN.finditer(cell)
    ]
    found += [(0.0, number(m["high"]), _unit(m["unit"])) for m in _RANGE_UP_TO.finditer(cell)]
    for pattern in (_RANGE_FROM, _RANGE_OVER):
        found += [(number(m["low"]), math.inf, _unit(m["unit"])) for m in pattern.finditer(cell)]
    return [(low, high, unit) for low, high, unit in found if low <= high]
