"""The one model client: LangChain's ChatOpenAI against vLLM's OpenAI-compatible API, with
streaming, timeouts, usage and latency, and ordered fallback endpoints. A model with a server
of its own (the router says) is asked there first, then at the configured endpoints.

Fallback happens only before the first token: once text has been shown, switching to
another server would splice two models' output, so a later failure is raised instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import openai
from langchain_core.messages import MessageLikeRepresentation
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from serving.routing import AdapterRouter, Route, TaskKind
from serving.streams import ResultStream
from store.errors import ErrorKind, Unavailable
from store.settings import Settings

logger = logging.getLogger(__name__)


# The prompt's source markup (serving/prompts.py); an answer never needs to write it.
ECHO_STOPS = ("<source", "</source")


class ModelError(Unavailable):
    """Generation failed; the message says what went wrong and what to do."""


@dataclass(frozen=True)
class EndpointFailure:
    endpoint: str
    reason: str


class ModelUnavailable(ModelError):
    """No endpoint produced a first token: all were down, timed out, or failed."""

    def __init__(self, failures: Sequence[EndpointFailure]) -> None:
        self.failures = tuple(failures)
        tried = "; ".join(f"{failure.endpoint} ({failure.reason})" for failure in failures)
        super().__init__(
            f"no model endpoint answered: {tried}. Start the local model with "
            "`dispatchbot model serve`, or check LLM_BASE_URL / LLM_FALLBACK_URLS."
        )


class ModelRequestRejected(ModelError):
    """An endpoint refused the request itself (4xx): another endpoint would refuse it too."""

    kind = ErrorKind.REFUSED


class ModelStreamInterrupted(ModelError):
    """The serving endpoint failed after text had already been streamed."""


STOPPED = "stopped"  # the finish reason of a generation its reader stopped


@dataclass(frozen=True)
class GenerationResult:
    """One answer and how it was produced; the fields map onto the `answers` table."""

    text: str
    endpoint: str
    model: str  # the base model
    adapter: str | None  # the LoRA adapter that answered, None for the base model
    prompt_tokens: int | None  # None when the server did not report usage
    completion_tokens: int | None
    ttft_ms: float  # from the call to the first token, fallback attempts included
    latency_ms: float  # from the call to the last token
    finish_reason: str | None
    skipped: tuple[EndpointFailure, ...] = field(default=())

    @property
    def tokens_per_s(self) -> float | None:
        """Decode speed after the first token."""
        decode_s = (self.latency_ms - self.ttft_ms) / 1000
        if not self.completion_tokens or self.completion_tokens < 2 or decode_s <= 0:
            return None
        return (self.completion_tokens - 1) / decode_s


# Text chunks as the model writes them, then how the answer was produced.
AnswerStream = ResultStream[str, GenerationResult]


class ModelClient:
    """Streams chat answers from the first endpoint that responds."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        router: AdapterRouter,
        api_key: SecretStr,
        connect_timeout_s: float,
        read_timeout_s: float,
        max_tokens: int,
        temperature: float = 0.2,
        sampling: Mapping[str, Any] | None = None,
    ) -> None:
        """`sampling`: vLLM's own request parameters beyond OpenAI's (repetition_penalty,
        structured_outputs, ...), sent with every request."""
        if not endpoints:
            raise ValueError("at least one endpoint is needed; set LLM_BASE_URL")
        self.endpoints = tuple(dict.fromkeys(endpoints))  # a URL listed twice is tried once
        self.router = router
        # The read timeout bounds the wait for the first token and every gap between tokens.
        # openai.Timeout is the timeout class of the HTTP library this openai SDK uses.
        timeout = openai.Timeout(read_timeout_s, connect=connect_timeout_s)
        self._chat_options: dict[str, Any] = {
            "api_key": api_key,
            "model": router.base_model,
            "timeout": timeout,
            "max_retries": 0,  # retrying is the next endpoint's job
            "max_tokens": max_tokens,
            # Policy answers want the likeliest wording, not variety; the server's default
            # of 1.0 sends a small model off the rails.
            "temperature": temperature,
            "stream_usage": True,
            # A small model sometimes starts copying its source list back: stop there.
            "stop": list(ECHO_STOPS),
            "extra_body": dict(sampling) if sampling else None,
        }
        # A model's own server (a promotion's) joins when a route first names it.
        self._chats = {
            endpoint: ChatOpenAI(base_url=endpoint, **self._chat_options)
            for endpoint in self.endpoints
        }

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        promoted: Callable[[], str | None] | None = None,
        served_at: Callable[[str], str | None] | None = None,
    ) -> ModelClient:
        """`promoted` names the adapter that answers unrouted questions and `served_at` the
        server of a model's own (see PromotedAdapter in promotion.py)."""
        return cls(
            settings.llm_endpoints,
            router=AdapterRouter.from_settings(settings, promoted, served_at),
            api_key=settings.llm_api_key,
            connect_timeout_s=settings.llm_connect_timeout_s,
            read_timeout_s=settings.llm_read_timeout_s,
            max_tokens=settings.llm_max_tokens,
            temperature=settings.llm_temperature,
            # 1.0 is no penalty: nothing is sent that a server other than vLLM could refuse.
            sampling=(
                {"repetition_penalty": settings.llm_repetition_penalty}
                if settings.llm_repetition_penalty != 1.0
                else None
            ),
        )

    def stream(
        self,
        messages: Sequence[MessageLikeRepresentation],
        *,
        model: str | None = None,
        channel: str | None = None,
        task_kind: TaskKind | str | None = None,
    ) -> AnswerStream:
        """Start an answer; nothing is sent until the stream is iterated."""
        route = self.router.route(model=model, channel=channel, task_kind=task_kind)
        stopped = threading.Event()
        return AnswerStream(
            self._generate(list(messages), route, stopped), GenerationResult, stopped
        )

    def complete(
        self,
        messages: Sequence[MessageLikeRepresentation],
        *,
        model: str | None = None,
        channel: str | None = None,
        task_kind: TaskKind | str | None = None,
    ) -> GenerationResult:
        answer = self.stream(messages, model=model, channel=channel, task_kind=task_kind)
        for _ in answer:
            pass
        return answer.result

    def _generate(
        self, messages: list[MessageLikeRepresentation], route: Route, stopped: threading.Event
    ) -> Iterator[str | GenerationResult]:
        started = time.perf_counter()
        skipped: list[EndpointFailure] = []
        for endpoint in self._endpoints_for(route):
            parts: list[str] = []
            first_token_at: float | None = None
            usage = None
            finish_reason: str | None = None
            chunks = self._chat(endpoint).stream(messages, model=route.served_model)
            # stream() is a generator function, typed as returning an Iterator; a generator
            # can be closed when the answer is stopped.
            assert isinstance(chunks, Generator)
            try:
                for chunk in chunks:
                    if chunk.text:
                        if first_token_at is None:
                            first_token_at = time.perf_counter()
                        parts.append(chunk.text)
                        yield chunk.text
                    usage = chunk.usage_metadata or usage
                    finish_reason = chunk.response_metadata.get("finish_reason") or finish_reason
                    if stopped.is_set():
                        finish_reason = STOPPED
                        break
            except (openai.APIConnectionError, openai.InternalServerError) as error:
                # APITimeoutError is an APIConnectionError: a silent server lands here too.
                if parts:
                    raise ModelStreamInterrupted(
                        f"{endpoint} failed mid-answer ({_reason(error)}); the partial answer "
                        "was discarded. Ask again; check the server's log if it repeats."
                    ) from error
                skipped.append(EndpointFailure(endpoint, _reason(error)))
                logger.warning("model endpoint %s unavailable (%s)", endpoint, skipped[-1].reason)
                continue
            except openai.APIStatusError as error:
                if isinstance(error, openai.NotFoundError) and route.promoted and not parts:
                    logger.warning(
                        "%s does not serve the promoted adapter %s; the base model answers. "
                        "Reload it: `dispatchbot model serve` for the local vLLM, "
                        "`dispatchbot promote` for another server.",
                        endpoint,
                        route.adapter,
                    )
                    yield from self._generate(messages, Route(route.base_model, None), stopped)
                    return
                raise ModelRequestRejected(
                    f"{endpoint} rejected the request for model {route.served_model!r}: "
                    f"HTTP {error.status_code} {_server_message(error)}. If that adapter is not "
                    "loaded there, fix ADAPTER_ROUTES or load it."
                ) from error
            finally:
                chunks.close()  # a stopped stream lets go of its connection now
            finished = time.perf_counter()
            result = GenerationResult(
                text="".join(parts),
                endpoint=endpoint,
                model=route.base_model,
                adapter=route.adapter,
                prompt_tokens=usage["input_tokens"] if usage else None,
                completion_tokens=usage["output_tokens"] if usage else None,
                ttft_ms=((first_token_at or finished) - started) * 1000,
                latency_ms=(finished - started) * 1000,
                finish_reason=finish_reason,
                skipped=tuple(skipped),
            )
            # Metadata only: message text can hold customer data and never goes to the log.
            logger.info(
                "generated endpoint=%s model=%s ttft_ms=%.0f latency_ms=%.0f "
                "prompt_tokens=%s completion_tokens=%s skipped=%d",
                endpoint,
                route.served_model,
                result.ttft_ms,
                result.latency_ms,
                result.prompt_tokens,
                result.completion_tokens,
                len(skipped),
            )
            yield result
            return
        raise ModelUnavailable(skipped)

    def _endpoints_for(self, route: Route) -> tuple[str, ...]:
        if route.endpoint is None:
            return self.endpoints
        return tuple(dict.fromkeys((route.endpoint, *self.endpoints)))

    def _chat(self, endpoint: str) -> ChatOpenAI:
        chat = self._chats.get(endpoint)
        if chat is None:
            # Two threads may both build one; the second simply replaces the first.
            chat = self._chats[endpoint] = ChatOpenAI(base_url=endpoint, **self._chat_options)
        return chat


def _reason(error: openai.APIError) -> str:
    if isinstance(error, openai.APITimeoutError):
        return "timed out"
    if isinstance(error, openai.APIStatusError):
        return f"HTTP {error.status_code}"
    # LangChain and the SDK each wrap the transport error; its own text is the useful one.
    cause: BaseException = error
    while isinstance(cause, openai.APIError) and cause.__cause__ is not None:
        cause = cause.__cause__
    return "cannot connect" if cause is error else f"cannot connect: {cause}"


def _server_message(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        return str(body.get("message", body))[:300]
    return str(error.message)[:300]
