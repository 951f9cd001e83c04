"""The Slack app manifest asks for what the bot listens to and calls, and no more."""

from __future__ import annotations

from pathlib import Path

import yaml

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "slack-app-manifest.yml"


def test_the_manifest_subscribes_to_every_trigger_and_grants_every_call() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    settings = manifest["settings"]

    assert set(settings["event_subscriptions"]["bot_events"]) == {
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
        "chat:write",
        "reactions:write",
    }
    assert manifest["features"]["app_home"]["messages_tab_enabled"]  # people can DM it
