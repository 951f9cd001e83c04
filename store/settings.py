"""One typed settings object for the whole app, read from the environment and `.env`.

Names match the environment variables exactly (DESIGN.md fixes them), so the README's
configuration table and this class are the same list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

DEFAULT_DATA_DIR = Path("var")


class Settings(BaseSettings):
    """Everything dispatchbot can be told, with defaults that work on a laptop."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
    )

    data_dir: Path = Field(
        default=DEFAULT_DATA_DIR,
        validation_alias=AliasChoices("DISPATCHBOT_DATA_DIR", "data_dir"),
        description="Folder for the embedded database, the local Qdrant store, models and logs.",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL of the conversation store. Empty: SQLite in the data dir.",
    )
    log_level: str = Field(default="INFO", description="Python logging level.")

    qdrant_url: str | None = Field(
        default=None, description="Qdrant server URL. Unset: local mode on disk at QDRANT_PATH."
    )
    qdrant_path: Path | None = Field(
        default=None, description="Folder of the local Qdrant store. Unset: <data dir>/qdrant."
    )
    qdrant_api_key: SecretStr | None = Field(default=None, description="API key for QDRANT_URL.")
    qdrant_collection: str = Field(default="policies", description="Collection name.")

    embedding_model: str = Field(
        default="all-MiniLM-L6-v2",
        description="sentence-transformers model name or path; the default ships in a package.",
    )

    embedding_batch_size: int = Field(
        default=32, ge=1, description="Chunks encoded per batch during ingest."
    )
    chunk_max_tokens: int = Field(
        default=256,
        ge=32,
        description=(
            "Upper bound of a chunk in embedding-model tokens, heading path included; capped "
            "at what the model reads (254 text tokens for all-MiniLM-L6-v2)."
        ),
    )
    chunk_overlap_tokens: int = Field(
        default=32,
        ge=0,
        description="Tokens repeated from the end of a chunk at the start of the next one.",
    )
    search_k: int = Field(default=5, ge=1, description="Results a search returns by default.")
    search_prefetch_limit: int = Field(
        default=20,
        ge=1,
        description="Candidates each of dense and sparse search hands to RRF fusion (hybrid).",
    )

    llm_base_url: str = Field(
        default="http://127.0.0.1:8100/v1", description="OpenAI-compatible endpoint (vLLM)."
    )
    llm_model: str = Field(default="smollm2-135m-instruct", description="Served base model name.")
    llm_api_key: SecretStr = Field(
        default=SecretStr("EMPTY"), description="Bearer token for LLM_BASE_URL, if it needs one."
    )

    slack_bot_token: SecretStr | None = Field(default=None, description="xoxb- bot token.")
    slack_app_token: SecretStr | None = Field(
        default=None, description="xapp- app-level token, for Socket Mode."
    )
    slack_signing_secret: SecretStr | None = Field(
        default=None, description="Verifies that HTTP requests come from Slack."
    )
    slack_api_url: str = Field(
        default="https://slack.com/api/",
        description="Slack Web API base URL; override for tests and proxies.",
    )

    escalation_channel: str | None = Field(
        default=None, description="Channel id where escalation cards are posted."
    )

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        # Paths hang off the data dir unless set on their own, so one variable moves them all.
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'dispatchbot.db'}"
        if self.qdrant_path is None:
            self.qdrant_path = self.data_dir / "qdrant"
        return self

    @property
    def is_sqlite(self) -> bool:
        return make_url(self.database_url).get_backend_name() == "sqlite"

    def describe(self) -> dict[str, Any]:
        """The effective settings with every secret masked, for display and logs."""
        shown: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "********" if value.get_secret_value() else ""
            elif name == "database_url":
                value = make_url(value).render_as_string(hide_password=True)
            elif isinstance(value, Path):
                value = str(value)
            shown[name.upper() if name != "data_dir" else "DISPATCHBOT_DATA_DIR"] = value
        return shown
