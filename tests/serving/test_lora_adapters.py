"""A LoRA adapter trained with PEFT here, loaded into the running vLLM, chosen by routing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer
from vllm_support import BASE_MODEL, RunningServer, make_client

from serving.base_weights import converted_model_dir
from serving.llm_client import ModelRequestRejected
from serving.routing import TaskKind
from serving.vllm_admin import ServedModel, list_served_models, load_adapter, unload_adapter

ADAPTER = "dispatch-test-v1"
ROWS = [
    ("Can I skip the pre-trip check?", "No. Every trip starts with the pre-trip check."),
    ("Who approves overtime on a route?", "The shift dispatcher approves overtime."),
    ("A customer is not home. What now?", "Leave a card and log a failed delivery."),
    ("The truck's tail lift is broken.", "Open a service ticket and tell dispatch."),
    ("Where do I report a delay?", "Report it in the dispatch channel at once."),
]


def train_tiny_adapter(model_dir: Path, out_dir: Path) -> Path:
    """A real PEFT adapter: r=8 on q_proj/v_proj, three optimizer steps on five rows."""
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(
        model,
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": q}, {"role": "assistant", "content": a}], tokenize=False
        )
        for q, a in ROWS
    ]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(3):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    model.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def adapter_dir(vllm_server: RunningServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert vllm_server.settings.models_dir is not None
    model_dir = converted_model_dir(vllm_server.settings.models_dir)
    return train_tiny_adapter(model_dir, tmp_path_factory.mktemp("adapter") / ADAPTER)


# PEFT calls a transformers API that transformers 5 deprecated; nothing for us to change.
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_an_adapter_loaded_at_runtime_serves_the_routed_channel_and_task_kind(
    vllm_server: RunningServer, adapter_dir: Path
) -> None:
    assert (adapter_dir / "adapter_config.json").exists()
    load_adapter(vllm_server.base_url, ADAPTER, adapter_dir)
    try:
        assert ServedModel(ADAPTER, BASE_MODEL) in list_served_models(vllm_server.base_url)
        client = make_client(
            [vllm_server.base_url], routes={"C_DISPATCH": ADAPTER, "dispatch": ADAPTER}
        )
        question = [{"role": "user", "content": "Can I skip the pre-trip check?"}]

        answer = client.stream(question, channel="C_DISPATCH")
        chunks = list(answer)
        by_kind = client.complete(question, channel="C_OTHER", task_kind=TaskKind.DISPATCH)
        by_default = client.complete(question, channel="C_OTHER")

        assert chunks
        assert "".join(chunks) == answer.result.text
        assert (answer.result.model, answer.result.adapter) == (BASE_MODEL, ADAPTER)
        assert answer.result.endpoint == vllm_server.base_url
        assert answer.result.completion_tokens
        assert by_kind.adapter == ADAPTER
        assert by_default.adapter is None
        assert _status_json(vllm_server)["adapters"] == [ADAPTER]
    finally:
        unload_adapter(vllm_server.base_url, ADAPTER)

    assert ADAPTER not in {model.id for model in list_served_models(vllm_server.base_url)}
    with pytest.raises(ModelRequestRejected):
        make_client([vllm_server.base_url]).complete(question, model=ADAPTER)


def _status_json(server: RunningServer) -> dict[str, object]:
    """`dispatchbot model status --json` for the session's server, through the console script."""
    script = shutil.which("dispatchbot", path=str(Path(sys.executable).parent))
    assert script, "the dispatchbot console script is installed beside this python"
    env = {**os.environ, "DISPATCHBOT_DATA_DIR": str(server.settings.data_dir)}
    result = subprocess.run(  # noqa: S603 - our own console script
        [script, "model", "status", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
