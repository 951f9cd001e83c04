"""`dispatchbot model serve|status|stop` as an operator runs them, on a server this module
owns (its own data dir, pid file and port), so the session's shared server is never touched.

The file name sorts before the tests that start the shared server: the two vLLMs do not
start at the same time on a 2-core machine.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from vllm_support import BASE_MODEL, MODELS_DIR, VLLM_VENV, free_port

from serving.vllm_server import port_in_use

DISPATCHBOT = shutil.which("dispatchbot", path=str(Path(sys.executable).parent))


@pytest.fixture
def operator_env(tmp_path: Path) -> dict[str, str]:
    """A fresh data dir and port; the venv and weights are the repository's shared ones."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DISPATCHBOT_", "LLM_", "VLLM_", "ADAPTER_", "MODELS_"))
    }
    env.update(
        DISPATCHBOT_DATA_DIR=str(tmp_path / "data"),
        MODELS_DIR=str(MODELS_DIR),
        VLLM_VENV=str(VLLM_VENV),
        VLLM_LOCAL_PORT=str(free_port()),
    )
    return env


def dispatchbot(
    *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    assert DISPATCHBOT, "the dispatchbot console script is installed beside this python"
    return subprocess.run(  # noqa: S603 - our own console script
        [DISPATCHBOT, *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def one_line(text: str) -> str:
    """Rich wraps long lines at the terminal width; compare text, not layout."""
    return " ".join(text.split())


@pytest.mark.vllm  # starts the local vLLM
def test_serve_is_idempotent_status_reports_and_stop_stops(operator_env: dict[str, str]) -> None:
    port = operator_env["VLLM_LOCAL_PORT"]
    pid_file = Path(operator_env["DISPATCHBOT_DATA_DIR"]) / "run" / "vllm.pid"

    before = dispatchbot("model", "status", env=operator_env)
    assert before.returncode == 1
    assert "dispatchbot model serve" in one_line(before.stdout)
    # Quick when the shared venv and weights exist; on a fresh checkout it builds them once.
    prepared = dispatchbot("model", "setup", env=operator_env, timeout=400)
    assert prepared.returncode == 0, prepared.stderr
    assert str(MODELS_DIR / "smollm2-135m-instruct") in one_line(prepared.stdout)

    served = dispatchbot("model", "serve", env=operator_env)
    assert served.returncode == 0, served.stderr
    assert f"http://127.0.0.1:{port}/v1" in one_line(served.stdout)
    assert "Starting vLLM" in served.stdout
    try:
        started = time.monotonic()
        again = dispatchbot("model", "serve", env=operator_env)
        assert again.returncode == 0, again.stderr
        assert "already serves" in one_line(again.stdout)
        assert time.monotonic() - started < 15  # no set-up, no second server

        status = dispatchbot("model", "status", "--json", env=operator_env)
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["running"] is True
        assert report["ready"] is True
        assert report["url"] == f"http://127.0.0.1:{port}/v1"
        assert report["base_model"] == BASE_MODEL
        assert report["adapters"] == []
        assert report["uptime_s"] > 0
        pid = report["pid"]
        assert json.loads(pid_file.read_text())["pid"] == pid
        assert Path(report["log_file"]).read_text().strip()
    finally:
        stopped = dispatchbot("model", "stop", env=operator_env)

    assert stopped.returncode == 0, stopped.stderr
    assert f"Stopped vLLM (pid {pid})" in one_line(stopped.stdout)
    assert not pid_file.exists()
    assert not port_in_use(int(port))
    assert _reaped_within(pid, 10.0)
    assert dispatchbot("model", "status", env=operator_env).returncode == 1
    assert "not running" in dispatchbot("model", "stop", env=operator_env).stdout


@pytest.mark.slow  # a child process
def test_a_stale_pid_file_is_noticed_and_removed(operator_env: dict[str, str]) -> None:
    pid_file = Path(operator_env["DISPATCHBOT_DATA_DIR"]) / "run" / "vllm.pid"
    pid_file.parent.mkdir(parents=True)
    dead_pid = _exited_pid()
    pid_file.write_text(
        json.dumps(
            {
                "pid": dead_pid,
                "port": int(operator_env["VLLM_LOCAL_PORT"]),
                "served_model_name": BASE_MODEL,
                "started_at": time.time() - 60,
                "log_file": "vllm.log",
            }
        )
    )

    status = dispatchbot("model", "status", "--json", env=operator_env)

    assert status.returncode == 1
    assert json.loads(status.stdout) == {"running": False, "merged": []}
    assert not pid_file.exists()


@pytest.mark.slow  # a child process
def test_serve_refuses_a_port_another_program_holds(operator_env: dict[str, str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = dispatchbot("model", "serve", "--port", str(port), env=operator_env, timeout=60)

    assert result.returncode == 3
    message = one_line(result.stderr)
    assert f"port {port}" in message
    assert "VLLM_LOCAL_PORT" in message
    assert "Traceback" not in result.stderr


@pytest.mark.vllm  # starts the local vLLM
def test_a_server_that_dies_at_start_up_is_reported_with_its_log(
    operator_env: dict[str, str],
) -> None:
    # Longer than the model's 8192 positions: vLLM itself refuses it while starting.
    operator_env["VLLM_MAX_MODEL_LEN"] = "100000"

    result = dispatchbot("model", "serve", env=operator_env)

    assert result.returncode == 3
    message = one_line(result.stderr)
    assert "vLLM exited during start-up" in message
    assert "max_model_len" in message
    assert str(Path(operator_env["DISPATCHBOT_DATA_DIR"]) / "logs" / "vllm.log") in message
    assert "Traceback" not in result.stderr
    assert not (Path(operator_env["DISPATCHBOT_DATA_DIR"]) / "run" / "vllm.pid").exists()


def _reaped_within(pid: int, seconds: float) -> bool:
    """The process is gone (its orphaned zombie is reaped by init shortly after the exit)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def _exited_pid() -> int:
    process = subprocess.Popen(["true"])  # noqa: S607 - any short-lived program
    process.wait()
    return process.pid
