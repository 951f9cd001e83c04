"""Keyword vectors: normalised terms, BM25 term weights, stable indices."""

from __future__ import annotations

import threading

from retrieval.sparse import defined_acronyms, document_vector, query_vector, term_index, terms
from retrieval.store import SparseVector


def test_terms_are_stemmed_lower_case_words_without_stop_words() -> None:
    assert terms("Who APPROVES the loads? Approval, approved, approving.") == [
        "approv",
        "load",
        "approv",
        "approv",
        "approv",
    ]


def test_numbers_with_and_without_thousands_separators_are_one_term() -> None:
    assert terms("40,000 lb") == terms("40000 lb") == ["40000", "lb"]
    assert terms("call ext. 4411 or 1-800-555-0142") == [
        "call", "ext", "4411", "1", "800", "555", "0142"
    ]  # fmt: skip


def test_document_weights_saturate_with_term_frequency() -> None:
    once = document_vector("reefer alarm " + "filler " * 20)
    twice = document_vector("reefer reefer alarm " + "filler " * 19)

    def weight(vector: SparseVector, term: str) -> float:
        return dict(zip(vector.indices, vector.values, strict=True))[term_index(term)]

    assert weight(once, "reefer") < weight(twice, "reefer") < 2 * weight(once, "reefer")


def test_query_vector_is_one_per_distinct_term_and_empty_for_stop_words() -> None:
    vector = query_vector("reefer reefer alarm")

    assert vector.indices == tuple(sorted({term_index("reefer"), term_index("alarm")}))
    assert vector.values == (1.0, 1.0)
    assert query_vector("what is the of and") == SparseVector(indices=(), values=())


def test_term_indices_are_stable_32_bit_numbers() -> None:
    # Stored vectors and future queries must agree across processes and releases.
    assert term_index("approv") == term_index("approv")
    assert term_index("approv") != term_index("load")
    assert all(0 <= term_index(term) < 2**32 for term in ("a", "approv", "x" * 100))


def test_a_priority_written_out_is_the_code_service_desks_write() -> None:
    assert "p1" in terms("SLA on a priority-1 reefer ticket")
    assert "p2" in terms("Priority 2")
    assert terms("P3") == ["p3"]


def test_acronyms_a_document_defines_are_found_by_their_initials() -> None:
    texts = [
        "These service level agreements (SLAs) set the response targets.",
        "The driver signs the bill of lading (BOL). Notes on the delivery receipt (POD).",
    ]
    # POD's initials are not those of the words before it: no definition.
    assert defined_acronyms(texts) == ["SLA", "BOL"]


def test_terms_are_the_same_when_many_threads_stem_at_once() -> None:
    # Answers run in parallel threads; a stemmer shared between them corrupted words.
    texts = [
        f"Approvals of {n},000 lb loads require the shift lead's authorisation and "
        "documentation of the refrigerated trailer's temperature readings"
        for n in range(40)
    ]
    expected = [terms(text) for text in texts]
    results: dict[int, list[list[str]]] = {}
    barrier = threading.Barrier(8)

    def stem(worker: int) -> None:
        barrier.wait()
        results[worker] = [terms(text) for text in texts * 5]

    threads = [threading.Thread(target=stem, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert all(found == expected * 5 for found in results.values())
