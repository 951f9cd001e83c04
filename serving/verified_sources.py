"""A person's verified answer as the bot shows it, and as the model reads it.

Reused as it stands, it is shown with who answered and when, and cites the policy versions
it rests on. Beside the policy in a prompt, it is a source whose title says that it is a
person's answer, not policy text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

from retrieval.search import SearchResult
from retrieval.store import PolicyStore
from retrieval.verified import VerifiedEntry, VerifiedMatch
from retrieval.versions import read_versions

# doc_id of a verified answer given to the model as a source; never a policy's id.
VERIFIED_SOURCE_PREFIX = "verified-answer-"


@dataclass(frozen=True)
class Credit:
    """Who gave a reused answer, and when: shown with it wherever it appears."""

    verified_id: int
    author: str  # a Slack user id
    on: date

    @property
    def day(self) -> str:
        return f"{self.on.day} {self.on:%b}"

    @classmethod
    def of(cls, entry: VerifiedEntry) -> Credit:
        return cls(entry.verified_id, entry.author, entry.created_at.date())


def attributed(entry: VerifiedEntry) -> str:
    """The answer, then who gave it and when: "Answered by <@U…> on 3 Dec, verified"."""
    return (
        f"{entry.answer}\n\n_Answered by <@{entry.author}> on {_day(entry.created_at)}, verified._"
    )


def cited_policies(store: PolicyStore, entry: VerifiedEntry) -> list[SearchResult]:
    """The policy versions the answer rests on, as citations (those still stored)."""
    cited: list[SearchResult] = []
    for ref in entry.policy_refs:
        stored = read_versions(store, str(ref["doc_id"]))
        version = next(
            (
                v
                for versions in stored.values()
                for v in versions
                if v.version == int(ref["version"])
            ),
            None,
        )
        if version is None:
            continue
        cited.append(
            SearchResult(
                chunk_id="",
                text="",
                score=1.0,
                relevance=1.0,
                doc_id=version.doc_id,
                title=version.title,
                section=version.title,
                version=version.version,
                effective_from=version.effective_from,
                effective_to=version.effective_to,
                audience=version.audience,
                source=version.source,
                tags=version.tags,
                url=version.url,
            )
        )
    return cited


def as_source(match: VerifiedMatch) -> SearchResult:
    """The verified answer as a prompt source, marked as a person's answer."""
    entry = match.entry
    return SearchResult(
        chunk_id=f"verified-{entry.verified_id}",
        text=f"Question: {entry.question}\nAnswer: {entry.answer}",
        score=match.similarity,
        relevance=match.similarity,
        doc_id=f"{VERIFIED_SOURCE_PREFIX}{entry.verified_id}",
        title=f"Verified answer by a person on {_day(entry.created_at)} (not policy text)",
        section="a question people asked before",
        version=1,
        effective_from=entry.created_at.date(),
        effective_to=None,
        audience=entry.audience,
        source=f"verified answer #{entry.verified_id}",
        tags=(),
    )


def is_verified_source(source: SearchResult) -> bool:
    return source.doc_id.startswith(VERIFIED_SOURCE_PREFIX)


def ranked_together(
    sources: Sequence[SearchResult], verified: SearchResult, count: int
) -> list[SearchResult]:
    """`sources` with the verified answer placed by closeness to the question among them."""
    position = sum(1 for source in sources if source.relevance >= verified.relevance)
    return [*sources[:position], verified, *sources[position:]][:count]


def _day(moment: datetime) -> str:
    return f"{moment.day} {moment:%b}"
