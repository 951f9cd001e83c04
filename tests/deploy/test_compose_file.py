"""deploy/docker-compose.yml: the bot, its store, index and model, healthy before it starts."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest
import yaml
from deploy_support import (
    COMPOSE_FILE,
    DEPLOY,
    ENV_EXAMPLE,
    REPO,
    compose_variables,
    env_example,
    option_value,
    parse_cli,
    read_dockerfile,
)

from store.settings import Settings

PINNED_TAG = re.compile(r"[\w./-]+:v?\d+\.\d+(\.\d+)?[\w.-]*")


def _compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _volume_mounts(service: dict) -> dict[str, str]:
    """Mount path -> source of a service's short-syntax volumes."""
    mounts = {}
    for entry in service.get("volumes", []):
        source, target = entry.split(":")[:2]
        mounts[target] = source
    return mounts


def test_the_stack_has_its_services_each_pinned_healthy_and_on_volumes() -> None:
    compose = _compose()
    services = compose["services"]
    assert {"bot", "migrate", "ingest", "postgres", "qdrant", "vllm"} <= set(services)

    for name in ("postgres", "qdrant", "vllm"):
        service = services[name]
        assert PINNED_TAG.fullmatch(service["image"]), f"{name}: pin a version tag"
        assert "latest" not in service["image"]
        assert service["healthcheck"]["test"], f"{name} needs a health check"
    assert services["postgres"]["image"].startswith("postgres:16.")
    assert services["qdrant"]["image"].startswith("qdrant/qdrant:")
    assert services["vllm"]["image"].startswith("vllm/vllm-openai:")
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    # Qdrant's image has neither curl nor wget: the check must not rely on them.
    qdrant_check = " ".join(services["qdrant"]["healthcheck"]["test"])
    assert "/readyz" in qdrant_check
    assert "/dev/tcp/" in qdrant_check
    assert "/health" in " ".join(services["vllm"]["healthcheck"]["test"])

    declared = set(compose["volumes"])
    expected_data = {
        "postgres": "/var/lib/postgresql/data",
        "qdrant": "/qdrant/storage",
        "vllm": "/root/.cache/huggingface",
    }
    for name, path in expected_data.items():
        source = _volume_mounts(services[name]).get(path)
        assert source in declared, f"{name} keeps {path} on a named volume"


def test_the_bot_starts_after_a_migration_and_healthy_dependencies() -> None:
    services = _compose()["services"]
    bot = services["bot"]

    assert bot["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    for name in ("postgres", "qdrant", "vllm"):
        assert bot["depends_on"][name]["condition"] == "service_healthy", name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert bot["env_file"] == ".env"
    build = bot["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == REPO / "Dockerfile"

    run = parse_cli(bot["command"])
    assert run.info_name == "dispatchbot run"
    assert run.params["mode"] == "http"
    published = [port.rsplit(":", 1)[1] for port in bot["ports"]]
    assert published == [str(run.params["port"])]
    assert parse_cli(services["migrate"]["command"]).info_name == "dispatchbot db upgrade"
    ingest = services["ingest"]
    assert ingest["profiles"] == ["ingest"], "ingest runs on demand, not with `up`"
    assert parse_cli(ingest["command"]).info_name == "dispatchbot ingest"
    assert _volume_mounts(ingest)[ingest["command"][-1]]


def test_vllm_serves_the_adapters_the_bot_promotes_on_a_gpu() -> None:
    services = _compose()["services"]
    vllm = services["vllm"]
    args = vllm["command"]

    for flag in ("--enable-lora", "--enable-prefix-caching"):
        assert flag in args
    for option in ("--max-loras", "--max-lora-rank", "--tensor-parallel-size"):
        assert option_value(args, option)
    # The bot asks for LLM_MODEL; vLLM must serve the base model under that name.
    assert option_value(args, "--served-model-name") == "${LLM_MODEL}"
    assert option_value(args, "--max-lora-rank") == "${VLLM_MAX_LORA_RANK}"

    env = vllm["environment"]
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert env["VLLM_API_KEY"] == "${LLM_API_KEY}"
    assert env["HUGGING_FACE_HUB_TOKEN"] == "${HUGGING_FACE_HUB_TOKEN}"
    (gpu,) = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert gpu["driver"] == "nvidia"
    assert "gpu" in gpu["capabilities"]

    # Promotion sends vLLM the adapter path the bot's store recorded: MODELS_DIR/adapters.
    models_dir = read_dockerfile().final.env()["MODELS_DIR"]
    adapters = str(Settings(models_dir=models_dir).models_dir / "adapters")
    bot_mounts, vllm_mounts = _volume_mounts(services["bot"]), _volume_mounts(vllm)
    assert adapters in bot_mounts
    assert vllm_mounts[adapters] == bot_mounts[adapters], "the same volume at the same path"
    assert env["VLLM_LORA_RESOLVER_CACHE_DIR"] == adapters
    assert PurePosixPath(adapters).is_absolute()


def test_every_variable_is_documented_in_the_env_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compose = _compose()
    example = env_example()
    for name in example:
        monkeypatch.delenv(name, raising=False)  # the file alone, not this shell's settings

    used = compose_variables(compose)
    assert used, "the compose file reads its settings from deploy/.env"
    assert used <= set(example), f"not in .env.example: {sorted(used - set(example))}"
    # Each is explained: every group of lines (blank-line separated) opens with a comment.
    for group in ENV_EXAMPLE.read_text().split("\n\n"):
        assert group.strip().startswith("#"), f"explain this in a comment:\n{group}"
    # The example is a valid configuration, and it names no real secret.
    settings = Settings(_env_file=ENV_EXAMPLE)
    assert settings.llm_model == example["LLM_MODEL"]
    assert settings.llm_context_tokens == int(example["VLLM_MAX_MODEL_LEN"])
    for name in ("SLACK_SIGNING_SECRET", "POSTGRES_PASSWORD", "QDRANT_API_KEY", "LLM_API_KEY"):
        assert "change-me" in example[name], f"{name} must be a placeholder"
    assert example["HUGGING_FACE_HUB_TOKEN"] == ""

    # Where the Compose client is installed, it has the last word.
    docker = _compose_client()
    if docker:
        project = tmp_path / "deploy"
        project.mkdir()
        shutil.copy(COMPOSE_FILE, project / "docker-compose.yml")
        shutil.copy(ENV_EXAMPLE, project / ".env")
        checked = subprocess.run(  # noqa: S603 - the docker client, fixed arguments
            [docker, "compose", "-f", str(project / "docker-compose.yml"), "config", "--quiet"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert checked.returncode == 0, checked.stderr


def _compose_client() -> str | None:
    """The docker client, when it has the Compose plugin."""
    docker = shutil.which("docker")
    if docker is None:
        return None
    version = subprocess.run(  # noqa: S603 - the docker client, fixed arguments
        [docker, "compose", "version"], capture_output=True, timeout=30
    )
    return docker if version.returncode == 0 else None
