"""Bolt listeners: each module registers the handlers of one concern through `Listeners`."""

from __future__ import annotations

from slack_bolt import App

from bot.channels import ChannelPolicy
from bot.listeners import escalations, feedback, home, questions
from bot.listeners.registry import Listeners, app_error_handler
from bot.services import Services


def register_listeners(app: App, services: Services) -> Listeners:
    listeners = Listeners(app)
    questions.register(listeners, services, ChannelPolicy.from_settings(services.settings))
    feedback.register(listeners, services)
    escalations.register(listeners, services)
    home.register(listeners, services)
    app.error(app_error_handler)
    return listeners
