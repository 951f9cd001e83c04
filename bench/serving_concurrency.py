"""Serving: what vLLM gives at 1, 4 and 16 concurrent streamed answers, with and without a
LoRA adapter, and what prefix caching of the shared system prompt saves.

Every request streams from /v1/chat/completions with `ignore_eos` and a fixed `max_tokens`,
so every configuration generates the same number of tokens and only the serving differs.
Prompts are laid out by serving.prompts.build_prompt, as the answer path does: the product's
system prompt, then five policy chunks and a labelled evaluation question. No prompt is sent
twice to a server with its cache on, so all the cache can reuse is the shared system prompt,
as in production where questions do not repeat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from bench.report import REPO_ROOT, BenchResult, Table, latency_summary, percentile, ratio

if TYPE_CHECKING:
    from retrieval.search import SearchResult
    from store.settings import Settings

HELP = (
    "vLLM concurrency: tokens/s and per-request latency at 1, 4 and 16 concurrent requests, "
    "base model vs LoRA adapter, prefix caching on vs off"
)

POLICIES_DIR = REPO_ROOT / "examples" / "policies"
EVAL_QUESTIONS = REPO_ROOT / "examples" / "eval" / "retrieval.jsonl"
# Generous: 16 LoRA prompts arriving at once prefill one after another on CPU, about 3 s
# each on a quiet 2-core machine and several times that on a busy one, before any token.
REQUEST_TIMEOUT = httpx.Timeout(900.0, connect=5.0)
_METRIC_LINE = re.compile(r"^(vllm:[a-z_]+)(\{[^}]*\})? ([-+0-9.e]+)$", re.MULTILINE)

Messages = list[dict[str, str]]


class ServingBenchError(RuntimeError):
    """A server answered something the benchmark cannot measure; the message says what."""


@dataclass(frozen=True)
class Sizes:
    concurrency: tuple[int, ...]
    requests: int  # per cell
    max_tokens: int


FULL = Sizes(concurrency=(1, 4, 16), requests=16, max_tokens=64)
QUICK = Sizes(concurrency=(1, 2), requests=3, max_tokens=8)


@dataclass(frozen=True)
class Target:
    """One served model on one server."""

    base_url: str
    served_name: str
    label: str  # "base" or "LoRA", as the tables show it
    prefix_caching: bool | None  # None: a server of someone else's that does not say


@dataclass(frozen=True)
class Workload:
    """A warm-up prompt, then for each concurrency level the prompts of its cell."""

    warm_up: Messages
    levels: tuple[int, ...]
    prompts_per_level: tuple[list[Messages], ...]
    max_tokens: int
    temperature: float  # the product's; sampling cost barely depends on it


@dataclass(frozen=True)
class RequestTiming:
    ttft_ms: float
    latency_ms: float
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Cell:
    """`requests` answers sent `concurrency` at a time to one model on one server."""

    prefix_caching: bool | None
    model: str  # "base" or "LoRA"
    concurrency: int
    timings: list[RequestTiming]
    wall_s: float
    cache_hit_rate: float  # share of prompt tokens served from the prefix cache; NaN unknown

    @property
    def completion_tokens(self) -> int:
        return sum(timing.completion_tokens for timing in self.timings)

    @property
    def tokens_per_s(self) -> float:
        return ratio(self.completion_tokens, self.wall_s)

    @property
    def requests_per_s(self) -> float:
        return ratio(len(self.timings), self.wall_s)

    @property
    def ttft_p50_ms(self) -> float:
        return percentile([timing.ttft_ms for timing in self.timings], 50)

    def row(self) -> list[Any]:
        latency = latency_summary([timing.latency_ms for timing in self.timings])
        ttft = latency_summary([timing.ttft_ms for timing in self.timings])
        return [
            {True: "on", False: "off", None: "unknown"}[self.prefix_caching],
            self.model,
            self.concurrency,
            len(self.timings),
            self.completion_tokens,
            self.wall_s,
            self.tokens_per_s,
            self.requests_per_s,
            latency["p50"],
            latency["p95"],
            ttft["p50"],
            ttft["p95"],
            100 * self.cache_hit_rate,
        ]


COLUMNS = (
    "prefix cache",
    "model",
    "concurrent",
    "requests",
    "tokens",
    "wall s",
    "tokens/s",
    "requests/s",
    "latency p50 ms",
    "latency p95 ms",
    "TTFT p50 ms",
    "TTFT p95 ms",
    "cache hit %",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--llm-url",
        default=None,
        help="measure this running vLLM (OpenAI root, ending in /v1) instead of starting one; "
        "skips the prefix-caching comparison, which needs two starts of our own",
    )
    parser.add_argument(
        "--concurrency",
        type=parse_levels,
        default=None,
        help="comma-separated requests in flight at once; 1 is the one-at-a-time baseline "
        f"(default {joined(FULL.concurrency)}, --quick {joined(QUICK.concurrency)})",
    )
    parser.add_argument(
        "--requests",
        type=parse_positive,
        default=None,
        help=f"measured requests per cell (default {FULL.requests}, --quick {QUICK.requests})",
    )
    parser.add_argument(
        "--max-tokens",
        type=parse_positive,
        default=None,
        help="tokens every answer generates, end-of-sequence ignored "
        f"(default {FULL.max_tokens}, --quick {QUICK.max_tokens})",
    )
    parser.add_argument(
        "--no-adapter", action="store_true", help="measure the base model only, no LoRA adapter"
    )


def run(args: argparse.Namespace) -> BenchResult:
    from store.settings import Settings

    sizes = _sizes(args)
    # Each level gets prompts of its own, never seen by the server; base and adapter share
    # them (vLLM keys its prefix cache by adapter, so they cannot help each other).
    # A new draw each run: a server measured twice (--llm-url) must not find last run's
    # prompts in its cache. Within the run every configuration gets the same prompts.
    seed = time.time_ns() % 1_000_000
    prompts = build_prompts(1 + len(sizes.concurrency) * sizes.requests, seed)
    workload = Workload(
        warm_up=prompts[0],
        levels=sizes.concurrency,
        prompts_per_level=tuple(_split(prompts[1:], sizes.requests)),
        max_tokens=sizes.max_tokens,
        temperature=Settings(_env_file=None).llm_temperature,
    )
    startup_s: dict[str, float] = {}
    cells, server_facts = _measure_cache_on(args, workload, startup_s)
    if args.llm_url:
        off_cells: list[Cell] = []
        notes = [
            "--llm-url: prefix caching on vs off was not compared (it needs two server starts "
            "of our own); the server's own prefix-caching setting applies to every row."
        ]
    else:
        off_cells = _measure_cache_off(workload, startup_s)
        notes = [
            "Prefix caching off is a second server start, measured after the first: other "
            "load on the machine may differ between the two."
        ]
    notes.append(
        "cache hit % is the share of prompt tokens the server took from its prefix cache "
        "during the cell, from its /metrics; other traffic to the same server counts too."
    )

    prompt_tokens = [t.prompt_tokens for cell in cells for t in cell.timings]
    return BenchResult(
        name="serving",
        title="Model serving: vLLM concurrency, LoRA adapter, prefix caching",
        tables=_tables(cells, off_cells, args.llm_url),
        findings=_findings(cells, off_cells, workload.levels),
        config={
            "server": args.llm_url or "own vLLM per configuration (bench/local_model.py)",
            "server_startup_s": startup_s,
            "concurrency": list(workload.levels),
            "requests_per_cell": sizes.requests,
            "max_tokens": sizes.max_tokens,
            "ignore_eos": True,
            "warm_up_requests_per_configuration": 1,
            "adapter": None if args.no_adapter else "untrained PEFT LoRA, rank 8",
            "prefix_caching_compared_at": sorted({c.concurrency for c in off_cells}) or None,
            "prompts": "build_prompt(question, 5 policy chunks): an examples/eval question, "
            "its labelled chunk and 4 random chunks of other policies, shuffled",
            "prompt_seed": seed,
            "prompt_tokens": {
                "p50": latency_summary(prompt_tokens)["p50"],
                "min": min(prompt_tokens),
                "max": max(prompt_tokens),
            },
            **server_facts,
        },
        notes=notes,
    )


def _measure_cache_on(
    args: argparse.Namespace, workload: Workload, startup_s: dict[str, float]
) -> tuple[list[Cell], dict[str, Any]]:
    """Every level for the base model and the adapter, on --llm-url or a server of our own."""
    with ExitStack() as stack:  # stops the server and unloads the adapter, also on errors
        adapter_dir = None if args.no_adapter else _untrained_adapter(stack)
        if args.llm_url:
            base_url = args.llm_url.rstrip("/")
        else:
            base_url = _own_server(stack, prefix_caching=True, startup_s=startup_s)
        cache = _cache_config(base_url)
        # Ours has it on; another server says in its metrics, or leaves it unknown.
        caching = {"True": True, "False": False}.get(cache.get("enable_prefix_caching", ""))
        prefix_caching = caching if args.llm_url else True
        targets = _targets(stack, base_url, adapter_dir, prefix_caching=prefix_caching)
        facts = _shared_prefix_facts(
            base_url, targets[0].served_name, workload.prompts_per_level[0], cache
        )
        cells = [cell for target in targets for cell in _measure(target, workload)]
    return cells, facts


def _measure_cache_off(workload: Workload, startup_s: dict[str, float]) -> list[Cell]:
    """The base model's lowest and highest levels again, on a server without prefix caching.

    The ends of the range show caching best: at 1 a request's TTFT is its own prefill, at
    the top prefills queue behind each other. Levels between would add minutes, not insight.
    """
    levels = tuple(sorted({workload.levels[0], workload.levels[-1]}))
    same_prompts = Workload(
        warm_up=workload.warm_up,
        levels=levels,
        prompts_per_level=tuple(
            workload.prompts_per_level[workload.levels.index(level)] for level in levels
        ),
        max_tokens=workload.max_tokens,
        temperature=workload.temperature,
    )
    with ExitStack() as stack:
        base_url = _own_server(stack, prefix_caching=False, startup_s=startup_s)
        (base,) = _targets(stack, base_url, None, prefix_caching=False)
        return _measure(base, same_prompts)


def build_prompts(count: int, seed: int) -> list[Messages]:
    """`count` distinct chat prompts laid out as the answer path lays them out.

    Sources are the policy files chunked as ingest chunks them; for each question its
    labelled chunk and four random chunks of other policies, in random order. Real search
    returns related chunks instead, but serving cost depends on length and on what the
    prompts share, and a random mix shares only the system prompt.
    """
    from retrieval.evaluate import is_hit, read_labelled_set
    from serving.prompts import build_prompt
    from store.settings import Settings

    settings = Settings(_env_file=None)
    chunks = _policy_chunks(settings)
    questions = read_labelled_set(EVAL_QUESTIONS)
    rng = random.Random(seed)  # noqa: S311 - sampling, not security
    rng.shuffle(questions)
    prompts = []
    for index in range(count):
        question = questions[index % len(questions)]
        labelled = next(chunk for chunk in chunks if is_hit(chunk, question))
        others = [chunk for chunk in chunks if chunk.doc_id != question.doc_id]
        sources = [labelled, *rng.sample(others, settings.search_k - 1)]
        rng.shuffle(sources)
        prompt = build_prompt(
            question.question,
            sources,
            context_tokens=settings.llm_context_tokens,
            reserved_for_answer=settings.llm_max_tokens,
        )
        prompts.append(prompt.messages)
    return prompts


def _policy_chunks(settings: Settings) -> list[SearchResult]:
    """examples/policies cut by the ingest chunker, as the search results they would be."""
    from retrieval.chunking import ChunkingOptions, chunk_document
    from retrieval.embedding import load_embedder
    from retrieval.loaders import collect_files, load_document
    from retrieval.search import SearchResult
    from retrieval.versions import local_today

    # The chunker counts with the embedding model's tokenizer, as ingest does.
    count_tokens = load_embedder(settings.embedding_model).count_tokens
    options = ChunkingOptions(settings.chunk_max_tokens, settings.chunk_overlap_tokens)
    results = []
    for path in collect_files([POLICIES_DIR]):
        document = load_document(path)
        declared = document.declared
        for chunk in chunk_document(document, options, count_tokens):
            results.append(
                SearchResult(
                    chunk_id=f"{document.doc_id}:{chunk.index}",
                    text=chunk.text,
                    score=0.0,  # not searched: the prompt does not show scores
                    relevance=0.0,
                    doc_id=document.doc_id,
                    title=document.title,
                    section=chunk.section,
                    version=declared.version or 1,
                    effective_from=declared.effective_from or local_today(),  # as ingest
                    effective_to=declared.effective_to,
                    audience=document.audience,
                    source=document.source,
                    tags=declared.tags,
                    url=declared.url,
                )
            )
    return results


def _measure(target: Target, workload: Workload) -> list[Cell]:
    """One warm-up request (loads the adapter, caches the system prompt), then each level."""
    return asyncio.run(_measure_levels(target, workload))


async def _measure_levels(target: Target, workload: Workload) -> list[Cell]:
    cells = []
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT) as client:
        await stream_one(client, target, workload.warm_up, workload)
        for level, prompts in zip(workload.levels, workload.prompts_per_level, strict=True):
            before = await _cache_counters(client, target.base_url)
            timings, wall_s = await _run_cell(client, target, prompts, level, workload)
            after = await _cache_counters(client, target.base_url)
            hit_rate = ratio(after[0] - before[0], after[1] - before[1])
            cells.append(
                Cell(target.prefix_caching, target.label, level, timings, wall_s, hit_rate)
            )
    return cells


async def _run_cell(
    client: httpx.AsyncClient,
    target: Target,
    prompts: list[Messages],
    concurrency: int,
    workload: Workload,
) -> tuple[list[RequestTiming], float]:
    """A closed loop: `concurrency` workers each send the next prompt when theirs is done."""
    pending = iter(prompts)
    timings: list[RequestTiming] = []

    async def worker() -> None:
        for messages in pending:  # one shared iterator: each prompt goes to one worker
            timings.append(await stream_one(client, target, messages, workload))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return timings, time.perf_counter() - started


async def stream_one(
    client: httpx.AsyncClient, target: Target, messages: Messages, workload: Workload
) -> RequestTiming:
    base_url, model = target.base_url, target.served_name
    body = {
        "model": model,
        "messages": messages,
        "max_tokens": workload.max_tokens,
        "temperature": workload.temperature,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,  # vLLM's extra: every answer is exactly max_tokens long
    }
    started = time.perf_counter()
    first_token_at: float | None = None
    usage: dict[str, int] | None = None
    async with client.stream("POST", f"{base_url}/chat/completions", json=body) as response:
        if response.status_code != httpx.codes.OK:
            detail = (await response.aread()).decode(errors="replace")[:300]
            raise ServingBenchError(
                f"{base_url} refused a chat request for model {model!r}: "
                f"HTTP {response.status_code} {detail}"
            )
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line.removeprefix("data: "))
            if first_token_at is None and any(
                choice.get("delta", {}).get("content") for choice in chunk.get("choices", [])
            ):
                first_token_at = time.perf_counter()
            usage = chunk.get("usage") or usage
    finished = time.perf_counter()
    if usage is None or first_token_at is None:
        raise ServingBenchError(
            f"{base_url} streamed no text or no usage for model {model!r}; the benchmark "
            "needs an OpenAI-compatible server that honours stream_options.include_usage"
        )
    return RequestTiming(
        ttft_ms=(first_token_at - started) * 1000,
        latency_ms=(finished - started) * 1000,
        prompt_tokens=usage["prompt_tokens"],
        completion_tokens=usage["completion_tokens"],
    )


async def _cache_counters(client: httpx.AsyncClient, base_url: str) -> tuple[float, float]:
    """Prefix-cache hit and query token counters from /metrics; NaN where not exported."""
    metrics = await _metrics(client, base_url)
    return (
        metrics.get("vllm:prefix_cache_hits_total", math.nan),
        metrics.get("vllm:prefix_cache_queries_total", math.nan),
    )


async def _metrics(client: httpx.AsyncClient, base_url: str) -> dict[str, float]:
    """Prometheus counters summed over their labels (one engine here)."""
    try:
        response = await client.get(f"{_server_root(base_url)}/metrics")
        response.raise_for_status()
    except httpx.HTTPError:
        return {}
    totals: dict[str, float] = {}
    for name, _labels, value in _METRIC_LINE.findall(response.text):
        totals[name] = totals.get(name, 0.0) + float(value)
    return totals


def _cache_config(base_url: str) -> dict[str, str]:
    """The labels of vLLM's `cache_config_info` metric (block size, prefix caching); {} if none."""
    try:
        response = httpx.get(f"{_server_root(base_url)}/metrics", timeout=10)
        response.raise_for_status()
    except httpx.HTTPError:
        return {}
    found = re.search(r"^vllm:cache_config_info\{([^}]*)\}", response.text, re.MULTILINE)
    return dict(re.findall(r'(\w+)="([^"]*)"', found.group(1))) if found else {}


