"""Search limited to audiences: a restricted document is never a result outside them, in any
mode, however exactly it is asked for; the limit holds together with the in-force dates."""

from __future__ import annotations

from datetime import date

import pytest
from retrieval_support import Ingest, WriteDoc

from retrieval.search import PolicySearch, SearchMode

DISCIPLINE = """---
doc_id: driver-discipline
title: Driver Discipline Points
version: 1
effective_from: 2025-05-01
audience: hr
---
# Driver Discipline Points

## Points per event

A preventable accident adds 6 points to a driver's record. At 20 points Human Resources
reviews the case for termination, using form HR-417.
"""

YARD = """---
doc_id: yard-safety
title: Yard Safety
version: 1
effective_from: 2025-01-01
audience: all
---
# Yard Safety

## Speed and vests

The speed limit in the yard is 5 mph. Everyone on foot in the yard wears a hi-vis vest.
"""

# Restricted before 2026, then opened to everyone by a new version.
LEAVE_V1 = """---
doc_id: leave-policy
title: Leave Requests
version: 1
effective_from: 2025-01-01
audience: hr
---
# Leave Requests

## Notice

Annual leave is requested four weeks ahead in the HR portal.
"""

LEAVE_V2 = LEAVE_V1.replace("version: 1", "version: 2").replace(
    "effective_from: 2025-01-01\naudience: hr", "effective_from: 2026-01-01\naudience: all"
)

ASKED_EXACTLY = "A preventable accident adds 6 points to a driver's record, form HR-417"


@pytest.fixture
def corpus(ingest: Ingest, write_doc: WriteDoc) -> None:
    ingest(write_doc("discipline.md", DISCIPLINE), write_doc("yard.md", YARD))
    ingest(write_doc("leave-v1.md", LEAVE_V1))
    ingest(write_doc("leave-v2.md", LEAVE_V2))


@pytest.mark.usefixtures("corpus")
@pytest.mark.parametrize("mode", list(SearchMode))
def test_a_restricted_document_is_never_found_outside_its_audience(
    policy_search: PolicySearch, mode: SearchMode
) -> None:
    everything = policy_search.search(ASKED_EXACTLY, k=5, mode=mode)
    outside = policy_search.search(ASKED_EXACTLY, k=5, mode=mode, audiences={"all", "dispatch"})
    inside = policy_search.search(ASKED_EXACTLY, k=5, mode=mode, audiences={"all", "hr"})

    assert everything[0].doc_id == "driver-discipline"  # no limit: the operator's tools
    assert outside, "the documents for everyone are still found"
    assert {result.audience for result in outside} == {"all"}
    assert "driver-discipline" not in {result.doc_id for result in outside}
    assert inside[0].doc_id == "driver-discipline"


@pytest.mark.usefixtures("corpus")
def test_no_audience_at_all_finds_nothing(policy_search: PolicySearch) -> None:
    assert policy_search.search("yard speed limit", audiences=set()) == []


@pytest.mark.usefixtures("corpus")
def test_the_audience_limit_and_the_in_force_dates_hold_together(
    policy_search: PolicySearch,
) -> None:
    query = "how far ahead is annual leave requested?"

    def leave_versions(as_of: date, audiences: set[str]) -> set[int]:
        found = policy_search.search(query, k=5, as_of=as_of, audiences=audiences)
        return {result.version for result in found if result.doc_id == "leave-policy"}

    # 2025: only the restricted first version is in force.
    assert leave_versions(date(2025, 6, 1), {"all"}) == set()
    assert leave_versions(date(2025, 6, 1), {"all", "hr"}) == {1}
    # 2026: the open second version replaced it; the old one stays out even for HR.
    assert leave_versions(date(2026, 6, 1), {"all"}) == {2}
    assert leave_versions(date(2026, 6, 1), {"all", "hr"}) == {2}
