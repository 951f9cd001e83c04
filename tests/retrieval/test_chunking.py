"""Chunks follow sections, keep their heading path, respect the token bound and overlap."""

from __future__ import annotations

import itertools

import pytest
from retrieval_support import SAMPLE_POLICIES

from retrieval.chunking import ChunkingOptions, chunk_document
from retrieval.documents import Document, FrontMatter, Section
from retrieval.embedding import Embedder
from retrieval.errors import RetrievalError
from retrieval.loaders import collect_files, load_document


def count_words(text: str) -> int:
    """A tokenizer stand-in that makes sizes easy to reason about: one token a word."""
    return len(text.split())


def document(*sections: Section, title: str = "Policy") -> Document:
    return Document(
        doc_id="policy", title=title, source="policy.md", sections=sections, declared=FrontMatter()
    )


def numbered_sentences(count: int, words_each: int = 8) -> str:
    """Sentences whose words are all distinct, so every overlap is visible."""
    return " ".join(
        " ".join(f"s{n}w{w}" for w in range(words_each - 1)) + f" s{n}end." for n in range(count)
    )


def test_a_small_section_is_one_chunk_with_its_heading_path() -> None:
    chunks = chunk_document(
        document(
            Section(("Policy", "Approval by weight"), "Shift lead approves 26,001 to 40,000 lb."),
            Section(("Policy", "Approval by weight", "Reweighs"), "Re-approve past 500 lb."),
        ),
        ChunkingOptions(max_tokens=64, overlap_tokens=8),
        count_words,
    )

    assert [(chunk.index, chunk.section) for chunk in chunks] == [
        (0, "Policy > Approval by weight"),
        (1, "Policy > Approval by weight > Reweighs"),
    ]
    assert chunks[0].text == "Shift lead approves 26,001 to 40,000 lb."
    assert chunks[0].embedding_text() == (
        "Policy > Approval by weight\nShift lead approves 26,001 to 40,000 lb."
    )


def test_title_is_added_to_the_context_when_headings_do_not_start_with_it() -> None:
    chunks = chunk_document(
        document(Section(("Scope",), "Applies to all loads."), title="Load Approval"),
        ChunkingOptions(max_tokens=64, overlap_tokens=8),
        count_words,
    )

    assert chunks[0].section == "Scope"
    assert chunks[0].context == "Load Approval > Scope"


def test_long_section_is_cut_within_the_bound_with_overlap_and_whole_words() -> None:
    text = numbered_sentences(30)  # 240 words in one paragraph
    options = ChunkingOptions(max_tokens=64, overlap_tokens=12)
    chunks = chunk_document(document(Section(("Policy", "Long"), text)), options, count_words)

    assert len(chunks) > 3
    source_words = text.split()
    for chunk in chunks:
        assert count_words(chunk.embedding_text()) <= options.max_tokens
        assert chunk.section == "Policy > Long"
        # Never cut inside a word: every word of a chunk is a word of the source, in order.
        words = chunk.text.split()
        start = source_words.index(words[0])
        assert source_words[start : start + len(words)] == words
    for before, after in itertools.pairwise(chunks):
        shared = set(before.text.split()) & set(after.text.split())
        assert 0 < len(shared) <= options.overlap_tokens
        # The overlap is the end of one chunk and the start of the next.
        assert before.text.endswith(after.text.split()[len(shared) - 1])
    covered = {word for chunk in chunks for word in chunk.text.split()}
    assert covered == set(source_words)


def test_cuts_prefer_paragraph_then_sentence_boundaries() -> None:
    paragraphs = [numbered_sentences(3, words_each=6).replace("s", f"p{p}s") for p in range(4)]
    chunks = chunk_document(
        document(Section(("Policy",), "\n\n".join(paragraphs))),
        ChunkingOptions(max_tokens=40, overlap_tokens=0),
        count_words,
    )

    # 18 words a paragraph, 39 words of budget after the heading: two paragraphs a chunk.
    assert [chunk.text for chunk in chunks] == [
        f"{paragraphs[0]}\n\n{paragraphs[1]}",
        f"{paragraphs[2]}\n\n{paragraphs[3]}",
    ]


def test_a_word_longer_than_the_budget_is_kept_whole() -> None:
    url = "https://example.com/" + "x" * 50
    chunks = chunk_document(
        document(Section(("Policy",), f"See {url} for the form.")),
        ChunkingOptions(max_tokens=32, overlap_tokens=0),
        lambda text: len(text),  # one token a character: the URL alone is over budget
    )

    assert url in [word for chunk in chunks for word in chunk.text.split()]


@pytest.mark.parametrize(("max_tokens", "overlap"), [(16, 0), (100, 50), (100, -1)])
def test_chunking_options_are_validated(max_tokens: int, overlap: int) -> None:
    with pytest.raises(RetrievalError, match="CHUNK_"):
        ChunkingOptions(max_tokens=max_tokens, overlap_tokens=overlap)


def test_sample_corpus_chunks_fit_the_model_and_keep_section_paths(embedder: Embedder) -> None:
    files = collect_files([SAMPLE_POLICIES]) if SAMPLE_POLICIES.is_dir() else []
    if not files:
        pytest.skip("examples/policies is not there")
    options = ChunkingOptions(max_tokens=embedder.max_tokens, overlap_tokens=32)
    for path in files:
        loaded = load_document(path)
        chunks = chunk_document(loaded, options, embedder.count_tokens)
        headings = {section.headings for section in loaded.sections}
        for chunk in chunks:
            assert embedder.count_tokens(chunk.embedding_text()) <= embedder.max_tokens
            assert chunk.headings in headings
            assert chunk.text.strip()


def test_table_rows_are_never_started_half_way() -> None:
    rows = [f"| row {n} | " + " ".join(f"r{n}c{c}" for c in range(8)) + " |" for n in range(12)]
    chunks = chunk_document(
        document(Section(("Policy", "Rates"), "\n".join(rows))),
        ChunkingOptions(max_tokens=48, overlap_tokens=6),  # a row is 12 words: never fits
        count_words,
    )

    assert len(chunks) > 2
    for chunk in chunks:
        assert all(line in rows for line in chunk.text.splitlines())
    assert [line for chunk in chunks for line in chunk.text.splitlines()] == rows


def test_overlap_after_a_table_repeats_whole_rows_only() -> None:
    table = "\n".join(f"| tier {n} | ext. 44{n}0 and ext. 44{n}5 |" for n in range(4))
    prose = numbered_sentences(6)
    chunks = chunk_document(
        document(Section(("Policy", "Tiers"), f"{table}\n\n{prose}")),
        ChunkingOptions(max_tokens=50, overlap_tokens=10),
        count_words,
    )

    second = chunks[1].text
    # The table (36 words) fits in one chunk but not in the overlap; its last row does.
    assert second.startswith("| tier 3 | ext. 4430 and ext. 4435 |\n\n")
