"""The App Home tab: published afresh each time someone opens it."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import BoltContext
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot import verified
from bot.home import home_view
from bot.home_blocks import VERIFIED_APPROVE, VERIFIED_RETIRE
from bot.listeners.registry import Listeners
from bot.messages_tab import PROMPTS_TITLE, suggested_prompts
from bot.middleware import REQUEST_ID, new_request_id
from bot.services import Services

logger = logging.getLogger(__name__)


def register(listeners: Listeners, services: Services) -> None:
    def publish_home(event: dict[str, Any], client: WebClient, context: BoltContext) -> None:
        user_id = event.get("user")
        if not isinstance(user_id, str):
            return
        if event.get("tab") == "messages":
            greet(event, user_id, client, context)
            return
        if event.get("tab") != "home":
            return
        reference = str(context.get(REQUEST_ID) or new_request_id())
        view = home_view(services, user_id, bot_user_id=context.bot_user_id, reference=reference)
        try:
            client.views_publish(user_id=user_id, view=view)
        except SlackApiError:
            logger.exception(
                "could not publish the App Home user=%s request=%s", user_id, reference
            )

    def greet(event: dict[str, Any], user_id: str, client: WebClient, context: BoltContext) -> None:
        """The Messages tab: prompts to start from, in the reader's direct message."""
        channel_id = event.get("channel")
        if not isinstance(channel_id, str):
            return
        prompts = suggested_prompts(
            services, team_id=context.team_id or "", user_id=user_id, client=client
        )
        if not prompts:
            return
        try:
            client.assistant_threads_setSuggestedPrompts(
                channel_id=channel_id, title=PROMPTS_TITLE, prompts=prompts
            )
        except SlackApiError as error:
            logger.warning(
                "could not set the suggested prompts user=%s: %s",
                user_id,
                error.response.get("error", error),
            )

    def review_verified(body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        """Approve or retire a verified answer from the admins' Home tab, then show the tab
        as it now is."""
        user_id = str(body["user"]["id"])
        if user_id not in services.settings.slack_admin_users:
            logger.warning("verified answer review refused: user=%s is no admin", user_id)
            return
        verified_id = int(action["value"])
        search = services.search
        if action["action_id"] == VERIFIED_APPROVE:
            verified.approve(services.database, search.store, search.embedder, verified_id, user_id)
        else:
            reason = f"retired from the Home tab by {user_id}"
            verified.retire(services.database, search.store, verified_id, user_id, reason)
        view = home_view(services, user_id, bot_user_id=None, reference=new_request_id())
        client.views_publish(user_id=user_id, view=view)

    # No dedupe of Slack's retries: publishing the same view twice does no harm.
    listeners.event("app_home_opened", publish_home, doing="show your Home tab")
    listeners.action(VERIFIED_APPROVE, review_verified, doing="approve that verified answer")
    listeners.action(VERIFIED_RETIRE, review_verified, doing="retire that verified answer")
