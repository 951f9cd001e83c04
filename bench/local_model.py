"""A vLLM of the bench's own: started on a free port from a scratch data folder, stopped
afterwards, so a benchmark never disturbs (or is disturbed by) the developer's server."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.report import REPO_ROOT
from serving.local_vllm import local_pid_file, serve_local_vllm
from serving.vllm_server import stop_server
from store.settings import Settings

MODELS_DIR = REPO_ROOT / "var" / "models"
VLLM_VENV = REPO_ROOT / ".venv-vllm"


@dataclass(frozen=True)
class BenchModel:
    settings: Settings
    base_url: str  # the OpenAI-compatible root, ending in /v1
    startup_s: float

    @property
    def served_model_name(self) -> str:
        return self.settings.llm_model


@contextmanager
def local_vllm(*, prefix_caching: bool = True, quiet: bool = False) -> Iterator[BenchModel]:
    """A running vLLM with the converted base model (`make model-setup` puts it in place)."""
    data_dir = Path(tempfile.mkdtemp(prefix="dispatchbot-bench-"))
    settings = Settings(
        _env_file=None,  # a developer's .env must not change what is measured
        data_dir=data_dir,
        models_dir=MODELS_DIR,
        vllm_venv=VLLM_VENV,
        vllm_local_port=free_port(),
        vllm_prefix_caching=prefix_caching,
    )
    report = (lambda _step: None) if quiet else (lambda step: print(f"[vllm] {step}"))
    try:
        outcome = serve_local_vllm(settings, report)
        yield BenchModel(settings, outcome.record.base_url, outcome.startup_s)
    finally:
        stop_server(local_pid_file(settings))
        shutil.rmtree(data_dir, ignore_errors=True)


def untrained_adapter(out_dir: Path, rank: int = 8) -> Path:
    """A LoRA adapter of the shape `dispatchbot train` makes, straight from initialisation.

    Serving cost depends on the adapter's shape (rank, target modules), not its values, so
    a speed benchmark need not spend minutes training one.
    """
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from serving.base_weights import converted_model_dir
    from serving.training import LORA_DROPOUT, TARGET_MODULES

    base = AutoModelForCausalLM.from_pretrained(converted_model_dir(MODELS_DIR))
    config = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=LORA_DROPOUT,
        target_modules=list(TARGET_MODULES),
        task_type="CAUSAL_LM",
    )
    get_peft_model(base, config).save_pretrained(out_dir)
    return out_dir


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
