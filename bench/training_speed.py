"""Learning loop: LoRA training speed, the same script on a CPU and on a GPU machine.

The data is the product's: examples/training/seed.jsonl exported as `dispatchbot ingest
examples/policies` + `dispatchbot dataset export --seed` export it (each seed question's
sources retrieved from the policies and put into the prompt the bot would build). The export
runs in a child process, so the peak memory measured here is the training's alone. Then
`train_adapter` with the defaults of `dispatchbot train` (SFT, LoRA r=8, batch 4, sequences
up to LLM_CONTEXT_TOKENS, a checkpoint every 50 steps) for --steps optimizer steps.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import resource
import shutil
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

from bench.local_model import MODELS_DIR
from bench.report import REPO_ROOT, BenchResult, Table, percentile, ratio
from serving.base_weights import converted_model_dir
from serving.training import (
    Device,
    Method,
    TrainingConfig,
    TrainingProgress,
    train_adapter,
)
from serving.training_rows import SftRow, read_rows
from store.settings import Settings

HELP = (
    "Learning loop: LoRA training steps/s, s/step, tokens/s and wall time of `dispatchbot "
    "train` defaults on the exported seed set (--device cuda on a GPU machine)"
)
SEED = REPO_ROOT / "examples" / "training" / "seed.jsonl"
POLICIES = REPO_ROOT / "examples" / "policies"
STEPS, QUICK_STEPS = 100, 2
QUICK_SEED_ROWS = 12  # a few more than two steps of batch 4 use, as some are held out
GIB = 1024**3
COLUMNS = (
    "device",
    "dtype",
    "steps",
    "batch",
    "train rows",
    "max seq len",
    "export s",
    "load+save s",
    "train s",
    "steps/s",
    "s/step",
    "first step s",
    "later steps p50 s",
    "tokens/s (est.)",
    "peak RSS GiB",
    "peak GPU GiB",
    "loss first",
    "loss final",
    "adapter MiB",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainingConfig(data_dir=Path(), base_model="", out_dir=Path(), name="")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"optimizer steps ({STEPS}; {QUICK_STEPS} with --quick)",
    )
    parser.add_argument(
        "--device",
        type=Device,
        choices=list(Device),
        default=Device.AUTO,
        help="auto (cuda when torch sees a GPU), cpu or cuda, as `dispatchbot train --device`",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help=f"rows per optimizer step ({defaults.batch_size})",
    )
    parser.add_argument(
        "--max-seq-len",
        type=int,
        default=None,
        help="tokens of prompt and answer trained on (default LLM_CONTEXT_TOKENS, as "
        "`dispatchbot train`; an SFT row whose answer starts past it is skipped)",
    )
    parser.add_argument(
        "--seed-rows",
        type=int,
        default=None,
        help=f"export only the first N rows of the seed file (default all; {QUICK_SEED_ROWS} "
        "with --quick)",
    )
    parser.add_argument(
        "--policies",
        type=Path,
        nargs="+",
        default=[POLICIES],
        help="policy files or folders the seed's sources are retrieved from "
        f"(default {POLICIES.relative_to(REPO_ROOT)})",
    )


@dataclass(frozen=True)
class ExportOutcome:
    manifest: dict[str, Any]
    seconds: float  # the child process's whole life: imports, embedder, ingest, export
    peak_rss_bytes: int


def run(args: argparse.Namespace) -> BenchResult:
    # Sizes given on the command line win over --quick's.
    steps = args.steps or (QUICK_STEPS if args.quick else STEPS)
    seed_rows = args.seed_rows or (QUICK_SEED_ROWS if args.quick else None)
    if steps < 1 or args.batch_size < 1:
        raise ValueError("--steps and --batch-size must be 1 or more")
    base = converted_model_dir(MODELS_DIR)
    if not (base / "config.json").is_file():
        raise FileNotFoundError(
            f"the base model is not in {base}; run `make model-setup` (or "
            "`dispatchbot model setup`) first"
        )
    max_seq_len = args.max_seq_len or _settings(Path()).llm_context_tokens
    work = Path(tempfile.mkdtemp(prefix="dispatchbot-bench-training-"))
    try:
        export = export_in_child(work / "dataset", seed_rows, args.policies)
        config = TrainingConfig(
            data_dir=work / "dataset",
            base_model=str(base),
            out_dir=work / "adapter",
            name="bench-training",
            method=Method.SFT,
            max_steps=steps,
            batch_size=args.batch_size,
            max_seq_len=max_seq_len,
            device=args.device,
        )
        return measure_training(config, export, seed_rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure_training(
    config: TrainingConfig, export: ExportOutcome, seed_rows: int | None
) -> BenchResult:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    # The progress callback is called as training begins and after every step: the first
    # step (kernels chosen, memory allocated) shows apart from the steady pace.
    marks: list[float] = []

    def mark(_update: TrainingProgress) -> None:
        marks.append(time.perf_counter())

    result = train_adapter(config, mark)
    step_s = [later - earlier for earlier, later in pairwise(marks)]
    peak_rss = _peak_rss_bytes()
    peak_gpu = torch.cuda.max_memory_allocated() if result.device == "cuda" else None
    row_tokens = train_row_tokens(config.data_dir, config.base_model, config.max_seq_len)
    mean_tokens = sum(row_tokens) / len(row_tokens)
    tokens_per_s = ratio(result.steps * config.batch_size * mean_tokens, result.train_s)
    adapter_bytes = (config.out_dir / "adapter_model.safetensors").stat().st_size
    load_and_save_s = result.wall_s - result.train_s
    first_loss = result.loss_curve[0][1] if result.loss_curve else math.nan
    notes = [
        "tokens/s is estimated: steps × batch × the mean tokens of a trained row (chat "
        "template applied, cut at max seq len, as TRL tokenizes), over the training loop's "
        "time; padding is not counted",
        "load+save s: loading the base model, tokenizing the rows, building the trainer and "
        "saving the adapter and its card; train s: the training loop alone, checkpoints "
        f"every {config.save_every} steps included, as `dispatchbot train` does",
    ]
    if len(row_tokens) != result.train_rows:
        notes.append(
            f"the token estimate counts {len(row_tokens)} rows that fit, the trainer kept "
            f"{result.train_rows}"
        )
    if result.skipped_rows:
        notes.append(
            f"{result.skipped_rows} rows did not fit in {config.max_seq_len} tokens and were "
            "not trained on"
        )
    row = [
        result.device,
        result.dtype,
        result.steps,
        config.batch_size,
        result.train_rows,
        config.max_seq_len,
        export.seconds,
        load_and_save_s,
        result.train_s,
        result.steps_per_s,
        ratio(result.train_s, result.steps),
        step_s[0] if step_s else math.nan,
        percentile(step_s[1:], 50),
        tokens_per_s,
        peak_rss / GIB,
        math.nan if peak_gpu is None else peak_gpu / GIB,
        first_loss,
        result.final_loss,
        adapter_bytes / 2**20,
    ]
    return BenchResult(
        name="training",
        title="Learning loop: LoRA training speed (SFT on the exported seed set)",
        tables=[Table("`train_adapter` with `dispatchbot train` defaults", COLUMNS, [row])],
        findings={
            "device": result.device,
            "steps": result.steps,
            "steps_per_s": result.steps_per_s,
            "s_per_step": ratio(result.train_s, result.steps),
            "first_step_s": step_s[0] if step_s else math.nan,
            "later_steps_p50_s": percentile(step_s[1:], 50),
            "train_loop_s": result.train_s,
            "train_wall_s": result.wall_s,
            "export_s": export.seconds,
            "train_tokens_per_s_estimated": tokens_per_s,
            "mean_tokens_per_row": mean_tokens,
            "peak_rss_gib": peak_rss / GIB,
            "export_peak_rss_gib": export.peak_rss_bytes / GIB,
            "peak_gpu_gib": None if peak_gpu is None else peak_gpu / GIB,
            "final_loss": result.final_loss,
            "adapter_mib": adapter_bytes / 2**20,
        },
        config={
            "method": result.method.value,
            "base_model": Path(config.base_model).name,
            "seed_rows_exported": seed_rows or "all",
            "dataset_counts": export.manifest["counts"],
            "dataset_hash": export.manifest["content_hash"],
            **config.hyperparameters(),
        },
        notes=notes,
    )


# The dataset, as the product exports it


def export_in_child(
    out_dir: Path, seed_rows: int | None, policies: Sequence[Path]
) -> ExportOutcome:
    """`export_seed_dataset` in a fresh process: its embedder and Qdrant never add to the
    memory of the process that trains."""
    started = time.perf_counter()
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as child:
        manifest, peak_rss = child.submit(
            export_seed_dataset, out_dir, seed_rows, list(policies)
        ).result()
    return ExportOutcome(manifest, time.perf_counter() - started, peak_rss)


def export_seed_dataset(
    out_dir: Path, seed_rows: int | None, policies: Sequence[Path]
) -> tuple[dict[str, Any], int]:
    """What `dispatchbot ingest POLICIES` and `dispatchbot dataset export --seed` do, with
    the same settings, against an empty store and an in-memory Qdrant.

    Returns the export's manifest and this process's peak resident memory in bytes.
    """
    from qdrant_client import QdrantClient

    from retrieval.chunking import ChunkingOptions
    from retrieval.embedding import load_embedder_for
    from retrieval.ingest import ingest_files
    from retrieval.loaders import collect_files
    from retrieval.search import PolicySearch
    from retrieval.server_store import ServerStore
    from serving.dataset_export import export_dataset, read_seed_file
    from store import schema
    from store.database import Database

    settings = _settings(out_dir.parent / "data")
    database = Database(settings.database_url)
    store = ServerStore(QdrantClient(":memory:"), settings.qdrant_collection, "memory")
    try:
        schema.upgrade(database)
        embedder = load_embedder_for(settings)
        ingest_files(
            collect_files(policies),
            store=store,
            embedder=embedder,
            chunking=ChunkingOptions(settings.chunk_max_tokens, settings.chunk_overlap_tokens),
            batch_size=settings.embedding_batch_size,
        )
        report = export_dataset(
            database,
            out_dir,
            seed_rows=read_seed_file(SEED)[:seed_rows],
            search=PolicySearch(store, embedder, settings.search_prefetch_limit),
            search_k=settings.search_k,
            context_tokens=settings.llm_context_tokens,
            reserved_for_answer=settings.llm_max_tokens,
        )
    finally:
        store.close()
        database.dispose()
    return report.manifest().model_dump(mode="json"), _peak_rss_bytes()


def train_row_tokens(data_dir: Path, base: str, max_seq_len: int) -> list[int]:
    """Tokens of each SFT train row as TRL sees it: the chat template applied to prompt and
    answer, cut at `max_seq_len`; a row whose answer starts past the cut is left out, as the
    trainer leaves it out."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    lengths = []
    for sft_row in read_rows(data_dir / "sft.train.jsonl", SftRow):
        row = sft_row.for_trainer()
        prompt = tokenizer.apply_chat_template(
            row["prompt"], tokenize=True, add_generation_prompt=True
        )["input_ids"]
        whole = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=True)[
            "input_ids"
        ]
        if len(prompt) < min(len(whole), max_seq_len):
            lengths.append(min(len(whole), max_seq_len))
    return lengths


def _settings(data_dir: Path) -> Settings:
    # As bench/local_model.py: a developer's .env must not change what is measured.
    return Settings(_env_file=None, data_dir=data_dir, models_dir=MODELS_DIR)


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux
