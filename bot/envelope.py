"""The shape a Slack request body must have before Bolt dispatches it.

Bolt's listener matchers and the arguments it builds for middleware index into the body
without checking types (`body["event"]["type"]`, `body["actions"][0]["action_id"]`,
`body["view"]["type"]`): a body of another shape makes them raise, and Bolt answers 500.
Slack always sends these keys with these types, so a body without them is no Slack
request.
"""

from __future__ import annotations

from typing import Any

# Keys Bolt reads as objects when they are present.
_OBJECT_KEYS = ("event", "view", "container", "message")
# Keys Bolt reads as text.
_TEXT_KEYS = ("type",)


def envelope_problem(body: Any) -> str | None:
    """What makes `body` (as Bolt parsed it) no Slack request, or None when it may be one."""
    if not isinstance(body, dict):
        return f"the body is {_kind(body)}, not a JSON object"
    for key in _TEXT_KEYS:
        if key in body and not isinstance(body[key], str):
            return f"`{key}` is {_kind(body[key])}, not text"
    for key in _OBJECT_KEYS:
        if key in body and not isinstance(body[key], dict):
            return f"`{key}` is {_kind(body[key])}, not an object"
    event = body.get("event")
    if isinstance(event, dict) and "type" in event and not isinstance(event["type"], str):
        return f"`event.type` is {_kind(event['type'])}, not text"
    actions = body.get("actions")
    if "actions" in body and not (
        isinstance(actions, list) and actions and all(isinstance(a, dict) for a in actions)
    ):
        return "`actions` is not a list of objects"
    if body.get("type") == "block_actions" and not all("action_id" in a for a in actions or []):
        return "an action has no `action_id`"
    view = body.get("view")
    if isinstance(view, dict) and "type" not in view:
        return "the view has no `type`"
    return None


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "text", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number" if isinstance(value, int | float) else "other")
