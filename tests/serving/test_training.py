"""`dispatchbot train`: real LoRA training of SmolLM2-135M on this CPU, two steps at a time,
on a dataset folder written here by hand in the export format."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner
from vllm_support import MODELS_DIR

from bot.cli import app
from serving.base_weights import converted_model_dir
from serving.training import (
    CARD,
    CHECKPOINTS,
    Device,
    Method,
    TrainingConfig,
    TrainingError,
    TrainingProgress,
    read_training_data,
    train_adapter,
)
from serving.training_rows import DatasetManifest, SftRow
from store import repository, schema
from store.database import Database
from store.models import ModelVersionStatus

BASE = converted_model_dir(MODELS_DIR)
DATASET_HASH = "5e7b" * 16
SYSTEM = {
    "role": "system",
    "content": "You answer Northwind dispatch questions from policy. Cite sources as [n].",
}
QA = [
    ("Who approves a 30,000 lb load?", "The shift lead approves it [1]."),
    ("Who approves a 44,000 lb load?", "The operations manager approves it [1]."),
    ("Do I need approval for a 20,000 lb load?", "No, you approve it yourself [1]."),
    ("What is the SLA on a priority-1 reefer ticket?", "A technician within 4 hours [1]."),
    ("What is the SLA on a priority-3 ticket?", "Next business day [1]."),
    ("Can I skip the pre-trip check?", "No. Every trip starts with the pre-trip check [1]."),
    ("Who approves overtime on a route?", "The shift dispatcher approves overtime [1]."),
    ("A customer is not home. What now?", "Leave a card and log a failed delivery [1]."),
    ("The tail lift is broken.", "Open a service ticket and tell dispatch [1]."),
    ("Where do I report a delay?", "In the dispatch channel, at once [1]."),
]
WRONG = "Nobody needs to approve anything."
# transformers 5 renamed options that TRL 1.x and PEFT still use; nothing for us to change.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*is deprecated and will be removed in v6"),
    pytest.mark.slow,  # LoRA training on CPU, several runs
]


def _prompt(question: str) -> list[dict[str, str]]:
    return [SYSTEM, {"role": "user", "content": f"Sources: [1] Northwind policy.\n\n{question}"}]


def _answer(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def write_dataset(directory: Path, *, dpo: bool = True) -> Path:
    """An export as `dispatchbot dataset export` writes it: 10 SFT, 6 KTO, 3 DPO train rows."""
    directory.mkdir(parents=True)
    sft = [
        {"messages": [*_prompt(q), *_answer(a)], "conversation": f"c{i}"}
        for i, (q, a) in enumerate(QA)
    ]
    kto = [
        {
            "prompt": _prompt(q),
            "completion": _answer(a if i % 2 else WRONG),
            "label": bool(i % 2),
            "conversation": f"c{i}",
        }
        for i, (q, a) in enumerate(QA[:6])
    ]
    preference = [
        {"prompt": _prompt(q), "chosen": _answer(a), "rejected": _answer(WRONG), "conversation": c}
        for c, (q, a) in zip(("c0", "c1", "c2"), QA, strict=False)
    ]
    files = {
        "sft.train.jsonl": sft,
        "sft.heldout.jsonl": sft[:2],
        "kto.train.jsonl": kto,
        "kto.heldout.jsonl": [],
        "dpo.train.jsonl": preference if dpo else [],
        "dpo.heldout.jsonl": [],
    }
    for name, rows in files.items():
        _write_jsonl(directory / name, rows)
    counts = {
        kind: {split: len(files[f"{kind}.{split}.jsonl"]) for split in ("train", "heldout")}
        for kind in ("sft", "kto", "dpo")
    }
    manifest = DatasetManifest(
        created_at=datetime(2026, 3, 1, tzinfo=UTC),
        database="sqlite:///dispatchbot.db",
        counts=counts,
        skipped={},
        redactions=0,
        heldout_fraction=0.1,
        seed_rows=0,
        content_hash=DATASET_HASH,
    )
    (directory / "manifest.json").write_text(manifest.model_dump_json(), encoding="utf-8")
    return directory


def _config(tmp_path: Path, method: Method = Method.SFT, **overrides: Any) -> TrainingConfig:
    settings: dict[str, Any] = {
        "data_dir": write_dataset(tmp_path / "dataset"),
        "base_model": str(BASE),
        "out_dir": tmp_path / "adapter",
        "name": f"test-{method}",
        "method": method,
        "max_steps": 2,
        "batch_size": 2,
        "max_seq_len": 256,
        "device": Device.CPU,
        "save_every": 1,
        **overrides,
    }
    return TrainingConfig(**settings)


def _card(adapter: Path) -> dict[str, Any]:
    return json.loads((adapter / CARD).read_text())


def _lora_b_is_trained(adapter: Path) -> bool:
    """LoRA's B matrices start at zero: any non-zero one was written by training."""
    weights = load_file(adapter / "adapter_model.safetensors")
    b_weights = [tensor for key, tensor in weights.items() if "lora_B" in key]
    return bool(b_weights) and any(bool(tensor.abs().sum() > 0) for tensor in b_weights)


