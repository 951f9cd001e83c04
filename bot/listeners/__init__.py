"""Bolt listeners: each module registers the handlers of one concern."""

from __future__ import annotations

from slack_bolt import Ack, App

from bot.channels import ChannelPolicy
from bot.listeners import feedback, handoff, home, questions
from bot.services import Services


def ack_now(ack: Ack) -> None:
    """Acknowledge at once; the work runs afterwards in a lazy listener (Slack waits 3 s)."""
    ack()


def register_listeners(app: App, services: Services) -> None:
    channels = ChannelPolicy.from_settings(services.settings)
    questions.register(app, services, channels, ack_now)
    feedback.register(app, services, ack_now)
    handoff.register(app, services, ack_now)
    home.register(app, services, ack_now)
