"""`dispatchbot ask`: the whole answering pipeline from the terminal, without Slack."""

from __future__ import annotations

import getpass
import json
import time
import uuid
from typing import Any

import httpx
import typer
from rich.console import Console

from bot.commands.common import EXIT_UNAVAILABLE, fail, settings_of, stderr
from bot.commands.retrieval import policy_store
from retrieval.collection import require_collection
from retrieval.embedding import load_embedder
from retrieval.search import PolicySearch
from serving.assistant import Assistant, AssistantAnswer, AssistantSettings, ThreadKey
from serving.base_weights import WeightsError
from serving.llm_client import ModelClient, ModelError
from serving.local_vllm import local_server_config, serve_local_vllm
from serving.vllm_admin import list_served_models
from serving.vllm_env import VllmEnvError
from serving.vllm_server import ServerError
from store.schema import SchemaOutOfDate, open_current_database
from store.settings import Settings

console = Console(soft_wrap=True)

CLI_TEAM = "cli"
# The subset of a search result's stable JSON that `ask --json` shows per citation.
CITATION_FIELDS = ("doc_id", "title", "section", "version", "effective_from", "score", "source")


def ask(
    ctx: typer.Context,
    question: str = typer.Argument(..., help="The question, as a dispatcher would type it."),
    channel: str = typer.Option(
        "cli", "--channel", help="Slack channel id to answer as (it picks the adapter route)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object at the end."),
) -> None:
    """Answer one question from the policy in force, with its sources.

    Starts the local vLLM first when LLM_BASE_URL points at it and it is not running.
    """
    settings = settings_of(ctx)
    try:
        database = open_current_database(settings.database_url)
    except SchemaOutOfDate as error:
        fail(str(error), EXIT_UNAVAILABLE)
    try:
        _ensure_local_model(settings)
        with policy_store(settings) as client:
            embedder = load_embedder(settings.embedding_model)
            require_collection(
                client, settings.qdrant_collection, embedder.dimension, embedder.name
            )
            assistant = Assistant(
                search=PolicySearch(
                    client, settings.qdrant_collection, embedder, settings.search_prefetch_limit
                ),
                model=ModelClient.from_settings(settings),
                database=database,
                settings=assistant_settings(settings),
            )
            thread = ThreadKey(CLI_TEAM, channel, f"{time.time():.6f}-{uuid.uuid4().hex[:6]}")
            stream = assistant.stream_answer(question, thread=thread, user_id=getpass.getuser())
            for chunk in stream:
                if not as_json:
                    console.print(chunk, end="", highlight=False, markup=False)
            answer = stream.result
    except ModelError as error:
        fail(f"{error} (the question was saved)", EXIT_UNAVAILABLE)
    finally:
        database.dispose()

    if as_json:
        typer.echo(json.dumps(answer_json(answer), indent=2))
    else:
        _print_sources(answer)


def assistant_settings(settings: Settings) -> AssistantSettings:
    return AssistantSettings(
        k=settings.search_k,
        min_relevance=settings.answer_min_relevance,
        context_tokens=settings.llm_context_tokens,
        reserved_for_answer=settings.llm_max_tokens,
        history_turns=settings.answer_history_turns,
    )


def answer_json(answer: AssistantAnswer) -> dict[str, Any]:
    """The stable `--json` shape of `ask`."""
    return {
        "answer": answer.text,
        "citations": [_citation_json(citation.to_json()) for citation in answer.citations],
        "needs_human": answer.needs_human,
        "confidence": answer.confidence,
        "answer_id": answer.answer_id,
        "model": answer.model,
        "adapter": answer.adapter,
        "endpoint": answer.endpoint,
        "latency_ms": answer.latency_ms,
        "ttft_ms": answer.ttft_ms,
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
    }


def _citation_json(result: dict[str, Any]) -> dict[str, Any]:
    return {field: result[field] for field in CITATION_FIELDS}


def _ensure_local_model(settings: Settings) -> None:
    """Start the local vLLM when the client points at it and nothing answers there."""
    local_url = local_server_config(settings).base_url
    if settings.llm_base_url.rstrip("/") != local_url:
        return  # a server someone else runs: its availability is the fallback list's business
    try:
        list_served_models(local_url)
        return
    except httpx.HTTPError:
        stderr.print(
            "The local model is not running; starting it (about 30 s, longer the first time)."
        )
    try:
        serve_local_vllm(settings, report=lambda step: stderr.print(f"• {step}"))
    except (ServerError, VllmEnvError, WeightsError) as error:
        fail(f"cannot start the local model: {error}", EXIT_UNAVAILABLE)


def _print_sources(answer: AssistantAnswer) -> None:
    console.print()
    if answer.needs_human:
        console.print("[yellow]Flagged for a person.[/]")
    if answer.citations:
        console.print("\n[bold]Sources[/]")
        for number, citation in enumerate(answer.citations, 1):
            console.print(
                f"  {number}. {citation.title} › {citation.section.split(' > ')[-1]} "
                f"(v{citation.version}, effective since {citation.effective_from})",
                highlight=False,
            )
    served = answer.adapter or answer.model
    console.print(
        f"[dim]answer {answer.answer_id} · {served} · {answer.latency_ms} ms[/]", highlight=False
    )
