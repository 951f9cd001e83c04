"""BM25-style sparse vectors computed in process, for the keyword half of hybrid search.

A chunk's vector holds, per term, BM25's saturated term frequency with length
normalisation. The inverse document frequency is left to Qdrant: the collection's sparse
vector is configured with `Modifier.IDF`, so it stays right as documents come and go.
A query's vector is 1.0 per distinct term, which makes Qdrant's dot product the BM25 score.

Terms are lower-cased words and numbers ("40,000" and "40000" are one term), minus English
stop words, reduced by the Snowball English stemmer ("approves", "approval" → "approv");
"priority 1" also gives "p1", the way service desks write it.
Each term maps to a stable 32-bit index, a hash of the term, so no vocabulary is stored.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import Counter
from collections.abc import Iterable

import snowballstemmer

from retrieval.store import SparseVector

# Classic BM25 constants; the average length is that of a chunk of the sample corpus in
# terms (stop words removed), which is what chunks of the default size come to.
K1 = 1.2
B = 0.75
AVERAGE_CHUNK_TERMS = 50.0

_THOUSANDS_SEPARATOR = re.compile(r"(?<=\d),(?=\d{3}\b)")
# Words, then an acronym of their initials in brackets: "bill of lading (BOL)", "(SLAs)".
_DEFINED_ACRONYM = re.compile(r"((?:[A-Za-z][\w-]*\s+){1,6})\(([A-Z]{2,6})s?\)")
# "priority 1" and "priority-1" are what service desks write as P1: both give the term "p1".
_PRIORITY = re.compile(r"\bpriority[\s-]*(\d)\b")
_TERM = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")

# A common English list; questions are short, so only words that carry no topic go.
_STOP_WORD_TEXT = """
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further
had has have having he her here hers herself him himself his how i if in into is it its
itself just me more most my myself nor of off on once only or other our ours ourselves out
over own same she should so some such than that the their theirs them themselves then there
these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves
"""
STOP_WORDS = frozenset(_STOP_WORD_TEXT.split())


# A Snowball stemmer keeps the word it works on in itself: two threads stemming with one
# stemmer corrupt each other's word (IndexError, or a wrong stem). One per thread.
_local = threading.local()


def _stemmer() -> snowballstemmer.stemmer:
    stemmer = getattr(_local, "stemmer", None)
    if stemmer is None:
        stemmer = _local.stemmer = snowballstemmer.stemmer("english")
    return stemmer


def terms(text: str) -> list[str]:
    """The index terms of `text`, in order, repeats kept."""
    lowered = _PRIORITY.sub(r"\g<0> p\1", text.lower())
    words = _TERM.findall(_THOUSANDS_SEPARATOR.sub("", lowered))
    kept = [word for word in words if word not in STOP_WORDS]
    return _stemmer().stemWords(kept)


def defined_acronyms(texts: Iterable[str]) -> list[str]:
    """The acronyms `texts` define, "Service Level Agreements (SLAs)" giving "SLA", in order."""
    found: dict[str, None] = {}
    for text in texts:
        for match in _DEFINED_ACRONYM.finditer(text):
            words, acronym = match.group(1).split(), match.group(2)
            initials = "".join(word[0] for word in words[-len(acronym) :]).upper()
            if len(words) >= len(acronym) and initials == acronym:
                found.setdefault(acronym, None)
    return list(found)


def term_index(term: str) -> int:
    """A stable index for `term` in Qdrant's 32-bit sparse index space."""
    return int.from_bytes(hashlib.blake2b(term.encode(), digest_size=4).digest(), "big")


def document_vector(text: str) -> SparseVector:
    """BM25 term weights of one chunk (without IDF, which Qdrant supplies)."""
    counts = Counter(terms(text))
    length = sum(counts.values())
    norm = K1 * (1 - B + B * length / AVERAGE_CHUNK_TERMS)
    weights = {term: count * (K1 + 1) / (count + norm) for term, count in counts.items()}
    return _sparse(weights)


def query_vector(text: str) -> SparseVector:
    """1.0 per distinct query term; empty when the query has only stop words."""
    return _sparse(dict.fromkeys(terms(text), 1.0))


def _sparse(weights: dict[str, float]) -> SparseVector:
    by_index: dict[int, float] = {}
    for term, weight in weights.items():
        # Two terms with one hash would be one term to Qdrant; add their weights up.
        index = term_index(term)
        by_index[index] = by_index.get(index, 0.0) + weight
    indices = sorted(by_index)
    return SparseVector(indices=tuple(indices), values=tuple(by_index[index] for index in indices))
