"""Cut documents into chunks that follow their sections and fit the embedding model.

A chunk never spans two sections, so every chunk can cite one heading path. Inside a
section, text is packed paragraph by paragraph; a paragraph too long for one chunk is cut
at line ends, then sentence ends, then between words — never inside a word. Consecutive
chunks of one section share `overlap_tokens` of text, so a sentence cut at a boundary is
still whole in one of them.

Sizes are counted with the embedding model's tokenizer. Pieces are counted one at a time
and added up; for WordPiece models such as all-MiniLM-L6-v2 that sum is exact because
tokens never cross whitespace.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from retrieval.documents import SECTION_SEPARATOR, Document
from retrieval.errors import RetrievalError

TokenCounter = Callable[[str], int]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class ChunkingOptions:
    """Chunk size bound and overlap, both in tokens of the embedding model."""

    max_tokens: int
    overlap_tokens: int

    def __post_init__(self) -> None:
        if self.max_tokens < 32:
            raise RetrievalError(f"CHUNK_MAX_TOKENS is {self.max_tokens}; use at least 32")
        if not 0 <= self.overlap_tokens < self.max_tokens // 2:
            raise RetrievalError(
                f"CHUNK_OVERLAP_TOKENS is {self.overlap_tokens}; it must be at least 0 and "
                f"less than half of CHUNK_MAX_TOKENS ({self.max_tokens})"
            )


@dataclass(frozen=True)
class Chunk:
    """A piece of one section of a document, ready to embed and cite."""

    index: int
    headings: tuple[str, ...]
    text: str
    context: str  # document title and heading path, prepended for embedding

    @property
    def section(self) -> str:
        return SECTION_SEPARATOR.join(self.headings)

    def embedding_text(self) -> str:
        """What the models see: where the text sits in the document, then the text."""
        return f"{self.context}\n{self.text}"


@dataclass(frozen=True)
class _Piece:
    text: str
    tokens: int
    joiner: str  # goes between this piece and the one before it


def chunk_document(
    document: Document, options: ChunkingOptions, count_tokens: TokenCounter
) -> list[Chunk]:
    """Chunks of every section of `document`, numbered in reading order."""
    chunks: list[Chunk] = []
    for section in document.sections:
        context = section_context(document.title, section.headings)
        # The heading path is embedded with each chunk, so it takes part of the budget; a
        # quarter is always left for text, even under an absurdly long heading path.
        budget = max(options.max_tokens - count_tokens(context), options.max_tokens // 4)
        pieces = _pieces(section.text, budget, count_tokens)
        for text in _pack(pieces, budget, options.overlap_tokens, count_tokens):
            chunks.append(
                Chunk(index=len(chunks), headings=section.headings, text=text, context=context)
            )
    return chunks


def section_context(title: str, headings: tuple[str, ...]) -> str:
    """The title and heading path ("Title > Part > Subpart"), the title not repeated."""
    path = list(headings)
    if not path or path[0].casefold() != title.casefold():
        path.insert(0, title)
    return SECTION_SEPARATOR.join(path)


def _split_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _split_sentences(text: str) -> list[str]:
    return [sentence for sentence in _SENTENCE_END.split(text) if sentence]


def _split_words(text: str) -> list[str]:
    return text.split()


Splitter = tuple[Callable[[str], list[str]], str]

# Finer and finer cuts for a paragraph that is too long, with the text that joins the parts.
_FINER_CUTS: tuple[Splitter, ...] = (
    (_split_lines, "\n"),
    (_split_sentences, " "),
    (_split_words, " "),
)


def _pieces(text: str, budget: int, count_tokens: TokenCounter) -> list[_Piece]:
    """Paragraphs of `text`, each cut further only if it does not fit in `budget`."""
    paragraphs = [part.strip() for part in re.split(r"\n\s*\n", text) if part.strip()]
    return [
        piece
        for paragraph in paragraphs
        for piece in _split(paragraph, "\n\n", budget, count_tokens, _FINER_CUTS)
    ]


def _split(
    text: str,
    joiner: str,
    budget: int,
    count_tokens: TokenCounter,
    cuts: tuple[Splitter, ...],
) -> list[_Piece]:
    """`text` as one piece if it fits, else cut at the coarsest level that makes it fit.

    A single word longer than the budget stays whole: cutting it would make it unsearchable.
    """
    tokens = count_tokens(text)
    if tokens <= budget or not cuts:
        return [_Piece(text, tokens, joiner)]
    split, inner_joiner = cuts[0]
    parts = split(text)
    if len(parts) <= 1:
        return _split(text, joiner, budget, count_tokens, cuts[1:])
    pieces: list[_Piece] = []
    for number, part in enumerate(parts):
        part_joiner = joiner if number == 0 else inner_joiner
        pieces.extend(_split(part, part_joiner, budget, count_tokens, cuts[1:]))
    return pieces


def _pack(pieces: list[_Piece], budget: int, overlap: int, count_tokens: TokenCounter) -> list[str]:
    """Fill chunks with whole pieces; each new chunk starts with the tail of the last one."""
    texts: list[str] = []
    current: list[_Piece] = []
    for piece in pieces:
        if current and sum(p.tokens for p in current) + piece.tokens > budget:
            texts.append(_join(current))
            current = _tail(current, overlap, count_tokens)
            while current and sum(p.tokens for p in current) + piece.tokens > budget:
                current.pop(0)
        current.append(piece)
    if current:
        texts.append(_join(current))
    return texts


def _tail(pieces: list[_Piece], overlap: int, count_tokens: TokenCounter) -> list[_Piece]:
    """What the next chunk repeats: the last whole pieces that fit in `overlap` tokens.

    When even the last piece is too long: its last lines if it has several (a table or a
    list is never entered half-way through a row), else its last sentences, else its last
    words.
    """
    tail = _trailing(pieces, overlap)
    if tail or overlap == 0:
        return tail
    last = pieces[-1]
    lines = _split_lines(last.text)
    if len(lines) > 1 or last.joiner == "\n":
        return _trailing([_Piece(line, count_tokens(line), "\n") for line in lines], overlap)
    for split in (_split_sentences, _split_words):
        tail = _trailing(
            [_Piece(part, count_tokens(part), " ") for part in split(last.text)], overlap
        )
        if tail:
            return tail
    return []


def _trailing(pieces: list[_Piece], budget: int) -> list[_Piece]:
    tail: list[_Piece] = []
    total = 0
    for piece in reversed(pieces):
        if total + piece.tokens > budget:
            break
        tail.insert(0, piece)
        total += piece.tokens
    return tail


def _join(pieces: list[_Piece]) -> str:
    return pieces[0].text + "".join(piece.joiner + piece.text for piece in pieces[1:])
