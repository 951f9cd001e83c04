"""The Slack app manifest asks for what the bot listens to and calls, and no more."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "deploy" / "slack-app-manifest.yml"
LISTENERS = REPO / "bot" / "listeners"


def test_the_manifest_subscribes_to_every_trigger_and_grants_every_call() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    settings = manifest["settings"]

    assert set(settings["event_subscriptions"]["bot_events"]) == {
        "app_home_opened",  # the Home tab, published when opened (views.publish needs no scope)
        "app_mention",  # mentions in channels
        "message.channels",  # follow-ups in its threads, help-desk channels
        "message.groups",
        "message.im",  # direct messages
    }
    assert settings["interactivity"]["is_enabled"]  # 👍, 👎, the reason modal, "Ask a person"
    assert settings["interactivity"]["request_url"].endswith("/slack/events")
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert scopes == {
        "app_mentions:read",
        "channels:history",
        "groups:history",
        "im:history",
        "assistant:write",  # assistant.threads.setStatus and setSuggestedPrompts
        "chat:write",
        "usergroups:read",  # usergroups.users.list: the audiences a DM may see
    }
    assert manifest["features"]["app_home"]["messages_tab_enabled"]  # people can DM it
    assert manifest["features"]["app_home"]["home_tab_enabled"]  # admins' overview, how to ask
    assert manifest["features"]["agent_view"]["agent_description"]  # the agent experience


def test_every_event_a_listener_handles_is_subscribed_and_no_other() -> None:
    source = "\n".join(path.read_text() for path in sorted(LISTENERS.glob("*.py")))
    handled = set(re.findall(r"listeners\.event\(\s*\"([a-z_]+)\"", source))
    bot_events = yaml.safe_load(MANIFEST.read_text())["settings"]["event_subscriptions"]
    # `message.channels`, `message.im`, ... all reach the one `message` listener.
    subscribed = {event.split(".")[0] for event in bot_events["bot_events"]}

    assert handled == subscribed
