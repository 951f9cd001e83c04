"""Which trained adapter answers: promotion, canary shares and rollback, kept in the store.

The promoted version answers every question that ADAPTER_ROUTES does not route elsewhere; a
canary answers a share of them beside it. Bot processes read this from the store (a few
seconds' cache), so a promotion reaches every replica without a restart. vLLM serves each
version under its own name, never reused, because its prefix cache is keyed by that name.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from serving.model_gate import GateResult
from serving.vllm_admin import AdapterError, list_served_models, load_adapter
from store.database import Database
from store.models import ModelVersion, ModelVersionStatus
from store.repository import canary_version, find_model_version, promoted_version
from store.types import utcnow


class PromotionError(Exception):
    """A promotion or rollback the registry cannot make; the message says why and what to do."""


@dataclass(frozen=True)
class ActiveVersions:
    promoted: str | None  # None: the base model answers
    canary: str | None = None
    canary_share: float = 0.0


def active_versions(session: Session) -> ActiveVersions:
    promoted = promoted_version(session)
    canary = canary_version(session)
    return ActiveVersions(
        promoted=promoted.name if promoted else None,
        canary=canary.name if canary else None,
        canary_share=(canary.canary_share or 0.0) if canary else 0.0,
    )


class PromotedAdapter:
    """The adapter for an unrouted question, read from the store at most every `refresh_s`."""

    def __init__(
        self,
        database: Database,
        *,
        refresh_s: float = 5.0,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._database = database
        self._refresh_s = refresh_s
        self._draw = draw
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._active = ActiveVersions(promoted=None)

    def __call__(self) -> str | None:
        active = self.current()
        if active.canary and self._draw() < active.canary_share:
            return active.canary
        return active.promoted

    def current(self) -> ActiveVersions:
        with self._lock:
            if time.monotonic() - self._read_at >= self._refresh_s:
                with self._database.transaction() as session:
                    self._active = active_versions(session)
                self._read_at = time.monotonic()
            return self._active


def make_servable(
    version: ModelVersion, endpoints: Sequence[str], *, api_key: str | None = None
) -> None:
    """Load the version's adapter into every endpoint that does not serve it yet."""
    if version.adapter_path is None:
        raise PromotionError(f"{version.name} has no adapter folder recorded")
    path = Path(version.adapter_path)
    if not (path / "adapter_config.json").is_file():
        raise PromotionError(f"{version.name}: no adapter at {path}; train it again")
    for endpoint in endpoints:
        try:
            served = {model.id for model in list_served_models(endpoint, api_key=api_key)}
        except Exception as error:
            raise PromotionError(f"cannot reach the model server at {endpoint}: {error}") from error
        if version.name not in served:
            try:
                load_adapter(endpoint, version.name, path, api_key=api_key)
            except AdapterError as error:
                raise PromotionError(str(error)) from error


def promote(
    session: Session,
    name: str,
    *,
    endpoints: Sequence[str],
    canary_share: float | None = None,
    force: bool = False,
    api_key: str | None = None,
) -> ModelVersion:
    """Serve `name` (for a share of questions when `canary_share` is given) and record it.

    Without `force`, the version must have passed the evaluation gate.
    """
    version = _version(session, name)
    if version.status is ModelVersionStatus.PROMOTED and canary_share is None:
        raise PromotionError(f"{name} is already the promoted version")
    if version.status in (ModelVersionStatus.REJECTED, ModelVersionStatus.RETIRED) and not force:
        raise PromotionError(f"{name} is {version.status.value}; use --force to bring it back")
    gate = GateResult.stored_on(version.metrics)
    if not force and not (gate and gate.passed):
        raise PromotionError(
            f"{name} has not passed the evaluation gate; run `dispatchbot evaluate model "
            f"--candidate {name}` first, or promote with --force"
        )
    make_servable(version, endpoints, api_key=api_key)
    if canary_share is not None:
        if not 0 < canary_share < 1:
            raise PromotionError("a canary share is between 0 and 1, like 0.1")
        for other in _with_canary(session):
            other.canary_share = None
        version.status = ModelVersionStatus.CANDIDATE
        version.canary_share = canary_share
    else:
        for current in _with_status(session, ModelVersionStatus.PROMOTED):
            current.status = ModelVersionStatus.RETIRED
        version.status = ModelVersionStatus.PROMOTED
        version.canary_share = None
        version.promoted_at = utcnow()
    session.flush()
    return version


def rollback(
    session: Session, *, endpoints: Sequence[str], api_key: str | None = None
) -> ActiveVersions:
    """Stop the canary if there is one; else return to the version promoted before.

    The version rolled back from is rejected, so a second rollback goes further back.
    """
    canaries = _with_canary(session)
    if canaries:
        for canary in canaries:
            canary.canary_share = None
            canary.status = ModelVersionStatus.REJECTED
        session.flush()
        return active_versions(session)
    current = _with_status(session, ModelVersionStatus.PROMOTED)
    if not current:
        raise PromotionError("nothing to roll back: the base model answers already")
    for version in current:
        version.status = ModelVersionStatus.REJECTED
    previous = session.scalars(
        select(ModelVersion)
        .where(
            ModelVersion.status == ModelVersionStatus.RETIRED,
            ModelVersion.promoted_at.is_not(None),
        )
        .order_by(ModelVersion.promoted_at.desc())
    ).first()
    if previous is not None:
        make_servable(previous, endpoints, api_key=api_key)
        previous.status = ModelVersionStatus.PROMOTED
        previous.promoted_at = utcnow()
    session.flush()
    return active_versions(session)


def _version(session: Session, name: str) -> ModelVersion:
    version = find_model_version(session, name)
    if version is None:
        raise PromotionError(
            f"no model version named {name!r}; `dispatchbot model report` lists them"
        )
    return version


def _with_status(session: Session, status: ModelVersionStatus) -> list[ModelVersion]:
    return list(session.scalars(select(ModelVersion).where(ModelVersion.status == status)))


def _with_canary(session: Session) -> list[ModelVersion]:
    return list(
        session.scalars(
            select(ModelVersion).where(
                ModelVersion.canary_share.is_not(None), ModelVersion.canary_share > 0
            )
        )
    )


def restore_active_adapters(database: Database, endpoint: str) -> list[str]:
    """After a (re)start the server has no adapters: load the promoted one and the canary."""
    with database.transaction() as session:
        active = active_versions(session)
        versions = [_version(session, name) for name in (active.promoted, active.canary) if name]
        for version in versions:
            make_servable(version, [endpoint])
        return [version.name for version in versions]
