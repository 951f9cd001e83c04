"""Adapter routing and the settings that feed it and the client's endpoint list."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from serving.llm_client import ModelClient
from serving.routing import AdapterRouter, Route, TaskKind
from store.settings import Settings

ROUTES = {"C_DISPATCH": "dispatch-v2", "service_ticket": "tickets-v1", "dispatch": "dispatch-v1"}


@pytest.fixture
def router() -> AdapterRouter:
    return AdapterRouter(ROUTES, "base")


def test_a_routed_channel_gets_its_adapter_even_for_another_task_kind(
    router: AdapterRouter,
) -> None:
    route = router.route(channel="C_DISPATCH", task_kind=TaskKind.SERVICE_TICKET)

    assert route == Route(base_model="base", adapter="dispatch-v2")
    assert route.served_model == "dispatch-v2"


def test_an_unrouted_channel_falls_back_to_the_task_kind(router: AdapterRouter) -> None:
    assert (
        router.route(channel="C_OTHER", task_kind=TaskKind.SERVICE_TICKET).adapter == "tickets-v1"
    )
    assert router.route(task_kind="dispatch").adapter == "dispatch-v1"


def test_nothing_routed_means_the_base_model(router: AdapterRouter) -> None:
    route = router.route(channel="C_OTHER")

    assert route == Route(base_model="base", adapter=None)
    assert route.served_model == "base"


def test_an_explicit_model_wins_and_naming_the_base_model_means_no_adapter(
    router: AdapterRouter,
) -> None:
    assert router.route(model="eval-v9", channel="C_DISPATCH").adapter == "eval-v9"
    assert router.route(model="base", channel="C_DISPATCH").adapter is None


def test_a_model_with_a_server_of_its_own_is_routed_there() -> None:
    own_servers = {"acme-v3": "http://127.0.0.1:8101/v1"}
    router = AdapterRouter(ROUTES, "base", lambda: "acme-v3", own_servers.get)

    assert router.route().endpoint == "http://127.0.0.1:8101/v1"
    assert router.route(model="acme-v3").endpoint == "http://127.0.0.1:8101/v1"
    assert router.route(channel="C_DISPATCH").endpoint is None  # dispatch-v2 has none
    assert router.route(model="base").endpoint is None
    assert AdapterRouter(ROUTES, "base", lambda: "acme-v3").route().endpoint is None


def test_routes_and_fallbacks_come_from_friendly_environment_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ADAPTER_ROUTES", "C1=acme-v2, dispatch=dispatch-v1")
    monkeypatch.setenv("LLM_FALLBACK_URLS", "http://gpu-b:8000/v1, http://gpu-c:8000/v1")
    monkeypatch.setenv("LLM_BASE_URL", "http://gpu-a:8000/v1")
    settings = Settings(_env_file=None)

    assert AdapterRouter.from_settings(settings).route(channel="C1").adapter == "acme-v2"
    assert ModelClient.from_settings(settings).endpoints == (
        "http://gpu-a:8000/v1",
        "http://gpu-b:8000/v1",
        "http://gpu-c:8000/v1",
    )


def test_json_values_work_too_and_the_base_url_follows_the_local_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LLM_BASE_URL", raising=False)
    monkeypatch.setenv("ADAPTER_ROUTES", '{"service_ticket": "tickets-v3"}')
    monkeypatch.setenv("LLM_FALLBACK_URLS", '["http://gpu-b:8000/v1"]')
    monkeypatch.setenv("VLLM_LOCAL_PORT", "8211")
    settings = Settings(_env_file=None)

    assert settings.adapter_routes == {"service_ticket": "tickets-v3"}
    assert settings.llm_fallback_urls == ["http://gpu-b:8000/v1"]
    assert settings.llm_base_url == "http://127.0.0.1:8211/v1"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("ADAPTER_ROUTES", "C1"), ("ADAPTER_ROUTES", "{not json"), ("VLLM_MAX_LORA_RANK", "12")],
)
def test_malformed_values_are_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ValidationError, match=variable.lower()):
        Settings(_env_file=None)
