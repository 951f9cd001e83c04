"""Settings come from the environment and .env, with defaults under the data dir."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.docgen import configuration
from store.settings import SETTINGS_GROUPS, Settings

REPO = Path(__file__).resolve().parents[1]
ALL_VARIABLES = [
    "DISPATCHBOT_DATA_DIR" if name == "data_dir" else name.upper() for name in Settings.model_fields
]


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for variable in ALL_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env from the developer's checkout


def test_defaults_are_embedded_under_the_data_dir() -> None:
    settings = Settings()

    assert settings.data_dir == Path("var")
    assert settings.database_url == "sqlite:///var/dispatchbot.db"
    assert settings.qdrant_path == Path("var/qdrant")
    assert settings.qdrant_url is None
    assert settings.is_sqlite


def test_data_dir_moves_every_derived_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCHBOT_DATA_DIR", "/srv/dispatchbot")
    settings = Settings()

    assert settings.database_url == "sqlite:////srv/dispatchbot/dispatchbot.db"
    assert settings.qdrant_path == Path("/srv/dispatchbot/qdrant")


def test_explicit_variables_win_over_derived_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://bot@db/dispatch")
    monkeypatch.setenv("QDRANT_URL", "http://qdrant:6333")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    settings = Settings()

    assert settings.database_url == "postgresql+psycopg://bot@db/dispatch"
    assert not settings.is_sqlite
    assert settings.qdrant_url == "http://qdrant:6333"
    assert settings.slack_bot_token is not None
    assert settings.slack_bot_token.get_secret_value() == "xoxb-1"


def test_dotenv_is_read_and_the_environment_beats_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        "ESCALATION_CHANNEL=C0ESCALATE\nLLM_MODEL=from-dotenv\n", encoding="utf-8"
    )
    monkeypatch.setenv("LLM_MODEL", "from-environment")
    settings = Settings()

    assert settings.escalation_channel == "C0ESCALATE"
    assert settings.llm_model == "from-environment"


def test_describe_masks_secrets_and_database_passwords(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-very-secret")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "signing-very-secret")
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://bot:hunter2@db/dispatch")
    shown = repr(Settings().describe())

    assert "very-secret" not in shown
    assert "hunter2" not in shown
    assert "SLACK_BOT_TOKEN" in shown


def test_every_setting_belongs_to_exactly_one_group() -> None:
    grouped = [name for group in SETTINGS_GROUPS for name in group.model_fields]

    assert sorted(grouped) == sorted(Settings.model_fields)
    assert list(Settings.model_fields) == grouped  # `dispatchbot config` lists them by group


def test_the_configuration_page_is_what_the_settings_say() -> None:
    committed = (REPO / configuration.PAGE).read_text(encoding="utf-8")

    assert committed == configuration.render(), (
        f"{configuration.PAGE} is out of date: run `dispatchbot docs` and commit the result"
    )
    documented = re.findall(r"^\| `([A-Z0-9_]+)` \|", committed, flags=re.MULTILINE)
    assert sorted(documented) == sorted(ALL_VARIABLES)
