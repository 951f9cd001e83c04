"""The App Home tab: published afresh each time someone opens it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import App, BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.home import home_view
from bot.middleware import REQUEST_ID, new_request_id
from bot.services import Services

logger = logging.getLogger(__name__)


def register(app: App, services: Services, ack: Callable[..., None]) -> None:
    def publish_home(event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
        user_id = event.get("user")
        if event.get("tab") != "home" or not isinstance(user_id, str):
            return  # the Messages tab (or no one opened it): nothing to publish
        reference = str(context.get(REQUEST_ID) or new_request_id())
        view = home_view(services, user_id, bot_user_id=context.bot_user_id, reference=reference)
        try:
            client.views_publish(user_id=user_id, view=view)
        except SlackApiError:
            logger.exception(
                "could not publish the App Home user=%s request=%s", user_id, reference
            )

    # No dedupe of Slack's retries: publishing the same view twice does no harm.
    app.event("app_home_opened")(ack=ack, lazy=[publish_home])
