"""The promoted version on the embedded default: merged into the base weights, served by a
local vLLM of its own that the bot's client asks, brought back by `model serve`, gone after a
rollback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM
from vllm_support import BASE_MODEL, VLLM_VENV, RunningServer

from serving.base_weights import MODEL_FOLDER, converted_model_dir
from serving.llm_client import GenerationResult, ModelClient
from serving.merged_adapters import MergedServing, merge_adapter
from serving.promotion import PromotedAdapter
from serving.vllm_server import port_in_use
from store import repository, schema
from store.database import Database
from store.settings import Settings

DISPATCHBOT = shutil.which("dispatchbot", path=str(Path(sys.executable).parent))
VERSION = "merged-test-v1"
QUESTION = [{"role": "user", "content": "Who approves overtime on a route?"}]


def _tiny_base(folder: Path) -> Path:
    """A two-layer Llama in bf16, as the converted base model is stored."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        dtype="bfloat16",
    )
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    (folder / "tokenizer.json").write_text('{"stands in": "for the tokenizer"}')
    return folder


# PEFT calls a transformers API that transformers 5 deprecated; nothing for us to change.
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_merged_weights_are_the_base_plus_the_scaled_adapter(tmp_path: Path) -> None:
    base_dir = _tiny_base(tmp_path / "base")
    rank, alpha = 4, 8
    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32),
        # Random A and B: a freshly initialised adapter (B = 0) would change nothing.
        LoraConfig(
            r=rank,
            lora_alpha=alpha,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
            init_lora_weights=False,
        ),
    )
    peft_model.save_pretrained(tmp_path / "adapter")
    adapter = load_file(tmp_path / "adapter" / "adapter_model.safetensors")

    merged_dir = merge_adapter(base_dir, tmp_path / "adapter", tmp_path / "merged")

    base = load_file(base_dir / "model.safetensors")
    merged = load_file(merged_dir / "model.safetensors")
    q_proj = "model.layers.1.self_attn.q_proj"
    lora_a = adapter[f"base_model.model.{q_proj}.lora_A.weight"]
    lora_b = adapter[f"base_model.model.{q_proj}.lora_B.weight"]
    expected = base[f"{q_proj}.weight"].float() + (alpha / rank) * (lora_b @ lora_a)
    assert merged[f"{q_proj}.weight"].dtype == torch.bfloat16  # the base's dtype, as stored
    torch.testing.assert_close(
        merged[f"{q_proj}.weight"].float(), expected.to(torch.bfloat16).float()
    )
    assert not torch.equal(merged[f"{q_proj}.weight"], base[f"{q_proj}.weight"])
    # Modules the adapter does not touch are the base's, bit for bit; no LoRA tensors remain.
    mlp = "model.layers.0.mlp.down_proj.weight"
    assert torch.equal(merged[mlp], base[mlp])
    assert not [name for name in merged if "lora" in name]
    for name in ("config.json", "tokenizer.json"):
        assert (merged_dir / name).read_bytes() == (base_dir / name).read_bytes()
    # Once written, a version's folder is reused, never merged again.
    assert merge_adapter(base_dir, tmp_path / "adapter", merged_dir) == merged_dir


