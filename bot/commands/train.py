"""`dispatchbot train`: a LoRA adapter from an exported dataset, registered as a candidate."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from bot.commands.common import command_database, fail, settings_of, stderr
from serving.base_weights import converted_model_dir
from serving.training import (
    CHECKPOINTS,
    DEFAULT_LEARNING_RATES,
    Device,
    Method,
    TrainingConfig,
    TrainingProgress,
    TrainingResult,
    train_adapter,
)
from store import repository
from store.errors import NameTaken
from store.settings import Settings

console = Console(soft_wrap=True)
# A version name is also the name vLLM serves the adapter under and a folder name.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
EXIT_INTERRUPTED = 130


def train(
    ctx: typer.Context,
    data: Annotated[
        Path, typer.Option("--data", help="Folder written by `dispatchbot dataset export`.")
    ],
    method: Annotated[
        Method,
        typer.Option(
            "--method",
            case_sensitive=False,
            help="sft: learn the good answers (👍, people's resolutions, seed rows); "
            "kto: 👍 answers up and 👎 answers down; "
            "dpo: prefer a person's answer over the 👎 answer it replaced.",
        ),
    ] = Method.SFT,
    base: Annotated[
        str | None,
        typer.Option(
            "--base",
            help="Base model: a folder of safetensors weights or a Hugging Face model name. "
            "Default: the SmolLM2-135M-Instruct that `dispatchbot model setup` converts into "
            "MODELS_DIR.",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Model version name, also the adapter's name in vLLM. "
            "Default: dispatchbot-YYYYMMDD-HHMMSS (UTC).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Adapter folder. Default: MODELS_DIR/adapters/NAME."),
    ] = None,
    max_steps: Annotated[
        int | None,
        typer.Option(
            "--max-steps", min=1, help="Stop after this many optimizer steps (wins over --epochs)."
        ),
    ] = None,
    epochs: Annotated[
        float, typer.Option("--epochs", min=0.01, help="Passes over the train rows.")
    ] = TrainingConfig.epochs,
    lr: Annotated[
        float | None,
        typer.Option(
            "--lr",
            help=f"Learning rate. Default: {DEFAULT_LEARNING_RATES[Method.SFT]:g} for sft, "
            f"{DEFAULT_LEARNING_RATES[Method.KTO]:g} for kto and dpo.",
        ),
    ] = None,
    rank: Annotated[
        int,
        typer.Option(
            "--rank", min=1, help="LoRA rank r (alpha is 2r); at most VLLM_MAX_LORA_RANK."
        ),
    ] = TrainingConfig.rank,
    batch_size: Annotated[
        int,
        typer.Option("--batch-size", min=1, help="Rows per optimizer step (kto needs 2 or more)."),
    ] = TrainingConfig.batch_size,
    max_seq_len: Annotated[
        int | None,
        typer.Option(
            "--max-seq-len",
            min=32,
            help="Tokens of prompt and answer trained on; an sft row whose answer starts past "
            "it is skipped. Default: LLM_CONTEXT_TOKENS, the window prompts are built to fit.",
        ),
    ] = None,
    save_every: Annotated[
        int,
        typer.Option(
            "--save-every",
            min=1,
            help="Checkpoint every N steps into OUT/checkpoints (the last 2 are kept). An "
            "interrupted run started again with the same --name resumes from the last one.",
        ),
    ] = 50,
    device: Annotated[
        Device,
        typer.Option(
            "--device",
            case_sensitive=False,
            help="cuda: the GPU (bf16 where it has it); cpu: bf16 where the CPU has "
            "AVX512-BF16, else fp32; auto: cuda when torch sees a GPU.",
        ),
    ] = Device.AUTO,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object with the outcome instead of text.")
    ] = False,
) -> None:
    """Train a LoRA adapter on an exported dataset and register it as a candidate version.

    On this CPU the default SmolLM2-135M-Instruct takes a few seconds a step. The same
    command trains a larger model on a GPU machine: `--device cuda --base
    Qwen/Qwen2.5-7B-Instruct` (or a local folder). Then judge the adapter with
    `dispatchbot evaluate model --candidate NAME` and serve it with `dispatchbot promote NAME`.
    """
    settings = settings_of(ctx)
    assert settings.models_dir is not None, "Settings derives models_dir from the data dir"
    name = name or f"dispatchbot-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    if not NAME_PATTERN.fullmatch(name):
        fail(
            f"--name {name!r}: use letters, digits, '.', '_' and '-' (128 at most), "
            "starting with a letter or digit"
        )
    if name == settings.llm_model:
        fail(f"--name {name!r} is the base model's served name; pick another")
    if lr is not None and lr <= 0:
        fail(f"--lr must be above 0, like 1e-4; got {lr}")
    if rank > settings.vllm_max_lora_rank:
        fail(
            f"--rank {rank} is above VLLM_MAX_LORA_RANK ({settings.vllm_max_lora_rank}), so vLLM "
            "would refuse the adapter; lower --rank or raise VLLM_MAX_LORA_RANK"
        )
    base = base or default_base(settings)
    with command_database(settings) as database, database.transaction() as session:
        if repository.find_model_version(session, name) is not None:
            fail(f"a model version named {name!r} exists already; pick another --name")

    config = TrainingConfig(
        data_dir=data,
        base_model=base,
        out_dir=(out or settings.models_dir / "adapters" / name).absolute(),
        name=name,
        method=method,
        epochs=epochs,
        max_steps=max_steps,
        learning_rate=lr,
        rank=rank,
        batch_size=batch_size,
        max_seq_len=max_seq_len or settings.llm_context_tokens,
        device=device,
        save_every=save_every,
    )
    _report(train_and_register(settings, config), as_json)


def default_base(settings: Settings) -> str:
    """The SmolLM2-135M-Instruct that `dispatchbot model setup` converts into MODELS_DIR."""
    assert settings.models_dir is not None, "Settings derives models_dir from the data dir"
    converted = converted_model_dir(settings.models_dir.absolute())
    if not (converted / "config.json").is_file():
        fail(
            f"the base model is not in {converted} yet; run `dispatchbot model setup` "
            "or pass --base"
        )
    return str(converted)


def train_and_register(settings: Settings, config: TrainingConfig) -> TrainingResult:
    """Train with a progress display, then record the adapter as a candidate version.

    Bad input, an interrupt or a name registered meanwhile ends the command clearly.
    """
    assert settings.models_dir is not None, "Settings derives models_dir from the data dir"
    try:
        with _progress_display(f"{config.method.value} {config.name}") as progress:
            result = train_adapter(config, progress)
    except KeyboardInterrupt:
        fail(_interrupted(config), EXIT_INTERRUPTED)

    with command_database(settings) as database, database.transaction() as session:
        try:
            repository.register_model_version(
                session,
                name=config.name,
                base_model=_served_base(config.base_model, settings.llm_model, settings.models_dir),
                adapter_path=str(result.adapter_dir),
                dataset_hash=result.dataset_hash,
                metrics=result.store_metrics(),
            )
        except NameTaken as error:  # someone registered the name while this one trained
            fail(f"{error}; the adapter is in {result.adapter_dir}")
    return result


def _served_base(base: str, served_name: str, models_dir: Path) -> str:
    """The local base is recorded under the name vLLM serves it as; others as given."""
    if Path(base).absolute() == converted_model_dir(models_dir.absolute()):
        return served_name
    return base


@contextmanager
def _progress_display(label: str) -> Iterator[Callable[[TrainingProgress], None]]:
    """A live bar on a terminal; elsewhere (logs, CI) a line at every tenth of the run."""
    if not stderr.is_terminal:
        reported = -1

        def log_line(update: TrainingProgress) -> None:
            nonlocal reported
            every = max(1, update.total_steps // 10)
            due = update.step % every == 0 or update.step == update.total_steps
            if update.loss is not None and due and update.step != reported:
                reported = update.step
                stderr.print(f"step {update.step}/{update.total_steps} loss {update.loss:.4f}")

        yield log_line
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
    ) as bar:
        task = bar.add_task(f"loading the base model for {label}", total=None, loss="-")

        def update_bar(update: TrainingProgress) -> None:
            loss = "-" if update.loss is None else f"{update.loss:.4f}"
            bar.update(
                task,
                description=f"training {label}",
                total=update.total_steps,
                completed=update.step,
                loss=loss,
            )

        yield update_bar


def _interrupted(config: TrainingConfig) -> str:
    saved = sorted((config.out_dir / CHECKPOINTS).glob("checkpoint-*"))
    if not saved:
        return "interrupted before the first checkpoint; nothing to resume"
    return (
        f"interrupted; checkpoints are in {config.out_dir / CHECKPOINTS}. Run the same command "
        f"with --name {config.name} to resume."
    )


def _report(result: TrainingResult, as_json: bool) -> None:
    if result.skipped_rows:
        stderr.print(
            f"note: {result.skipped_rows} of {result.skipped_rows + result.train_rows} rows did "
            f"not fit in --max-seq-len {result.card['hyperparameters']['max_seq_len']} tokens "
            "and were not trained on",
            highlight=False,
        )
    if as_json:
        typer.echo(json.dumps(result.summary(), indent=2))
        return
    resumed = f", resumed at step {result.resumed_from}" if result.resumed_from else ""
    console.print(
        f"Trained {result.name}: {result.method.value}, {result.steps} steps on "
        f"{result.train_rows} rows{resumed}, {result.wall_s:.1f} s "
        f"({result.steps_per_s:.3f} steps/s) on {result.device} in {result.dtype}, "
        f"final loss {result.final_loss:.4f}."
        f"\n  adapter: {result.adapter_dir}"
        f"\n  registered as a candidate; judge it with "
        f"`dispatchbot evaluate model --candidate {result.name}`"
    )
