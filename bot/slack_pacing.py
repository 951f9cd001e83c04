"""How often the bot calls each Slack method, kept within Slack's rate tiers.

Slack limits each Web API method per workspace by tier (Tier 2: 20 calls a minute, Tier 3:
50, Tier 4: 100, with short bursts allowed). An answer's necessary calls (its start, its
final message) always go; the calls that only show sooner what the final message will show
anyway (a status, the first words, later streamed text, an edited placeholder) go only while
the method has room, so 50 answers in flight share one minute's allowance instead of each
refreshing once a second. A skipped refresh loses nothing: a later call carries the text.

Each process paces its own calls; replicas sharing a workspace each keep to the tiers, so
set SLACK_PACING_SHARE below 1 to give each of N replicas its part.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Calls a minute per workspace, from the tiers in Slack's method reference.
TIER_PER_MINUTE = {2: 20, 3: 50, 4: 100}
METHOD_TIERS = {
    "assistant.threads.setStatus": 4,
    "chat.appendStream": 4,
    "chat.update": 3,
}
# What a routine refresh leaves unused of the minute's allowance: room for the first sign
# and first words of answers still to come, and for necessary calls of the same method.
RESERVE = 0.3


@dataclass
class _Bucket:
    """One minute's allowance, refilled evenly (a token bucket the size of the tier)."""

    capacity: float
    tokens: float
    refilled_at: float

    def refill(self, now: float) -> None:
        rate = self.capacity / 60.0
        self.tokens = min(self.capacity, self.tokens + (now - self.refilled_at) * rate)
        self.refilled_at = now


@dataclass
class SlackPacing:
    """Decides whether an optional call may go now; counts every call of a paced method."""

    share: float = 1.0
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[tuple[str, str], _Bucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def may_refresh(self, method: str, team_id: str, *, reserve: float = RESERVE) -> bool:
        """Take an optional call of `method` if the workspace has room for it beyond
        `reserve` (a share of the allowance); False: skip it, a later call shows the same."""
        with self._lock:
            bucket = self._bucket(method, team_id)
            if bucket is None:
                return True
            if bucket.tokens - 1 < bucket.capacity * reserve:
                return False
            bucket.tokens -= 1
            return True

    def spend(self, method: str, team_id: str) -> None:
        """Count a necessary call of `method`: it goes whatever is left."""
        with self._lock:
            bucket = self._bucket(method, team_id)
            if bucket is not None:
                bucket.tokens -= 1

    def _bucket(self, method: str, team_id: str) -> _Bucket | None:
        tier = METHOD_TIERS.get(method)
        if tier is None:
            return None
        now = self.clock()
        bucket = self._buckets.get((method, team_id))
        if bucket is None:
            capacity = TIER_PER_MINUTE[tier] * self.share
            bucket = self._buckets[(method, team_id)] = _Bucket(capacity, capacity, now)
        bucket.refill(now)
        return bucket
