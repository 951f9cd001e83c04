"""Which document audiences a question may see: the channel's in a channel, the asker's in a DM.

Everyone in a channel reads the answer, so a channel sees what the channel is granted,
never what the asker could see alone. A direct message is read by the asker only: it sees
what their user id and their Slack user groups are granted. Every context sees `all` and
AUDIENCE_DEFAULT; an audience granted nowhere is seen nowhere (default deny).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.incoming import Question
from retrieval.documents import DEFAULT_AUDIENCE
from store.settings import Settings

logger = logging.getLogger(__name__)

# Group membership changes rarely; usergroups.users.list is a Tier 2 method (~20 a minute).
MEMBERSHIP_TTL_S = 300.0
# After a failed lookup the group grants nothing; try Slack again after this long.
FAILED_LOOKUP_RETRY_S = 30.0


@dataclass(frozen=True)
class _Membership:
    users: frozenset[str] | None  # None: the lookup failed, the group grants nothing
    until: float  # time.monotonic() when it is looked up again


@dataclass
class GroupMembership:
    """Members of Slack user groups, looked up with usergroups.users.list and cached."""

    clock: Callable[[], float] = time.monotonic
    _cache: dict[str, _Membership] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def members(self, group_id: str, client: WebClient) -> frozenset[str]:
        """The group's members; empty when Slack would not say (fail closed)."""
        now = self.clock()
        with self._lock:
            cached = self._cache.get(group_id)
        if cached is None or cached.until <= now:
            cached = self._look_up(group_id, client, now)
            with self._lock:
                self._cache[group_id] = cached
        return cached.users or frozenset()

    def _look_up(self, group_id: str, client: WebClient, now: float) -> _Membership:
        try:
            users = client.usergroups_users_list(usergroup=group_id).get("users")
            if not isinstance(users, list):
                raise ValueError("no `users` list in the response")
        except Exception as error:
            # Whatever went wrong (a missing scope, Slack down, a timeout), grant nothing.
            reason = (
                error.response.get("error")
                if isinstance(error, SlackApiError)
                else type(error).__name__
            )
            logger.warning(
                "could not read user group %s (%s): its audiences are not granted", group_id, reason
            )
            return _Membership(None, now + FAILED_LOOKUP_RETRY_S)
        return _Membership(frozenset(map(str, users)), now + MEMBERSHIP_TTL_S)


@dataclass(frozen=True)
class AudiencePolicy:
    """The audience settings as lookups; one per process, so the membership cache is shared."""

    everywhere: frozenset[str]
    channels: dict[str, frozenset[str]]
    user_groups: dict[str, frozenset[str]]
    users: dict[str, frozenset[str]]
    membership: GroupMembership = field(default_factory=GroupMembership, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> AudiencePolicy:
        return cls(
            everywhere=frozenset({DEFAULT_AUDIENCE, *settings.audience_default}),
            channels=_frozen(settings.audience_channels),
            user_groups=_frozen(settings.audience_user_groups),
            users=_frozen(settings.audience_users),
        )

    def audiences_for(self, question: Question, client: WebClient) -> frozenset[str]:
        """What an answer to `question` may cite, where it will be read."""
        if not question.is_direct_message:
            return self.channel_audiences(question.channel_id)
        return self.user_audiences(question.user_id, client)

    def known_audiences(self) -> frozenset[str]:
        """Every audience the settings name: what a verified answer may be limited to."""
        named = [self.everywhere, *self.channels.values(), *self.user_groups.values()]
        return frozenset().union(*named, *self.users.values())

    def channel_audiences(self, channel_id: str) -> frozenset[str]:
        """What everyone in a channel may read (the escalation channel's cards too)."""
        return self.everywhere | self.channels.get(channel_id, frozenset())

    def user_audiences(self, user_id: str, client: WebClient) -> frozenset[str]:
        """What one person may read alone: their own grants and their user groups'."""
        granted = self.everywhere | self.users.get(user_id, frozenset())
        for group_id, audiences in self.user_groups.items():
            if audiences <= granted:
                continue  # nothing new: spare the lookup
            if user_id in self.membership.members(group_id, client):
                granted |= audiences
        return granted


def _frozen(mapping: dict[str, list[str]]) -> dict[str, frozenset[str]]:
    return {key: frozenset(values) for key, values in mapping.items()}
