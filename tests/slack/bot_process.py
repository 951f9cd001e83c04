"""`dispatchbot` as an operator runs it: the console script in a child process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx
import pytest
from vllm_support import MODELS_DIR

DISPATCHBOT = shutil.which("dispatchbot", path=str(Path(sys.executable).parent))
POLICIES = Path(__file__).resolve().parents[2] / "examples" / "policies"


def operator_environment(data_dir: Path) -> dict[str, str]:
    """This process's environment without Slack, database or audience settings, data in
    `data_dir`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLACK_", "DATABASE_", "AUDIENCE_"))
    }
    env["DISPATCHBOT_DATA_DIR"] = str(data_dir)
    # Every channel may read the sample policies for dispatchers and service agents.
    env["AUDIENCE_DEFAULT"] = "dispatch,service"
    # The shared models folder already holds the embedding model's ONNX export.
    env["MODELS_DIR"] = str(MODELS_DIR)
    return env


def dispatchbot(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    assert DISPATCHBOT, "the dispatchbot console script is installed beside this python"
    return subprocess.run(  # noqa: S603 - our own console script
        [DISPATCHBOT, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def start_http_bot(
    port: int, *, env: dict[str, str], cwd: Path, output: IO[str] | int = subprocess.PIPE
) -> subprocess.Popen[str]:
    """`dispatchbot run --mode http` on 127.0.0.1:`port`; its output goes to `output`."""
    assert DISPATCHBOT, "the dispatchbot console script is installed beside this python"
    return subprocess.Popen(  # noqa: S603 - our own console script
        [DISPATCHBOT, "run", "--mode", "http", "--port", str(port), "--host", "127.0.0.1"],
        env=env,
        cwd=cwd,
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_until_healthy(url: str, process: subprocess.Popen[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else "(see its log file)"
            pytest.fail(f"dispatchbot run exited early:\n{output}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    pytest.fail("dispatchbot run did not answer /healthz")


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()
