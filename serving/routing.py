"""Which served model answers a request: a LoRA adapter routed by Slack channel or by task
kind, else the base model. vLLM serves every adapter under its own model name, so routing is
only the choice of that name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from store.settings import Settings


class TaskKind(StrEnum):
    """The kinds of question the assistant handles; ADAPTER_ROUTES may key on them."""

    DISPATCH = "dispatch"
    SERVICE_TICKET = "service_ticket"


@dataclass(frozen=True)
class Route:
    base_model: str
    adapter: str | None  # None: the base model answers

    @property
    def served_model(self) -> str:
        """The `model` field of the request."""
        return self.adapter or self.base_model


class AdapterRouter:
    """Resolves a request to a served model: channel route, then task-kind route, then base."""

    def __init__(self, routes: Mapping[str, str], base_model: str) -> None:
        self._routes = dict(routes)
        self.base_model = base_model

    @classmethod
    def from_settings(cls, settings: Settings) -> AdapterRouter:
        return cls(settings.adapter_routes, settings.llm_model)

    def route(
        self,
        *,
        model: str | None = None,
        channel: str | None = None,
        task_kind: TaskKind | str | None = None,
    ) -> Route:
        """An explicit `model` wins (e.g. an evaluation pinning an adapter version)."""
        name = (
            model
            or (self._routes.get(channel) if channel else None)
            or (self._routes.get(str(task_kind)) if task_kind else None)
            or self.base_model
        )
        return Route(self.base_model, None if name == self.base_model else name)
