"""Which served model answers a request: a LoRA adapter routed by Slack channel or by task
kind, else the base model. vLLM serves every adapter under its own model name, so routing is
the choice of that name, and of the server when a model has one of its own (the promoted
version's merged weights on the embedded default)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    # Chosen because it is the promoted version (not pinned or routed): a server that lost
    # the adapter (a restart) may answer with the base model instead of failing the user.
    promoted: bool = False
    # A server of this model's own, tried before the configured endpoints; None: theirs.
    endpoint: str | None = None

    @property
    def served_model(self) -> str:
        """The `model` field of the request."""
        return self.adapter or self.base_model


class AdapterRouter:
    """Resolves a request to a served model: channel route, then task-kind route, then the
    promoted adapter (when `promoted` is given), then the base model. `served_at` names the
    server of a model's own, if it has one (PromotedAdapter.served_at)."""

    def __init__(
        self,
        routes: Mapping[str, str],
        base_model: str,
        promoted: Callable[[], str | None] | None = None,
        served_at: Callable[[str], str | None] | None = None,
    ) -> None:
        self._routes = dict(routes)
        self.base_model = base_model
        self._promoted = promoted
        self._served_at = served_at

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        promoted: Callable[[], str | None] | None = None,
        served_at: Callable[[str], str | None] | None = None,
    ) -> AdapterRouter:
        return cls(settings.adapter_routes, settings.llm_model, promoted, served_at)

    def route(
        self,
        *,
        model: str | None = None,
        channel: str | None = None,
        task_kind: TaskKind | str | None = None,
    ) -> Route:
        """An explicit `model` wins (e.g. an evaluation pinning an adapter version)."""
        routed = (
            model
            or (self._routes.get(channel) if channel else None)
            or (self._routes.get(str(task_kind)) if task_kind else None)
        )
        promoted = None if routed or not self._promoted else self._promoted()
        name = routed or promoted or self.base_model
        adapter = None if name == self.base_model else name
        return Route(
            self.base_model,
            adapter,
            promoted=promoted is not None and name == promoted,
            endpoint=self._served_at(adapter) if adapter and self._served_at else None,
        )