def _shared_prefix_facts(
    base_url: str, model: str, prompts: list[Messages], cache: dict[str, str]
) -> dict[str, int]:
    """How many prompt tokens all requests share, and how many of those the cache can reuse.

    vLLM caches whole KV blocks only (128 tokens on CPU), so a shared prefix is reused down
    to a multiple of the block size.
    """
    try:
        token_lists = [
            httpx.post(
                f"{_server_root(base_url)}/tokenize",
                json={"model": model, "messages": messages},
                timeout=30,
            ).json()["tokens"]
            for messages in prompts
        ]
    except (httpx.HTTPError, KeyError, ValueError):
        return {}
    shared = 0
    for position in zip(*token_lists, strict=False):
        if len(set(position)) > 1:
            break
        shared += 1
    if not cache.get("block_size", "").isdigit():
        return {"shared_prefix_tokens": shared}
    block_size = int(cache["block_size"])
    return {
        "shared_prefix_tokens": shared,
        "kv_block_size": block_size,
        "cacheable_shared_prefix_tokens": shared // block_size * block_size,
    }


def _own_server(stack: ExitStack, *, prefix_caching: bool, startup_s: dict[str, float]) -> str:
    """Start a vLLM of our own, stopped when `stack` closes; its OpenAI root."""
    from bench.local_model import local_vllm

    model = stack.enter_context(local_vllm(prefix_caching=prefix_caching))
    startup_s[f"prefix caching {'on' if prefix_caching else 'off'}"] = model.startup_s
    return model.base_url


