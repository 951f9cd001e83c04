"""The App Home tab's content for one user: read what it shows, survive what is down.

Admins (SLACK_ADMIN_USERS) get the overview from the store and the policy collection;
everyone else gets the how-to, which needs neither. Each source is read on its own, so
a database that is down still leaves the documents visible, and the other way round.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from bot.home_blocks import (
    ESCALATIONS_SHOWN,
    GAPS_SHOWN,
    REUSED_SHOWN,
    STALE_SHOWN,
    AdminHome,
    DocumentSummary,
    GapLine,
    VerifiedLine,
    VerifiedOverview,
    admin_home_view,
    member_home_view,
    summarize_documents,
)
from bot.services import Services
from retrieval.search import PolicySearch
from retrieval.versions import read_versions
from store import verified_answers
from store.database import Database
from store.gaps import recent_gaps
from store.insights import StoreInsights, store_insights
from store.models import VerifiedAnswer, VerifiedAnswerStatus

logger = logging.getLogger(__name__)


def home_view(
    services: Services,
    user_id: str,
    *,
    bot_user_id: str | None,
    reference: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The `views.publish` view for `user_id`; a source that fails is logged and named."""
    settings = services.settings
    if user_id not in settings.slack_admin_users:
        phrases = settings.escalation_phrases
        return member_home_view(bot_user_id, phrases[0] if phrases else None)
    # Local time: feedback days and documents in force follow the calendar where it runs.
    now = now or datetime.now(UTC).astimezone()
    return admin_home_view(
        AdminHome(
            now=now,
            store=_read_store(services.database, now, reference),
            documents=_read_documents(services.search, now, reference),
            reference=reference,
            verified=_read_verified(services, now, reference),
        )
    )


def _read_verified(
    services: Services, now: datetime, reference: str | None
) -> VerifiedOverview | None:
    embedder = services.search.embedder
    try:
        with services.database.transaction() as session:
            stale = verified_answers.listed(session, VerifiedAnswerStatus.STALE)
            reused = verified_answers.most_reused(session, REUSED_SHOWN)
            gaps = recent_gaps(
                session, now, lambda texts: embedder.encode_documents(list(texts), batch_size=32)
            )
            return VerifiedOverview(
                stale=[_line(row) for row in stale[:STALE_SHOWN]],
                stale_total=len(stale),
                most_reused=[_line(row) for row in reused],
                gaps=[GapLine(gap.question, gap.count) for gap in gaps[:GAPS_SHOWN]],
            )
    except Exception:
        logger.exception("App Home: could not read the verified answers request=%s", reference)
        return None


def _line(row: VerifiedAnswer) -> VerifiedLine:
    return VerifiedLine(row.id, row.question, row.author, row.reuse_count, row.status_reason)


def _read_store(database: Database, now: datetime, reference: str | None) -> StoreInsights | None:
    try:
        with database.transaction() as session:
            return store_insights(session, now=now, escalation_limit=ESCALATIONS_SHOWN)
    except Exception:
        # Any failure: the tab still shows what else it can, and says what is missing.
        logger.exception("App Home: could not read the store request=%s", reference)
        return None


def _read_documents(
    search: PolicySearch, now: datetime, reference: str | None
) -> list[DocumentSummary] | None:
    try:
        # The search's own store: the embedded one is opened once per process.
        registry = read_versions(search.store)
    except Exception:
        logger.exception("App Home: could not read the policy documents request=%s", reference)
        return None
    return summarize_documents(registry, now.date())
