"""docs/configuration.md: every setting, its default and what it does, from store/settings.py.

One section per settings group, in the order of SETTINGS_GROUPS; the group's title and
docstring head the section, each field's description is its row.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from bot.docgen.markdown import cell, table
from store.settings import SETTINGS_GROUPS, Settings, variable_name

PAGE = Path("docs/configuration.md")

HEADER = """\
# Configuration

<!-- Written by `dispatchbot docs` from store/settings.py: edit a field's description there,
then run `dispatchbot docs` again. -->

Every setting is an environment variable; a `.env` file in the working directory is read too
(the environment wins). `dispatchbot config` prints the settings in effect with secrets
masked. The defaults need no services at all: data lives under `./var`. Lists are
comma-separated or a JSON list; maps are `KEY=VALUE,KEY=VALUE` or a JSON object. Secrets
never show a default here and are masked wherever dispatchbot prints settings.

A new setting is a field with a description in the right group of `store/settings.py`
([development](development.md#adding-a-setting)).
"""

_VARIABLES = sorted((variable_name(name) for name in Settings.model_fields), key=len, reverse=True)
_VARIABLE = re.compile(r"\b(" + "|".join(_VARIABLES) + r")\b")


def render() -> str:
    """The whole page."""
    sections = [HEADER]
    for group in SETTINGS_GROUPS:
        sections.append(_section(group))
    return "\n".join(sections)


def _section(group: type[BaseModel]) -> str:
    title = group.model_config.get("title") or group.__name__
    rows = [
        [f"`{variable_name(name)}`", _default(field), _description(field)]
        for name, field in group.model_fields.items()
    ]
    return (
        f"## {title}\n\n{inspect.getdoc(group)}\n\n"
        + table(["variable", "default", "what it does"], rows)
        + "\n"
    )


def _default(field: FieldInfo) -> str:
    if _is_secret(field.annotation):
        return "(secret)"
    value: Any = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if value in ("", [], {}):
        return "empty"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, list):
        # Comma-separated as one would write it, unless an item holds a comma itself.
        if any("," in str(item) for item in value):
            return f"`{json.dumps(value, ensure_ascii=False)}`"
        return f"`{','.join(map(str, value))}`"
    if isinstance(value, dict):
        return f"`{json.dumps(value, ensure_ascii=False)}`"
    return f"`{value}`"


def _description(field: FieldInfo) -> str:
    text = field.description or ""
    if not text:
        raise ValueError(f"a setting without a description: {field}")
    # Variable names read as code, outside the spans that already are.
    parts = text.split("`")
    parts[::2] = [_VARIABLE.sub(r"`\1`", part) for part in parts[::2]]
    return cell("`".join(parts))


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in getattr(annotation, "__args__", ())