@pytest.fixture
def local_default(vllm_server: RunningServer, tmp_path: Path) -> Iterator[Settings]:
    """The embedded default around the session's vLLM (its data dir and port), with a store
    and a models dir of this test's own (the merged folder goes there, not to var/models)."""
    assert vllm_server.settings.models_dir is not None
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    (models_dir / MODEL_FOLDER).symlink_to(converted_model_dir(vllm_server.settings.models_dir))
    settings = Settings(
        _env_file=None,
        data_dir=vllm_server.settings.data_dir,
        models_dir=models_dir,
        vllm_venv=VLLM_VENV,
        vllm_local_port=vllm_server.outcome.record.port,
        database_url=f"sqlite:///{tmp_path / 'dispatchbot.db'}",
        llm_model=BASE_MODEL,
        llm_max_tokens=8,
    )
    database = Database(settings.database_url)
    schema.upgrade(database)
    adapter_dir = tmp_path / "adapters" / VERSION
    get_peft_model(
        AutoModelForCausalLM.from_pretrained(models_dir / MODEL_FOLDER),
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
    ).save_pretrained(adapter_dir)
    with database.transaction() as session:
        repository.register_model_version(
            session,
            name=VERSION,
            base_model=BASE_MODEL,
            adapter_path=str(adapter_dir),
            dataset_hash="test",
        )
    database.dispose()
    yield settings
    merged = MergedServing(settings)
    merged.stop(list(merged.running()), drain_timeout_s=0)  # also when the test failed


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_a_promoted_version_answers_from_its_merged_server_until_rolled_back(
    local_default: Settings, vllm_server: RunningServer
) -> None:
    settings = local_default
    promoted = _cli(settings, "promote", VERSION, "--force", "--json")
    assert promoted.returncode == 0, promoted.stderr
    endpoint = json.loads(promoted.stdout)["promoted_endpoint"]
    assert json.loads(promoted.stdout)["promoted"] == VERSION
    assert endpoint not in (None, vllm_server.base_url)
    assert (settings.models_dir / "merged" / VERSION / "model.safetensors").is_file()

    answer = _ask(settings)
    assert (answer.adapter, answer.endpoint) == (VERSION, endpoint)  # recorded as the version
    status = json.loads(_cli(settings, "model", "status", "--json").stdout)
    assert VERSION not in status["adapters"]  # not loaded at runtime into the base's server
    assert [(m["version"], m["url"], m["ready"]) for m in status["merged"]] == [
        (VERSION, endpoint, True)
    ]

    # A restart: the merged server is gone; `model serve` (the base already runs) brings it
    # back, and the store sends the bot to wherever it now runs.
    MergedServing(settings).stop([VERSION], drain_timeout_s=0)
    served = _cli(settings, "model", "serve")
    assert served.returncode == 0, served.stderr
    assert f"Serving {VERSION}" in served.stdout
    restarted = _ask(settings)
    assert restarted.adapter == VERSION
    assert restarted.endpoint != vllm_server.base_url

    rolled_back = _cli(settings, "rollback", "--json")
    assert rolled_back.returncode == 0, rolled_back.stderr
    assert json.loads(rolled_back.stdout)["promoted"] is None
    assert MergedServing(settings).running() == {}
    assert not port_in_use(urlsplit(restarted.endpoint).port or 0)
    base_answer = _ask(settings)
    assert (base_answer.adapter, base_answer.endpoint) == (None, vllm_server.base_url)


def _ask(settings: Settings) -> GenerationResult:
    """One answer through the bot's own client, steered by the store as the bot is."""
    database = Database(settings.database_url)
    try:
        promoted = PromotedAdapter(database, refresh_s=0)
        client = ModelClient.from_settings(settings, promoted, promoted.served_at)
        return client.complete(QUESTION)
    finally:
        database.dispose()


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    """The console script, as an operator runs it against this data dir."""
    assert DISPATCHBOT, "the dispatchbot console script is installed beside this python"
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DISPATCHBOT_", "LLM_", "VLLM_", "ADAPTER_", "MODELS_"))
    }
    env.update(
        DISPATCHBOT_DATA_DIR=str(settings.data_dir),
        DATABASE_URL=settings.database_url,
        MODELS_DIR=str(settings.models_dir),
        VLLM_VENV=str(settings.vllm_venv),
        VLLM_LOCAL_PORT=str(settings.vllm_local_port),
        LLM_MODEL=settings.llm_model,
    )
    return subprocess.run(  # noqa: S603 - our own console script
        [DISPATCHBOT, *args], env=env, capture_output=True, text=True, timeout=300
    )
