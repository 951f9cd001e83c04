"""/readyz: can this replica answer right now? The store, Qdrant and the model endpoint.

A load balancer or Kubernetes sends traffic only to a ready replica, so each check is
bounded (BOT_READINESS_TIMEOUT_S) and a hung dependency reads as "not ready", not as a
probe that never returns. Results are reused for a second: a probe storm costs the
dependencies one round of checks a second, whatever the request rate.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import text

from bot.services import Services
from retrieval.store import PolicyStore
from store.database import Database

Check = Callable[[], str]  # returns what it found; raises when the dependency is not usable

REUSE_S = 1.0


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    detail: str
    ms: float


@dataclass(frozen=True)
class ReadinessReport:
    checks: Mapping[str, CheckResult]

    @property
    def ready(self) -> bool:
        return all(result.ok for result in self.checks.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "status": "ready" if self.ready else "unready",
            "checks": {
                name: {"ok": result.ok, "detail": result.detail, "ms": round(result.ms, 1)}
                for name, result in self.checks.items()
            },
        }


class Readiness:
    def __init__(self, checks: Mapping[str, Check], timeout_s: float) -> None:
        self._checks = dict(checks)
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._last: tuple[float, ReadinessReport] | None = None

    @classmethod
    def of(cls, services: Services) -> Readiness:
        settings = services.settings
        timeout_s = settings.bot_readiness_timeout_s
        endpoints = settings.llm_endpoints
        return cls(
            {
                "database": database_check(services.database),
                "qdrant": qdrant_check(services.search.store),
                "model": model_check(
                    endpoints, settings.llm_model, settings.llm_api_key, timeout_s
                ),
            },
            timeout_s,
        )

    def report(self) -> ReadinessReport:
        with self._lock:
            now = time.monotonic()
            if self._last is not None and now - self._last[0] < REUSE_S:
                return self._last[1]
            report = ReadinessReport(self._run_all())
            self._last = (time.monotonic(), report)
            return report

    def _run_all(self) -> dict[str, CheckResult]:
        # In parallel on daemon threads: a check stuck in a TCP connect is abandoned, never
        # joined, so it cannot hold up the probe or the process exit.
        results: dict[str, CheckResult] = {}
        threads = []
        for name, check in self._checks.items():
            thread = threading.Thread(
                target=_run_one, args=(name, check, results), name=f"readyz-{name}", daemon=True
            )
            thread.start()
            threads.append((name, thread))
        deadline = time.monotonic() + self._timeout_s
        for _name, thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        timed_out = CheckResult(False, f"no answer within {self._timeout_s:g} s", self._timeout_s)
        return {name: results.get(name, timed_out) for name in self._checks}


def _run_one(name: str, check: Check, results: dict[str, CheckResult]) -> None:
    started = time.perf_counter()
    try:
        detail, ok = check(), True
    except Exception as error:  # any failure means not ready; the detail says which
        detail, ok = f"{type(error).__name__}: {error}", False
    results[name] = CheckResult(ok, detail, (time.perf_counter() - started) * 1000)


def database_check(database: Database) -> Check:
    def check() -> str:
        with database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return f"{database.engine.dialect.name} answers"

    return check


def qdrant_check(store: PolicyStore) -> Check:
    def check() -> str:
        if not store.exists():
            raise LookupError(
                f"collection {store.collection!r} is missing; run `dispatchbot ingest`"
            )
        return f"collection {store.collection!r} is there ({store.engine})"

    return check


def model_check(
    endpoints: Sequence[str], model: str, api_key: SecretStr, timeout_s: float
) -> Check:
    """Ready when some endpoint serves LLM_MODEL: the client falls back along the list."""
    headers = {"Authorization": f"Bearer {api_key.get_secret_value()}"}

    def check() -> str:
        problems = []
        for endpoint in endpoints:
            try:
                response = httpx.get(
                    f"{endpoint.rstrip('/')}/models", headers=headers, timeout=timeout_s
                )
                response.raise_for_status()
                served = {entry.get("id") for entry in response.json().get("data", [])}
            except (httpx.HTTPError, ValueError, AttributeError) as error:
                problems.append(f"{endpoint}: {type(error).__name__}")
                continue
            if model in served:
                return f"{endpoint} serves {model}"
            problems.append(f"{endpoint} does not serve {model}")
        raise ConnectionError("; ".join(problems))

    return check
