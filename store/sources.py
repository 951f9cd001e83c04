"""The one description of a cited policy, from search to the store to Slack's blocks.

Search results carry it (`SearchResult.cited`), citations store it field by field and give
it back (`Citation.cited`), and the Sources list, the steps and the escalation card show it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class SourceRef:
    """A section of one version of a policy document."""

    doc_id: str
    title: str
    section: str  # heading path "Title > Part > Subpart"
    version: int
    effective_from: date
    url: str | None = None  # a link to the policy, when the document declares one
    audience: str | None = None  # who the document was written for
