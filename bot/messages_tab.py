"""The Messages tab's greeting: suggested prompts, the configured ones first, then what this
workspace asked most in the last 30 days that the reader may see.

A question from the workspace is offered only when two or more people asked it, its answer
drew on audiences the reader may read, and it carries nothing personal or sensitive (no
phone number, e-mail or card; no accident or injury): other people's words are shown here.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from slack_sdk import WebClient
from sqlalchemy.exc import SQLAlchemyError

from bot.services import Services
from serving.escalation_rules import EscalationRules
from serving.redaction import redact
from store.popular_questions import most_asked
from store.types import utcnow

logger = logging.getLogger(__name__)

PROMPTS_SHOWN = 4  # Slack shows four suggested prompts at most
PROMPTS_TITLE = "Ask me about current dispatch and service policy, for example:"
MOST_ASKED_WINDOW = timedelta(days=30)


def suggested_prompts(
    services: Services, *, team_id: str, user_id: str, client: WebClient
) -> list[dict[str, str]]:
    """The prompts for one reader: {"title", "message"} each, four at most."""
    settings = services.settings
    rules = EscalationRules.from_settings(settings)
    try:
        audiences = services.access.user_audiences(user_id, client)
        with services.database.transaction() as session:
            asked = most_asked(
                session,
                team_id=team_id,
                since=utcnow() - MOST_ASKED_WINDOW,
                audiences=audiences,
                limit=PROMPTS_SHOWN * 3,
            )
    except SQLAlchemyError:
        logger.warning("cannot read the most asked questions; offering the configured ones")
        asked = []
    return choose_prompts(
        settings.slack_suggested_prompts, [question.text for question in asked], rules
    )


def choose_prompts(
    configured: list[str], most_asked: list[str], rules: EscalationRules
) -> list[dict[str, str]]:
    """The configured prompts, then the most asked questions fit to show anyone."""
    chosen = list(configured)
    for text in most_asked:
        if rules.sensitive_term(text) or rules.asks_for_a_person(text) or redact(text)[1]:
            continue
        chosen.append(text)
    prompts: list[dict[str, str]] = []
    seen: set[str] = set()
    for text in chosen:
        if text.casefold() not in seen:
            seen.add(text.casefold())
            prompts.append({"title": text, "message": text})
    return prompts[:PROMPTS_SHOWN]