def test_sft_trains_an_adapter_that_changes_the_model(tmp_path: Path) -> None:
    config = _config(tmp_path)
    updates: list[TrainingProgress] = []

    result = train_adapter(config, updates.append)

    adapter = config.out_dir
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "adapter_model.safetensors").is_file()
    adapter_config = json.loads((adapter / "adapter_config.json").read_text())
    assert adapter_config["r"] == 16
    assert adapter_config["lora_alpha"] == 32
    assert sorted(adapter_config["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert _lora_b_is_trained(adapter)
    assert sorted(p.name for p in (adapter / CHECKPOINTS).glob("checkpoint-*")) == [
        "checkpoint-1",
        "checkpoint-2",
    ]
    assert [u.step for u in updates if u.loss is not None] == [1, 2]
    assert {u.total_steps for u in updates} == {2}

    card = _card(adapter)
    assert card["dataset"]["content_hash"] == DATASET_HASH
    assert card["dataset"]["rows"] == {"train": 10, "used": 10, "heldout": 2}
    assert card["method"] == "sft"
    assert card["base_model"] == str(BASE)
    assert card["steps"] == result.steps == 2
    assert card["hyperparameters"]["rank"] == 16
    assert card["hyperparameters"]["learning_rate"] == 1e-3
    assert card["hyperparameters"]["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert [step for step, _ in card["loss_curve"]] == [1, 2]
    assert all(math.isfinite(loss) and loss > 0 for _, loss in card["loss_curve"])
    assert card["final_loss"] == card["loss_curve"][-1][1] == result.final_loss
    assert card["steps_per_s"] > 0
    assert card["wall_s"] >= card["train_s"] > 0
    assert (card["device"], card["dtype"]) == (result.device, result.dtype)
    assert card["device"] == "cpu"
    assert card["dtype"] in ("bf16", "fp32")
    readme = (adapter / "README.md").read_text()
    assert DATASET_HASH in readme
    assert "| LoRA | r=16, alpha=32" in readme

    # The saved weights load onto the base and change what it predicts.
    tokenizer = AutoTokenizer.from_pretrained(BASE)
    inputs = tokenizer.apply_chat_template(
        _prompt(QA[0][0]), add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    base = AutoModelForCausalLM.from_pretrained(BASE, dtype=torch.float32).eval()
    with torch.no_grad():
        before = base(**inputs).logits
        after = PeftModel.from_pretrained(base, adapter).eval()(**inputs).logits
    assert before.shape == after.shape
    assert (after - before).abs().max().item() > 1e-4


@pytest.mark.parametrize("method", [Method.KTO, Method.DPO])
def test_preference_methods_train_on_their_rows(tmp_path: Path, method: Method) -> None:
    result = train_adapter(_config(tmp_path, method))

    card = _card(result.adapter_dir)
    assert card["method"] == method.value
    assert card["steps"] == 2
    assert card["dataset"]["rows"]["used"] == {"kto": 6, "dpo": 3}[method.value]
    assert card["hyperparameters"]["learning_rate"] == 5e-5
    assert all(math.isfinite(loss) for _, loss in card["loss_curve"])
    assert _lora_b_is_trained(result.adapter_dir)


def test_an_interrupted_run_resumes_from_its_last_checkpoint(tmp_path: Path) -> None:
    config = _config(tmp_path)

    def stop_at_step_two(update: TrainingProgress) -> None:
        if update.step == 2:  # checkpoint-1 is saved; checkpoint-2 is not yet
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_adapter(config, stop_at_step_two)
    assert not (config.out_dir / "adapter_config.json").exists()

    result = train_adapter(config)

    assert result.resumed_from == 1
    assert result.steps == 2
    assert [step for step, _ in result.loss_curve] == [1, 2]
    assert _card(config.out_dir)["resumed_from_step"] == 1
    with pytest.raises(TrainingError, match="holds a trained adapter already"):
        train_adapter(config)
    # Checkpoints of other settings are never resumed from.
    other = _config(tmp_path / "other", out_dir=tmp_path / "other-adapter")
    with pytest.raises(KeyboardInterrupt):
        train_adapter(other, stop_at_step_two)
    with pytest.raises(TrainingError, match="other data or settings"):
        train_adapter(_config(tmp_path / "again", out_dir=other.out_dir, rank=4))


def test_the_trainer_reads_each_method_in_its_trl_form(tmp_path: Path) -> None:
    data_dir = write_dataset(tmp_path / "dataset")

    sft, kto, dpo = (read_training_data(data_dir, method) for method in Method)

    assert (len(sft.rows), len(kto.rows), len(dpo.rows)) == (10, 6, 3)
    assert (sft.heldout_rows, sft.content_hash) == (2, DATASET_HASH)
    assert sft.counts["sft"] == {"train": 10, "heldout": 2}
    question, answer = QA[0]
    assert sft.rows[0].for_trainer() == {"prompt": _prompt(question), "completion": _answer(answer)}
    assert kto.rows[0].for_trainer() == {
        "prompt": _prompt(question),
        "completion": _answer(WRONG),
        "label": False,
    }
    assert dpo.rows[0].for_trainer() == {
        "prompt": _prompt(question),
        "chosen": _answer(answer),
        "rejected": _answer(WRONG),
    }


def test_sft_rows_put_the_final_answer_apart_and_bad_rows_say_where(tmp_path: Path) -> None:
    messages = [*_prompt("q"), *_answer("first"), {"role": "user", "content": "and?"}]
    row = SftRow.model_validate({"messages": [*messages, *_answer("final")], "conversation": "c"})
    assert row.for_trainer() == {"prompt": messages, "completion": _answer("final")}

    config = _config(tmp_path)
    with (config.data_dir / "sft.train.jsonl").open("a") as rows:
        rows.write(json.dumps({"messages": messages, "conversation": "c"}) + "\n")
        rows.write('{"messages": [{"role": "user"}], "conversation": "c"}\n')
    with pytest.raises(TrainingError, match=r"sft\.train\.jsonl:11: messages must end with the"):
        train_adapter(config)
    lines = (config.data_dir / "sft.train.jsonl").read_text().splitlines()
    (config.data_dir / "sft.train.jsonl").write_text("\n".join([*lines[:10], lines[11]]) + "\n")
    with pytest.raises(
        TrainingError, match=r"sft\.train\.jsonl:11: messages\[0\] is not a \{role, content\}"
    ):
        train_adapter(config)
    assert not (config.out_dir / "adapter_config.json").exists()


def test_rows_that_do_not_fit_are_skipped_and_none_fitting_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="every SFT row is longer than --max-seq-len 24"):
        train_adapter(_config(tmp_path, max_seq_len=24))
    assert not (tmp_path / "adapter" / "adapter_config.json").exists()


# The command line


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A migrated SQLite store and a models dir in tmp_path; the base weights are the repo's."""
    monkeypatch.chdir(tmp_path)  # no developer .env steers these runs
    database_url = f"sqlite:///{tmp_path / 'dispatchbot.db'}"
    database = Database(database_url)
    schema.upgrade(database)
    database.dispose()
    return {
        "DISPATCHBOT_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": database_url,
        "MODELS_DIR": str(tmp_path / "models"),
        "VLLM_MAX_LORA_RANK": "16",
    }


def _train(env: dict[str, str], *args: str) -> Any:
    return CliRunner().invoke(app, ["train", *args], env=env)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def test_the_command_trains_registers_a_candidate_and_refuses_a_used_name(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    data = write_dataset(tmp_path / "dataset")
    too_long = [*_prompt("Why? " * 300), *_answer("Because.")]
    with (data / "sft.train.jsonl").open("a") as rows:
        rows.write(json.dumps({"messages": too_long, "conversation": "c-long"}) + "\n")
    small = ["--max-steps", "2", "--batch-size", "2", "--max-seq-len", "256", "--device", "cpu"]

    result = _train(cli_env, "--data", str(data), "--base", str(BASE), *small, "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {
        "name",
        "adapter_path",
        "method",
        "base_model",
        "steps",
        "wall_s",
        "steps_per_s",
        "final_loss",
        "train_rows",
        "dataset_hash",
        "device",
        "dtype",
    }
    name = report["name"]
    assert re.fullmatch(r"dispatchbot-\d{8}-\d{6}", name)
    adapter = tmp_path / "models" / "adapters" / name
    assert report["adapter_path"] == str(adapter)
    assert (report["method"], report["steps"], report["device"]) == ("sft", 2, "cpu")
    assert report["dataset_hash"] == DATASET_HASH
    assert report["steps_per_s"] > 0
    assert math.isfinite(report["final_loss"])
    assert report["train_rows"] == 10
    assert "note: 1 of 11 rows did not fit in --max-seq-len 256" in _one_line(result.stderr)
    assert (adapter / "adapter_model.safetensors").is_file()
    assert "step 2/2 loss" in result.stderr  # not a terminal: plain progress lines

    database = Database(cli_env["DATABASE_URL"])
    with database.transaction() as session:
        version = repository.find_model_version(session, name)
        assert version is not None
        assert version.status is ModelVersionStatus.CANDIDATE
        assert version.adapter_path == str(adapter)
        assert version.dataset_hash == DATASET_HASH
        assert version.base_model == str(BASE)
        training = version.metrics["training"]
        assert training["steps"] == 2
        assert training["hyperparameters"]["rank"] == 16
        assert "loss_curve" not in training
    database.dispose()

    again = _train(cli_env, "--data", str(data), "--base", str(BASE), "--name", name, *small)

    assert again.exit_code == 2
    assert f"a model version named '{name}' exists already" in _one_line(again.stderr)
    assert "Traceback" not in again.output


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda d: ["--data", str(d.parent / "missing")], "no dataset folder at"),
        (lambda d: ["--data", str(d), "--method", "dpo"], "no DPO rows in"),
        (lambda d: ["--data", str(d.parent)], "has no manifest.json"),
        (lambda d: ["--data", str(d), "--base", str(d / "nope")], "no base model folder at"),
        (lambda d: ["--data", str(d), "--base", str(d)], "has no config.json"),
        (lambda d: ["--data", str(d), "--rank", "32"], "above VLLM_MAX_LORA_RANK (16)"),
        (lambda d: ["--data", str(d), "--method", "kto", "--batch-size", "1"], "KTO needs"),
        (lambda d: ["--data", str(d), "--name", "a b"], "--name 'a b': use letters"),
        (lambda d: ["--data", str(d)], "run `dispatchbot model setup`"),  # MODELS_DIR is empty
    ],
)
def test_bad_input_is_one_clear_line(
    tmp_path: Path, cli_env: dict[str, str], make_args: Any, message: str
) -> None:
    data = write_dataset(tmp_path / "dataset", dpo=False)
    args = make_args(data)
    if "--base" not in args and "model setup" not in message:
        args += ["--base", str(BASE)]

    result = _train(cli_env, *args)

    assert result.exit_code == 2, result.output
    assert message in _one_line(result.stderr)
    assert "Traceback" not in result.output
    assert not (tmp_path / "models" / "adapters").exists()


def test_invalid_manifest_is_a_clear_error(tmp_path: Path, cli_env: dict[str, str]) -> None:
    data = write_dataset(tmp_path / "dataset")
    (data / "manifest.json").write_text("{not json")

    result = _train(cli_env, "--data", str(data), "--base", str(BASE))

    assert result.exit_code == 2
    assert "manifest.json is not JSON" in _one_line(result.stderr)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has the GPU it asks for")
def test_cuda_without_a_gpu_is_a_usage_error(tmp_path: Path, cli_env: dict[str, str]) -> None:
    data = write_dataset(tmp_path / "dataset")

    result = _train(cli_env, "--data", str(data), "--base", str(BASE), "--device", "cuda")

    assert result.exit_code == 2
    assert "--device cuda, but this torch" in _one_line(result.stderr)
    assert "sees no CUDA GPU" in _one_line(result.stderr)