def _targets(
    stack: ExitStack, base_url: str, adapter_dir: Path | None, *, prefix_caching: bool | None
) -> list[Target]:
    """The base model as served, and the adapter loaded for this run (unloaded on close)."""
    from serving.vllm_admin import AdapterError, list_served_models, load_adapter

    base = next((m.id for m in list_served_models(base_url) if m.parent is None), None)
    if base is None:
        raise ServingBenchError(f"{base_url}/models lists no base model")
    targets = [Target(base_url, base, "base", prefix_caching)]
    if adapter_dir is not None:
        # A new name each run: a server keeps an adapter's name (and cache) until unloaded.
        name = f"bench-lora-{uuid.uuid4().hex[:8]}"
        try:
            load_adapter(base_url, name, adapter_dir)
        except AdapterError as error:
            raise ServingBenchError(
                f"{error} Or measure the base model only: --no-adapter."
            ) from error
        stack.enter_context(_unloaded_afterwards(base_url, name))
        targets.append(Target(base_url, name, "LoRA", prefix_caching))
    return targets


@contextmanager
def _unloaded_afterwards(base_url: str, name: str) -> Iterator[None]:
    """Leave a server we did not start serving what it served before."""
    from serving.vllm_admin import unload_adapter

    try:
        yield
    finally:
        unload_adapter(base_url, name)


