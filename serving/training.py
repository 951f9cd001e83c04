"""LoRA adapters trained on an exported dataset with PEFT and TRL: SFT, KTO or DPO.

The adapter folder is what vLLM loads (`adapter_config.json` + `adapter_model.safetensors`),
with a card beside it (`adapter_card.json`, README.md) saying how it was made. Checkpoints go
to `<adapter>/checkpoints`; a run that stopped resumes from the last one when it is started
again with the same data and settings.

torch, transformers, peft, trl and datasets are imported only when training starts, so the
command line stays quick for everything else.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sized
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serving.training_rows import (
    DatasetFileError,
    DpoRow,
    KtoRow,
    SftRow,
    Split,
    TrainingRow,
    data_file,
    read_manifest,
    read_rows,
)
from store.errors import BadInput

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer

CARD = "adapter_card.json"
CHECKPOINTS = "checkpoints"
RUN_FILE = "run.json"  # in CHECKPOINTS: what a resumed run must match
# vLLM serves LoRA on the attention projections of Llama-architecture models; an adapter on
# other modules (embeddings, lm_head, norms) would be refused or ignored when it is loaded.
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
LORA_DROPOUT = 0.05
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


class Method(StrEnum):
    SFT = "sft"  # imitate good answers: 👍 answers, people's resolutions, seed rows
    KTO = "kto"  # 👍 answers up, 👎 answers down, one at a time
    DPO = "dpo"  # a person's answer preferred over the 👎 answer to the same prompt


class Device(StrEnum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


# LoRA takes a higher rate than full fine-tuning; the preference losses move further per step.
# SFT at 1e-3: one epoch of the seed is 54 steps, and at 2e-4 the loss barely moved in them.
DEFAULT_LEARNING_RATES = {Method.SFT: 1e-3, Method.KTO: 5e-5, Method.DPO: 5e-5}
EMPTY_METHOD_HINTS = {
    Method.SFT: "SFT needs 👍 answers, people's answers to escalations or a --seed file",
    Method.KTO: "KTO needs answers with 👍 or 👎; use --method sft",
    Method.DPO: "DPO needs 👎 answers that a person later answered; use --method sft",
}
ROW_MODELS: dict[Method, type[TrainingRow]] = {
    Method.SFT: SftRow,
    Method.KTO: KtoRow,
    Method.DPO: DpoRow,
}


class TrainingError(BadInput):
    """Training cannot start with this input; the message says what to change."""


@dataclass(frozen=True)
class TrainingConfig:
    data_dir: Path
    base_model: str  # a folder of weights or a Hugging Face model name
    out_dir: Path
    name: str
    method: Method = Method.SFT
    # One epoch of the seed (215 rows of ~640 tokens) is about 15 minutes on 2 cores.
    epochs: float = 1.0
    max_steps: int | None = None  # when set, it wins over epochs
    learning_rate: float | None = None  # None: DEFAULT_LEARNING_RATES[method]
    rank: int = 16  # the local vLLM's VLLM_MAX_LORA_RANK; merged for serving, so free there
    batch_size: int = 4
    max_seq_len: int = 2048  # the serving context (LLM_CONTEXT_TOKENS): no prompt is cut
    device: Device = Device.AUTO
    save_every: int = 50
    keep_checkpoints: int = 2
    seed: int = 0

    @property
    def lora_alpha(self) -> int:
        return 2 * self.rank

    @property
    def lr(self) -> float:
        return self.learning_rate or DEFAULT_LEARNING_RATES[self.method]

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "lora_alpha": self.lora_alpha,
            "lora_dropout": LORA_DROPOUT,
            "target_modules": list(TARGET_MODULES),
            "learning_rate": self.lr,
            "lr_schedule": "linear decay",
            "batch_size": self.batch_size,
            "max_seq_len": self.max_seq_len,
            "epochs": self.epochs,
            "max_steps": self.max_steps,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class TrainingData:
    """The train rows of one method from an export (`for_trainer()` gives TRL's form)."""

    directory: Path
    method: Method
    content_hash: str
    counts: dict[str, dict[str, int]]  # the manifest's row counts, every method and split
    rows: list[TrainingRow]
    heldout_rows: int


@dataclass(frozen=True)
class TrainingProgress:
    step: int
    total_steps: int
    loss: float | None  # of this step; None before the first


@dataclass(frozen=True)
class TrainingResult:
    name: str
    adapter_dir: Path
    method: Method
    base_model: str
    dataset_hash: str
    train_rows: int  # rows the trainer used (SFT drops rows whose answer does not fit)
    skipped_rows: int
    steps: int
    resumed_from: int | None  # the checkpoint step this run continued from
    wall_s: float  # the whole run: loading, training, saving
    train_s: float  # the training loop of this run
    steps_per_s: float
    final_loss: float
    loss_curve: list[tuple[int, float]]
    device: str
    dtype: str
    card: dict[str, Any] = field(repr=False)

    def summary(self) -> dict[str, Any]:
        """What `dispatchbot train --json` prints."""
        return {
            "name": self.name,
            "adapter_path": str(self.adapter_dir),
            "method": self.method.value,
            "base_model": self.base_model,
            "steps": self.steps,
            "wall_s": round(self.wall_s, 2),
            "steps_per_s": round(self.steps_per_s, 4),
            "final_loss": self.final_loss,
            "train_rows": self.train_rows,
            "dataset_hash": self.dataset_hash,
            "device": self.device,
            "dtype": self.dtype,
        }

    def store_metrics(self) -> dict[str, Any]:
        """The model version's `metrics`: the card without the per-step curve."""
        return {"training": {k: v for k, v in self.card.items() if k != "loss_curve"}}


# The dataset


def read_training_data(directory: Path, method: Method) -> TrainingData:
    """The train rows of `method` from an export folder, checked line by line."""
    model = ROW_MODELS[method]
    try:
        manifest = read_manifest(directory)
        rows = read_rows(directory / data_file(method, Split.TRAIN), model)
        heldout_file = directory / data_file(method, Split.HELDOUT)
        heldout = len(read_rows(heldout_file, model)) if heldout_file.is_file() else 0
    except DatasetFileError as error:
        raise TrainingError(str(error)) from error
    if not rows:
        raise TrainingError(
            f"no {method.value.upper()} rows in {directory}: {EMPTY_METHOD_HINTS[method]}"
        )
    return TrainingData(
        directory=directory,
        method=method,
        content_hash=manifest.content_hash,
        counts=manifest.counts,
        rows=rows,
        heldout_rows=heldout,
    )


# Where and how


def resolve_device(preference: Device) -> tuple[str, str]:
    """(device, dtype): bf16 where the hardware computes it natively, fp32 elsewhere."""
    import torch

    has_cuda = torch.cuda.is_available()
    if preference is Device.CUDA and not has_cuda:
        raise TrainingError(
            f"--device cuda, but this torch ({torch.__version__}) sees no CUDA GPU; "
            "run on a GPU machine with a CUDA build of torch, or use --device cpu"
        )
    device = (
        "cuda" if preference is Device.CUDA or (preference is Device.AUTO and has_cuda) else "cpu"
    )
    if device == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
    else:
        # Without AVX512-BF16, bf16 on a CPU is emulated and slower than fp32.
        bf16 = getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
    return device, "bf16" if bf16 else "fp32"


def check_base_model(base: str) -> None:
    """Fail in a second, not after loading, when `base` names no model."""
    path = Path(base).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise TrainingError(f"{base} has no config.json, so it is not a model folder")
        return
    if base.startswith(("/", ".", "~")) or path.exists():
        raise TrainingError(f"no base model folder at {base}")
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(base)
    except (OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise TrainingError(
            f"unknown base model {base!r}: not a folder here and not found on the Hugging "
            f"Face Hub ({reason})"
        ) from error


# Training


def train_adapter(
    config: TrainingConfig, progress: Callable[[TrainingProgress], None] | None = None
) -> TrainingResult:
    """Train, save the adapter and its card into `config.out_dir`, and say how it went.

    Raises TrainingError for input that cannot train (before any model is loaded where
    possible). A KeyboardInterrupt leaves the checkpoints for a resumed run.
    """
    began = time.monotonic()
    if config.method is Method.KTO and config.batch_size < 2:
        # KTO estimates its KL term from the other completions of the same batch.
        raise TrainingError("KTO needs --batch-size 2 or more")
    data = read_training_data(config.data_dir, config.method)
    _require_training_packages()
    device, dtype = resolve_device(config.device)
    check_base_model(config.base_model)
    resume_from = _prepare_out_dir(config, data)

    from peft import PeftModel

    with _quiet_libraries():
        tokenizer, model = _load_base(config.base_model, dtype)
        trainer = _build_trainer(config, data, model, tokenizer, device, dtype, progress)
        dataset = trainer.train_dataset
        assert isinstance(dataset, Sized), "_build_trainer gives it a datasets.Dataset"
        train_rows = len(dataset)
        if train_rows == 0:
            raise TrainingError(
                f"every {config.method.value.upper()} row is longer than --max-seq-len "
                f"{config.max_seq_len} tokens; raise it"
            )
        started = time.monotonic()
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        train_s = time.monotonic() - started
        adapter = trainer.model
        # With a LoRA config the trainer wraps the base model in a PeftModel, which saves
        # the adapter alone.
        assert isinstance(adapter, PeftModel), type(adapter).__name__
        adapter.save_pretrained(str(config.out_dir))

    state = trainer.state
    curve = [
        (int(entry["step"]), float(entry["loss"]))
        for entry in state.log_history
        if "loss" in entry and "step" in entry
    ]
    first_step = _checkpoint_step(resume_from) if resume_from else 0
    steps_per_s = (state.global_step - first_step) / train_s if train_s > 0 else 0.0
    result = TrainingResult(
        name=config.name,
        adapter_dir=config.out_dir,
        method=config.method,
        base_model=config.base_model,
        dataset_hash=data.content_hash,
        train_rows=train_rows,
        skipped_rows=len(data.rows) - train_rows,
        steps=state.global_step,
        resumed_from=first_step or None,
        wall_s=time.monotonic() - began,
        train_s=train_s,
        steps_per_s=steps_per_s,
        final_loss=curve[-1][1] if curve else math.nan,
        loss_curve=curve,
        device=device,
        dtype=dtype,
        card={},
    )
    card = _card(config, data, result, epochs_done=float(state.epoch or 0.0))
    (config.out_dir / CARD).write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    # Replaces the generic card PEFT writes beside the weights.
    (config.out_dir / "README.md").write_text(_readme(card), encoding="utf-8")
    return replace(result, card=card)


def _require_training_packages() -> None:
    missing = []
    for package in ("torch", "transformers", "peft", "trl", "datasets"):
        try:
            metadata.version(package)
        except metadata.PackageNotFoundError:
            missing.append(package)
    if missing:
        raise TrainingError(
            f"training needs {', '.join(missing)}: install them with pip install -e '.[train]'"
        )


def _fingerprint(config: TrainingConfig, data: TrainingData) -> dict[str, Any]:
    # Steps and epochs may change between a run and its resumption; nothing else may.
    hyper = {k: v for k, v in config.hyperparameters().items() if k not in ("epochs", "max_steps")}
    return {
        "base_model": config.base_model,
        "method": config.method.value,
        "dataset_hash": data.content_hash,
        **hyper,
    }


def _prepare_out_dir(config: TrainingConfig, data: TrainingData) -> Path | None:
    """Create the adapter folder, or find the checkpoint of the same run to resume from."""
    out = config.out_dir
    if (out / "adapter_config.json").exists():
        raise TrainingError(
            f"{out} holds a trained adapter already; choose another --name or --out"
        )
    fingerprint = _fingerprint(config, data)
    checkpoints = out / CHECKPOINTS
    run_file = checkpoints / RUN_FILE
    saved = [p for p in checkpoints.glob("checkpoint-*") if _CHECKPOINT.fullmatch(p.name)]
    if run_file.is_file() and saved:
        try:
            previous = json.loads(run_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            previous = None
        if previous != fingerprint:
            raise TrainingError(
                f"{out} holds checkpoints of a run with other data or settings; "
                "delete the folder or choose another --name or --out"
            )
        return max(saved, key=_checkpoint_step)
    if not run_file.is_file() and out.exists() and any(out.iterdir()):
        raise TrainingError(f"{out} exists and is not empty; choose another --name or --out")
    run_file.parent.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps(fingerprint, indent=2) + "\n", encoding="utf-8")
    return None


def _checkpoint_step(path: Path) -> int:
    match = _CHECKPOINT.fullmatch(path.name)
    return int(match.group(1)) if match else 0


@contextmanager
def _quiet_libraries() -> Iterator[None]:
    """Our progress callback reports; the libraries' own bars and notices would interleave."""
    import datasets
    from transformers.utils import logging as transformers_logging

    bars_were_on = datasets.is_progress_bar_enabled()
    weight_bars_were_on = transformers_logging.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    transformers_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            # TRL 1.x still sets `gradient_checkpointing`, which transformers 5 renamed.
            warnings.filterwarnings(
                "ignore", message=".*deprecated and will be removed in v6", category=FutureWarning
            )
            yield
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()
        if weight_bars_were_on:
            transformers_logging.enable_progress_bar()


def _load_base(base: str, dtype: str) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(base)
        # bf16 weights with fp32 LoRA weights (PEFT's default) and autocast: on this CPU
        # 2.5 s/step against 4.6 s/step for fp32 (batch 4, ~230 tokens).
        model = AutoModelForCausalLM.from_pretrained(
            base, dtype=torch.bfloat16 if dtype == "bf16" else torch.float32
        )
    except (OSError, ValueError) as error:
        raise TrainingError(f"cannot load {base} as a causal language model: {error}") from error
    if not tokenizer.chat_template:
        raise TrainingError(f"{base} has no chat template; train an instruction-tuned (chat) model")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model


def _build_trainer(
    config: TrainingConfig,
    data: TrainingData,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    device: str,
    dtype: str,
    progress: Callable[[TrainingProgress], None] | None,
) -> Trainer:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import PrinterCallback, TrainerCallback, set_seed
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer, SFTConfig, SFTTrainer

    set_seed(config.seed)
    # On a CPU a padded batch costs more than its rows one at a time: the padding mask takes
    # attention off SDPA's causal fast path (4 rows of ~1,200 tokens: 24 s as one batch, 13 s
    # one by one). The rows per optimizer step stay the same. KTO needs real batches: it pairs
    # each row with another of its batch.
    micro_batch = 1 if device == "cpu" and config.method is not Method.KTO else config.batch_size
    common: dict[str, Any] = {
        "output_dir": str(config.out_dir / CHECKPOINTS),
        "num_train_epochs": config.epochs,
        "max_steps": config.max_steps or -1,
        "per_device_train_batch_size": micro_batch,
        "gradient_accumulation_steps": config.batch_size // micro_batch,
        "learning_rate": config.lr,
        "max_length": config.max_seq_len,
        "logging_steps": 1,
        "save_strategy": "steps",
        "save_steps": config.save_every,
        "save_total_limit": config.keep_checkpoints,
        "report_to": [],
        "disable_tqdm": True,
        "seed": config.seed,
        "use_cpu": device == "cpu",
        "bf16": dtype == "bf16",
        # Memory for speed: worth it for the 7-8B models on GPUs, not for SmolLM2 on a CPU.
        "gradient_checkpointing": device == "cuda",
    }
    rows = [row.for_trainer() for row in data.rows]
    if config.method is Method.SFT:
        args: Any = SFTConfig(**common, completion_only_loss=True)
        trainer_class: Any = SFTTrainer
    elif config.method is Method.KTO:
        # KTO reads its rows in order (each one's KL estimate pairs it with its neighbour):
        # shuffle, so 👍 and 👎 rows mix; weigh the rarer label up to balance the two.
        random.Random(config.seed).shuffle(rows)  # noqa: S311 - an order, not a secret
        liked = sum(row["label"] for row in rows)
        disliked = len(rows) - liked
        weights = {}
        if liked and disliked:
            weights = {"desirable_weight": 1.0, "undesirable_weight": liked / disliked}
        args = KTOConfig(**common, **weights)
        trainer_class = KTOTrainer
    else:
        args = DPOConfig(**common)
        trainer_class = DPOTrainer

    class ReportProgress(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if progress:
                progress(TrainingProgress(state.global_step, state.max_steps, None))

        def on_log(
            self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any
        ) -> None:
            if progress and logs and "loss" in logs:
                progress(TrainingProgress(state.global_step, state.max_steps, float(logs["loss"])))

    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=LoraConfig(
            r=config.rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=LORA_DROPOUT,
            target_modules=list(TARGET_MODULES),
            task_type="CAUSAL_LM",
        ),
        callbacks=[ReportProgress()],
    )
    trainer.remove_callback(PrinterCallback)  # it prints every log dict to stdout
    return trainer


# The card


def _card(
    config: TrainingConfig, data: TrainingData, result: TrainingResult, *, epochs_done: float
) -> dict[str, Any]:
    return {
        "name": config.name,
        "base_model": config.base_model,
        "method": config.method.value,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": {
            "path": str(data.directory.absolute()),
            "content_hash": data.content_hash,
            "rows": {
                "train": len(data.rows),
                "used": result.train_rows,
                "heldout": data.heldout_rows,
            },
            "manifest_counts": data.counts,
        },
        "hyperparameters": config.hyperparameters(),
        "steps": result.steps,
        "epochs_done": round(epochs_done, 3),
        "resumed_from_step": result.resumed_from,
        "wall_s": round(result.wall_s, 2),
        "train_s": round(result.train_s, 2),
        "steps_per_s": round(result.steps_per_s, 4),
        "final_loss": result.final_loss,
        "loss_curve": [[step, loss] for step, loss in result.loss_curve],
        "device": result.device,
        "dtype": result.dtype,
        "libraries": {
            package: metadata.version(package)
            for package in ("torch", "transformers", "peft", "trl")
        },
    }


METHOD_PROSE = {
    "sft": "supervised fine-tuning (SFT) on good answers, with the loss on the answer only",
    "kto": "KTO on answers people marked 👍 or 👎",
    "dpo": "DPO on pairs of a person's answer (preferred) and a 👎 answer",
}


def _readme(card: dict[str, Any]) -> str:
    hyper = card["hyperparameters"]
    rows = card["dataset"]["rows"]
    curve = card["loss_curve"]
    loss = (
        f"The loss went from {curve[0][1]:.4f} (step {curve[0][0]}) to {curve[-1][1]:.4f}."
        if curve
        else "No loss was logged."
    )
    table = [
        ("base model", f"`{card['base_model']}`"),
        ("method", card["method"].upper()),
        ("dataset", f"`{card['dataset']['content_hash']}`"),
        ("rows", f"{rows['used']} trained on, {rows['heldout']} held out"),
        (
            "LoRA",
            f"r={hyper['rank']}, alpha={hyper['lora_alpha']}, dropout {hyper['lora_dropout']}, "
            f"on {', '.join(hyper['target_modules'])}",
        ),
        ("learning rate", f"{hyper['learning_rate']:g}, {hyper['lr_schedule']}"),
        ("batch", f"{hyper['batch_size']} rows of at most {hyper['max_seq_len']} tokens"),
        ("steps", f"{card['steps']} ({card['epochs_done']:g} epochs)"),
        ("time", f"{card['wall_s']:.1f} s in all, {card['steps_per_s']:.3f} steps/s"),
        ("final loss", f"{card['final_loss']:.4f}"),
        ("device", f"{card['device']}, {card['dtype']}"),
        ("created", card["created_at"]),
    ]
    lines = [
        f"# {card['name']}",
        "",
        f"A LoRA adapter for `{card['base_model']}`, trained by `dispatchbot train` with "
        f"{METHOD_PROSE[card['method']]}: {rows['used']} rows of the dataset export "
        f"`{card['dataset']['content_hash'][:12]}`, {card['steps']} steps on "
        f"{card['device']} in {card['dtype']}. {loss}",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {value} |" for key, value in table),
        "",
        f"Judge it with `dispatchbot evaluate model --candidate {card['name']}`, then serve it "
        f"with `dispatchbot promote {card['name']}`; any vLLM serves it with `--enable-lora "
        f"--lora-modules {card['name']}=<this folder>` and a --max-lora-rank of "
        f"{hyper['rank']} or more.",
        "The numbers are in adapter_card.json, the loss at every step included.",
        "",
    ]
    return "\n".join(lines)
