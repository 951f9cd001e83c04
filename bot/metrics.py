"""Prometheus metrics of one bot process, served at /metrics.

Counters and histograms are per process; Prometheus scrapes every replica and sums them.
The escalation gauges are read from the store at scrape time instead, so every replica
reports the same, true backlog (a counter per replica cannot know what another claimed).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from slack_sdk.http_retry import RetryHandler, RetryState
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from bot.spool import QuestionSpool
from serving.assistant import AssistantAnswer
from store.database import Database
from store.models import Escalation, EscalationStatus
from store.types import utcnow

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NO_ADAPTER = "base"  # the label of answers the base model wrote

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

# From 5 ms (store, prompt) to a minute (a long answer on a busy CPU model).
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60)

ANSWER_STAGE_SECONDS = Histogram(
    "dispatchbot_answer_stage_seconds",
    "Time an answer spent in each stage: retrieval, prompt, model, store.",
    ["stage"],
    buckets=_SECONDS,
    registry=REGISTRY,
)
ANSWER_VERIFICATION = Counter(
    "dispatchbot_answer_verifications",
    "Verification of answers by outcome: passed, or the check that failed (then the policy's "
    "own words were shown instead), or not_generated (no model call).",
    ["outcome", "adapter"],
    registry=REGISTRY,
)
ANSWER_SECONDS = Histogram(
    "dispatchbot_answer_seconds",
    "What the asker waits for, from the start of the answer: first_text shown, final message.",
    ["milestone"],
    buckets=_SECONDS,
    registry=REGISTRY,
)
FIRST_TOKEN_SECONDS = Histogram(
    "dispatchbot_model_first_token_seconds",
    "Time from the model call to its first token.",
    buckets=_SECONDS,
    registry=REGISTRY,
)
TOKENS = Counter(
    "dispatchbot_tokens",
    "Tokens the model read (prompt) and wrote (completion), by adapter.",
    ["kind", "adapter"],
    registry=REGISTRY,
)
RETRIEVAL_TOP_SCORE = Histogram(
    "dispatchbot_retrieval_top_score",
    "Relevance of the best policy chunk found for a question (0-1); low means weak evidence.",
    buckets=(0.1, 0.2, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
    registry=REGISTRY,
)
ANSWERS = Counter(
    "dispatchbot_answers",
    "Questions the bot took, by outcome: answered, needs_human (answered and flagged), failed.",
    ["outcome"],
    registry=REGISTRY,
)
FEEDBACK = Counter(
    "dispatchbot_feedback",
    "Votes stored on answers, by value (up, down) and the adapter that wrote the answer.",
    ["value", "adapter"],
    registry=REGISTRY,
)
ESCALATIONS = Counter(
    "dispatchbot_escalations",
    "Escalation changes made by this process, by trigger and the state entered.",
    ["trigger", "state"],
    registry=REGISTRY,
)
SLACK_EVENTS = Counter(
    "dispatchbot_slack_events",
    "Slack events by outcome: handled, or duplicate (a retry, or one another replica took).",
    ["outcome"],
    registry=REGISTRY,
)
SLACK_API_ERRORS = Counter(
    "dispatchbot_slack_api_errors",
    "Slack Web API calls that failed, by method and error (Slack's code, http_NNN, connection).",
    ["method", "error"],
    registry=REGISTRY,
)
SLACK_RATE_LIMIT_RETRIES = Counter(
    "dispatchbot_slack_rate_limit_retries",
    "Slack Web API calls retried after HTTP 429 (waiting for Retry-After), by method.",
    ["method"],
    registry=REGISTRY,
)
QUESTIONS_RATE_LIMITED = Counter(
    "dispatchbot_questions_rate_limited",
    "Questions recorded but not answered: the asker or the channel was over its per-minute "
    "limit, by scope (user, channel).",
    ["scope"],
    registry=REGISTRY,
)


def adapter_label(adapter: str | None) -> str:
    return adapter or NO_ADAPTER


def observe_answer(answer: AssistantAnswer) -> None:
    """Stage timings, tokens and evidence strength of one recorded answer."""
    timings = answer.timings
    stages = {
        "retrieval": timings.retrieval_ms,
        "prompt": timings.prompt_ms,
        "model": timings.model_ms,
        "store": timings.store_ms,
    }
    for stage, ms in stages.items():
        if stage in ("retrieval", "store") or ms > 0:  # not covered: no prompt, no model
            ANSWER_STAGE_SECONDS.labels(stage).observe(ms / 1000)
    adapter = adapter_label(answer.adapter)
    if answer.ttft_ms is not None:
        FIRST_TOKEN_SECONDS.observe(answer.ttft_ms / 1000)
    if answer.prompt_tokens:
        TOKENS.labels("prompt", adapter).inc(answer.prompt_tokens)
    if answer.completion_tokens:
        TOKENS.labels("completion", adapter).inc(answer.completion_tokens)
    if answer.confidence is not None:
        RETRIEVAL_TOP_SCORE.observe(answer.confidence)
    ANSWERS.labels("needs_human" if answer.needs_human else "answered").inc()
    ANSWER_VERIFICATION.labels(answer.verification.outcome.value, adapter).inc()


def count_feedback(value: int, adapter: str | None) -> None:
    FEEDBACK.labels("up" if value > 0 else "down", adapter_label(adapter)).inc()


def count_escalation(trigger: str, state: EscalationStatus) -> None:
    ESCALATIONS.labels(trigger, state.value).inc()


class SlackCallObserver(RetryHandler):
    """Counts failed Web API calls; never asks for a retry.

    slack_sdk shows every response, successful or not, to the client's retry handlers:
    the one place that sees a failure of any call before the caller handles it. Bolt copies
    the handlers into the client it makes for each request, so listeners are counted too.
    """

    def __init__(self) -> None:
        super().__init__(max_retry_count=1_000_000)

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        method = _api_method(request)
        if response is None:
            SLACK_API_ERRORS.labels(method, "connection").inc()
        elif response.status_code >= 400:
            SLACK_API_ERRORS.labels(method, f"http_{response.status_code}").inc()
        elif isinstance(response.body, dict) and response.body.get("ok") is False:
            SLACK_API_ERRORS.labels(method, str(response.body.get("error", "unknown"))).inc()
        return False


class CountedRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """slack_sdk's 429 handler (wait for Retry-After, try again), counting each retry."""

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        SLACK_RATE_LIMIT_RETRIES.labels(_api_method(request)).inc()
        super().prepare_for_next_attempt(
            state=state, request=request, response=response, error=error
        )


