"""Where the bot answers: the per-channel settings, as one small value object."""

from __future__ import annotations

from dataclasses import dataclass

from bot.incoming import Question
from store.settings import Settings


@dataclass(frozen=True)
class ChannelPolicy:
    answer_channels: frozenset[str]  # empty: every channel the bot is in
    listen_channels: frozenset[str]  # every new message there is a question

    @classmethod
    def from_settings(cls, settings: Settings) -> ChannelPolicy:
        return cls(
            answer_channels=frozenset(settings.slack_answer_channels),
            listen_channels=frozenset(settings.slack_listen_channels),
        )

    def answers_in(self, question: Question) -> bool:
        if question.is_direct_message or not self.answer_channels:
            return True
        return question.channel_id in self.answer_channels

    def takes_every_message_in(self, channel_id: str) -> bool:
        return channel_id in self.listen_channels and (
            not self.answer_channels or channel_id in self.answer_channels
        )