def _untrained_adapter(stack: ExitStack) -> Path:
    from bench.local_model import untrained_adapter

    folder = Path(tempfile.mkdtemp(prefix="dispatchbot-bench-lora-"))
    stack.callback(shutil.rmtree, folder, ignore_errors=True)
    return untrained_adapter(folder)


def _tables(cells: list[Cell], off_cells: list[Cell], llm_url: str | None) -> list[Table]:
    where = f"server {llm_url}" if llm_url else "prefix caching on"
    tables = [
        Table(
            f"Concurrency, base model vs LoRA adapter ({where})", COLUMNS, [c.row() for c in cells]
        )
    ]
    if off_cells:
        levels = {cell.concurrency for cell in off_cells}
        on = [c for c in cells if c.model == "base" and c.concurrency in levels]
        rows = [cell.row() for pair in zip(on, off_cells, strict=True) for cell in pair]
        tables.append(Table("Prefix caching on vs off (base model, same prompts)", COLUMNS, rows))
    return tables


def _findings(cells: list[Cell], off_cells: list[Cell], levels: Sequence[int]) -> dict[str, float]:
    """Same-run ratios: each level against one at a time, LoRA against base, cache on/off."""
    cell = {(c.model, c.concurrency): c for c in cells}
    models = [model for model in ("base", "LoRA") if (model, levels[0]) in cell]
    findings: dict[str, float] = {}
    for model in models:
        for level in levels[1:]:
            findings[f"{model}: tokens/s at {level} vs {levels[0]} concurrent"] = ratio(
                cell[model, level].tokens_per_s, cell[model, levels[0]].tokens_per_s
            )
    if "LoRA" in models:
        for level in levels:
            findings[f"LoRA vs base tokens/s at {level} concurrent"] = ratio(
                cell["LoRA", level].tokens_per_s, cell["base", level].tokens_per_s
            )
    for off in off_cells:
        on = cell["base", off.concurrency]
        findings[f"prefix cache on vs off TTFT p50 at {off.concurrency} concurrent"] = ratio(
            on.ttft_p50_ms, off.ttft_p50_ms
        )
        findings[f"prefix cache on vs off tokens/s at {off.concurrency} concurrent"] = ratio(
            on.tokens_per_s, off.tokens_per_s
        )
    return findings


def _sizes(args: argparse.Namespace) -> Sizes:
    """Explicit options win; otherwise --quick's tiny sizes or the full defaults."""
    defaults = QUICK if args.quick else FULL
    return Sizes(
        concurrency=args.concurrency or defaults.concurrency,
        requests=args.requests or defaults.requests,
        max_tokens=args.max_tokens or defaults.max_tokens,
    )


def _split(prompts: list[Messages], size: int) -> list[list[Messages]]:
    return [prompts[start : start + size] for start in range(0, len(prompts), size)]


def _server_root(base_url: str) -> str:
    """vLLM serves /metrics and /tokenize beside /v1, not under it."""
    return base_url.rstrip("/").removesuffix("/v1")


def parse_levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,4,16, got {text!r}") from None
    if not levels or levels[0] < 1:
        raise argparse.ArgumentTypeError(f"concurrency levels must be 1 or more, got {text!r}")
    return levels


def parse_positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of 1 or more, got {text!r}")
    return value


def joined(levels: Sequence[int]) -> str:
    return ",".join(str(level) for level in levels)
