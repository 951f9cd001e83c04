"""What the Slack app and `ask` need to answer: the store, retrieval and the model, built once.

The embedding model and the policy store are opened here, once per process: the embedded
store is locked to one process, and loading the embedder takes seconds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from bot.access import AudiencePolicy
from bot.replies import StreamingSupport
from bot.slack_pacing import SlackPacing
from retrieval.client import open_store
from retrieval.collection import require_collection
from retrieval.embedding import load_embedder_for
from retrieval.errors import NothingIngestedError
from retrieval.search import PolicySearch
from serving.assistant import Assistant, AssistantSettings
from serving.llm_client import ModelClient
from serving.promotion import PromotedAdapter
from store.database import Database
from store.schema import open_current_database
from store.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    settings: Settings
    database: Database
    assistant: Assistant
    search: PolicySearch
    # Built from the settings: one per process, so user group lookups are cached once.
    access: AudiencePolicy = field(init=False)
    # What Slack allows and how much of its rate tiers is used: one per process.
    streaming: StreamingSupport = field(init=False, default_factory=StreamingSupport)
    pacing: SlackPacing = field(init=False)
    # BOT_ANSWER_WORKERS answers run at once; the others wait for a slot, their status shown.
    answer_slots: threading.BoundedSemaphore = field(init=False)

    def __post_init__(self) -> None:
        settings = self.settings
        object.__setattr__(self, "access", AudiencePolicy.from_settings(settings))
        object.__setattr__(self, "pacing", SlackPacing(share=settings.slack_pacing_share))
        slots = threading.BoundedSemaphore(settings.bot_answer_workers)
        object.__setattr__(self, "answer_slots", slots)


def assistant_settings(settings: Settings) -> AssistantSettings:
    return AssistantSettings(
        k=settings.search_k,
        min_relevance=settings.answer_min_relevance,
        context_tokens=settings.llm_context_tokens,
        reserved_for_answer=settings.llm_max_tokens,
        history_turns=settings.answer_history_turns,
        prompt_sources=settings.answer_prompt_sources,
        min_answer_closeness=settings.answer_min_closeness,
        min_answer_grounding=settings.answer_min_grounding,
        redact_before_model=settings.redact_before_model,
    )


@contextmanager
def open_services(settings: Settings, *, wait_for_ingest: bool = False) -> Iterator[Services]:
    """Open the store, the policy collection and the model client; close them on exit.

    Raises `SchemaOutOfDate` and retrieval errors (`StoreUnavailableError`,
    `NothingIngestedError`, ...) with messages that say what to do. With `wait_for_ingest`
    (the long-running bot) an empty Qdrant is not an error: the bot starts, /readyz says
    what is missing, and the first ingest makes it ready without a restart.
    """
    database = open_current_database(settings.database_url)
    try:
        with open_store(settings) as store:
            embedder = load_embedder_for(settings)
            try:
                require_collection(store, embedder.dimension, embedder.name)
            except NothingIngestedError as error:
                if not wait_for_ingest:
                    raise
                logger.warning("%s; not ready until then", error)
            search = PolicySearch(store, embedder, settings.search_prefetch_limit)
            promoted = PromotedAdapter(database)
            assistant = Assistant(
                search=search,
                model=ModelClient.from_settings(settings, promoted, promoted.served_at),
                database=database,
                settings=assistant_settings(settings),
            )
            yield Services(settings, database, assistant, search)
    finally:
        database.dispose()
