"""`dispatchbot ask`: the whole answering pipeline from the terminal, without Slack."""

from __future__ import annotations

import getpass
import json
import time
import uuid
from typing import Any

import typer
from rich.console import Console

from bot.commands.common import command_services, fail_with, settings_of
from bot.commands.model import ensure_local_model
from serving.assistant import AssistantAnswer, ThreadKey, quote_json
from serving.llm_client import ModelError

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
    with command_services(settings) as services:
        ensure_local_model(settings)
        thread = ThreadKey(CLI_TEAM, channel, f"{time.time():.6f}-{uuid.uuid4().hex[:6]}")
        stream = services.assistant.stream_answer(
            question, thread=thread, user_id=getpass.getuser()
        )
        try:
            for chunk in stream:
                if not as_json:
                    console.print(chunk, end="", highlight=False, markup=False)
        except ModelError as error:
            fail_with(error, " (the question was saved)")
        answer = stream.result

    if as_json:
        typer.echo(json.dumps(answer_json(answer), indent=2))
        return
    if answer.shows_policy_words_only:
        # What streamed passed its checks sentence by sentence; the answer as a whole did not.
        console.print(f"\n\n{answer.text}", end="", highlight=False, markup=False)
    if answer.credit is not None:
        console.print(
            f"\n\nAnswered by {answer.credit.author} on {answer.credit.day}, verified.",
            highlight=False,
            markup=False,
        )
    _print_quote(answer)
    _print_sources(answer)


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
        "quote": None if answer.quote is None else quote_json(answer.quote),
        "verification": answer.verification.to_json(),
        "verified_answer": None
        if answer.credit is None
        else {
            "id": answer.credit.verified_id,
            "author": answer.credit.author,
            "on": answer.credit.on.isoformat(),
        },
    }


def _citation_json(result: dict[str, Any]) -> dict[str, Any]:
    return {field: result[field] for field in CITATION_FIELDS}


def _print_quote(answer: AssistantAnswer) -> None:
    if answer.quote is None:
        return
    console.print("\n")
    for line in answer.quote.markdown.splitlines():
        console.print(f"  │ {line}", highlight=False, markup=False)
    source = answer.quote.source
    cited = "the closest policy found: " if answer.declined else ""
    console.print(
        f"  — {cited}{source.title} › {source.section.split(' > ')[-1]} (v{source.version})",
        highlight=False,
        markup=False,
        style="dim",
    )


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
