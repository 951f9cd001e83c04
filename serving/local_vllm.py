"""`dispatchbot model serve` end to end: the vLLM virtualenv, the base weights, the server.

Re-running is cheap: every step checks for its result first, and a server that is already
up is reported, not restarted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from serving.base_weights import converted_model_dir, ensure_base_model
from serving.vllm_env import ensure_vllm_env, vllm_python
from serving.vllm_server import (
    LocalServerConfig,
    ServerError,
    ServerRecord,
    port_in_use,
    read_record,
    start_server,
    wait_until_ready,
)
from store.settings import Settings


@dataclass(frozen=True)
class ServeOutcome:
    record: ServerRecord
    already_running: bool
    startup_s: float


def local_server_config(settings: Settings, port: int | None = None) -> LocalServerConfig:
    assert settings.models_dir is not None, "Settings derives models_dir from the data dir"
    venv = settings.vllm_venv.absolute()
    return LocalServerConfig(
        python=vllm_python(venv),
        model_dir=converted_model_dir(settings.models_dir.absolute()),
        served_model_name=settings.llm_model,
        port=port or settings.vllm_local_port,
        max_model_len=settings.vllm_max_model_len,
        kv_cache_gb=settings.vllm_kv_cache_gb,
        max_loras=settings.vllm_max_loras,
        max_lora_rank=settings.vllm_max_lora_rank,
        prefix_caching=settings.vllm_prefix_caching,
        pid_file=local_pid_file(settings),
        log_file=(settings.data_dir / "logs" / "vllm.log").absolute(),
        cache_dir=(settings.data_dir / "vllm-cache").absolute(),
        start_timeout_s=settings.vllm_start_timeout_s,
    )


def local_pid_file(settings: Settings) -> Path:
    return (settings.data_dir / "run" / "vllm.pid").absolute()


def merged_server_config(
    settings: Settings, version: str, model_dir: Path, port: int
) -> LocalServerConfig:
    """A local vLLM of a version's merged weights, served under the version's name. It loads
    no adapters: canaries and routed adapters stay on the base model's server."""
    return replace(
        local_server_config(settings, port),
        model_dir=model_dir,
        served_model_name=version,
        enable_lora=False,
        pid_file=merged_pid_file(settings, version),
        log_file=(settings.data_dir / "logs" / f"vllm-{version}.log").absolute(),
    )


def merged_pid_file(settings: Settings, version: str) -> Path:
    return (settings.data_dir / "run" / "merged" / f"{version}.pid").absolute()


def prepare_local_vllm(settings: Settings, report: Callable[[str], None]) -> LocalServerConfig:
    """The vLLM virtualenv and the converted weights, each made once; the server's config."""
    assert settings.models_dir is not None, "Settings derives models_dir from the data dir"
    ensure_vllm_env(settings.vllm_venv.absolute(), report)
    ensure_base_model(settings.models_dir.absolute(), report)
    return local_server_config(settings)


def serve_local_vllm(
    settings: Settings, report: Callable[[str], None], port: int | None = None
) -> ServeOutcome:
    """Set up what is missing and start vLLM, or report the one already running."""
    config = local_server_config(settings, port)
    began = time.monotonic()
    running = read_record(config.pid_file)
    if running is not None:
        if running.port != config.port:
            raise ServerError(
                f"vLLM from this data dir already runs on port {running.port}; "
                "stop it with `dispatchbot model stop` before serving on another port."
            )
        # Possibly still starting (another `serve` launched it): wait for it rather than
        # start a second copy on the same port.
        wait_until_ready(running, config.start_timeout_s)
        return ServeOutcome(running, already_running=True, startup_s=time.monotonic() - began)
    # Checked before the slow set-up, so a clash is reported in a second, not minutes.
    if port_in_use(config.port):
        raise ServerError(
            f"port {config.port} on 127.0.0.1 is taken by another program (not a vLLM started "
            "from this data dir). Stop it, or choose another port with VLLM_LOCAL_PORT or --port."
        )
    prepare_local_vllm(settings, report)
    report(f"Starting vLLM on {config.base_url} (about 30 s)")
    started = time.monotonic()
    record = start_server(config)
    return ServeOutcome(record, already_running=False, startup_s=time.monotonic() - started)