def _api_method(request: HttpRequest) -> str:
    return request.url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0] or "unknown"


class SpoolBacklog(Collector):
    """Questions waiting in this replica's spool for the store to come back (bot/spool.py)."""

    def __init__(self, spool: QuestionSpool) -> None:
        self._spool = spool

    def collect(self) -> Iterator[Metric]:
        waiting = GaugeMetricFamily(
            "dispatchbot_spooled_questions",
            "Questions the store could not take, kept on disk until it can; above 0 for long "
            "means the database is still refusing writes.",
        )
        try:
            waiting.add_metric([], len(self._spool.pending()))
        except OSError:
            logger.warning("cannot read the spool %s", self._spool.path)
            return
        yield waiting


class EscalationBacklog(Collector):
    """Unresolved escalations by state and trigger, and the age of the oldest, from the store."""

    def __init__(self, database: Database) -> None:
        self._database = database

    def collect(self) -> Iterator[Metric]:
        waiting = GaugeMetricFamily(
            "dispatchbot_escalations_unresolved",
            "Escalations not yet resolved, by state (open, claimed) and trigger.",
            labels=["state", "trigger"],
        )
        oldest = GaugeMetricFamily(
            "dispatchbot_escalation_oldest_open_seconds",
            "Age of the oldest escalation nobody has claimed (0 when none is open).",
        )
        try:
            rows = self._backlog()
        except SQLAlchemyError:
            # The scrape still serves every other metric; /readyz reports the store.
            logger.warning("cannot read the escalation backlog; the store is unavailable")
            return
        now = utcnow()
        oldest_open: datetime | None = None
        for state, trigger, count, first_created in rows:
            waiting.add_metric([state.value, trigger], count)
            if state is EscalationStatus.OPEN and first_created is not None:
                oldest_open = min(oldest_open or first_created, first_created)
        oldest.add_metric([], (now - oldest_open).total_seconds() if oldest_open else 0.0)
        yield waiting
        yield oldest

    def _backlog(self) -> list[Any]:
        with self._database.transaction() as session:
            return list(
                session.execute(
                    select(
                        Escalation.status,
                        Escalation.trigger,
                        func.count(Escalation.id),
                        func.min(Escalation.created_at),
                    )
                    .where(Escalation.status != EscalationStatus.RESOLVED)
                    .group_by(Escalation.status, Escalation.trigger)
                )
            )


class _Combined:
    def __init__(self, collectors: Iterable[Collector]) -> None:
        self._collectors = tuple(collectors)

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            yield from collector.collect()


def render(*extra: Collector) -> bytes:
    """The process's metrics and those of `extra` collectors, in Prometheus' text format."""
    return generate_latest(_Combined((REGISTRY, *extra)))
