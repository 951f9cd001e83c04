"""Refuse a signed Slack request that arrives a second time.

Slack signs every delivery when it sends it (`v0:<timestamp>:<body>`), and Bolt refuses a
timestamp more than five minutes off; within those five minutes a captured request would
still pass the signature check. Slack never signs two deliveries alike (a retry carries a
new timestamp, hence a new signature), so a (timestamp, signature) pair seen before is a
replay. The memory is per process: across replicas the store's event_id dedupe still
drops a replayed event, and votes and claims are idempotent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from slack_bolt import BoltRequest, BoltResponse

logger = logging.getLogger(__name__)

# Bolt accepts a timestamp up to five minutes off either way; a pair is remembered until
# its timestamp could no longer pass.
SIGNATURE_WINDOW_S = 5 * 60
# Far more deliveries than Slack sends one process in ten minutes; a pair pushed out early
# is still caught by the event dedupe.
DEFAULT_CAPACITY = 100_000


class ReplayGuard:
    """Remembers the signed deliveries of the last minutes; thread-safe, bounded (LRU)."""

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        *,
        window_s: float = SIGNATURE_WINDOW_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._capacity = capacity
        self._window_s = window_s
        self._clock = clock
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()  # pair -> forget at
        self._lock = threading.Lock()

    def first_sight(self, timestamp: str, signature: str) -> bool:
        """True the first time a (timestamp, signature) pair is seen, False for a replay."""
        now = self._clock()
        try:
            forget_at = float(timestamp) + self._window_s
        except ValueError:
            forget_at = now + self._window_s
        key = (timestamp, signature)
        with self._lock:
            self._forget_expired(now)
            if key in self._seen:
                return False
            self._seen[key] = max(forget_at, now)
            while len(self._seen) > self._capacity:
                self._seen.popitem(last=False)
            return True

    def _forget_expired(self, now: float) -> None:
        # Pairs arrive roughly in timestamp order, so the oldest entries expire first.
        while self._seen:
            oldest, forget_at = next(iter(self._seen.items()))
            if forget_at > now:
                return
            del self._seen[oldest]

    def reject_replays(
        self, request: BoltRequest, next: Callable[[], BoltResponse]
    ) -> BoltResponse:
        """Bolt middleware; runs after Bolt's signature check, so only signed pairs count."""
        timestamp = (request.headers.get("x-slack-request-timestamp") or [""])[0]
        signature = (request.headers.get("x-slack-signature") or [""])[0]
        if request.mode != "http" or not signature or self.first_sight(timestamp, signature):
            return next()
        logger.warning("refused a replayed Slack request (timestamp %s)", timestamp)
        return BoltResponse(status=401, body={"error": "replayed request"})
