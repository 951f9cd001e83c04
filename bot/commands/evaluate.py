"""`dispatchbot evaluate ...`: measure retrieval on a labelled set (the model comes later)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bot.commands.common import settings_of
from bot.commands.retrieval import policy_store
from retrieval.collection import require_collection
from retrieval.embedding import load_embedder
from retrieval.evaluate import ModeScores, evaluate_retrieval, read_labelled_set
from retrieval.search import PolicySearch

app = typer.Typer(
    help="Measure retrieval and answer quality on labelled sets.", no_args_is_help=True
)
console = Console()

DEFAULT_RETRIEVAL_SET = Path("examples/eval/retrieval.jsonl")


@app.command("retrieval")
def evaluate_retrieval_command(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Option(
            "--file",
            help="JSON Lines of {question, doc_id, section}; section is the answering heading.",
        ),
    ] = DEFAULT_RETRIEVAL_SET,
    k: int = typer.Option(10, "-k", min=5, help="Results searched per question (MRR@k)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON, with the missed questions."),
) -> None:
    """Recall@1, recall@5 and MRR of hybrid, dense and sparse search on the ingested policies."""
    settings = settings_of(ctx)
    with policy_store(settings) as client:
        questions = read_labelled_set(file)
        embedder = load_embedder(settings.embedding_model)
        require_collection(client, settings.qdrant_collection, embedder.dimension, embedder.name)
        searcher = PolicySearch(
            client, settings.qdrant_collection, embedder, settings.search_prefetch_limit
        )
        scores = evaluate_retrieval(searcher, questions, k=k)
    if as_json:
        typer.echo(json.dumps(_as_json(scores, file, k), indent=2))
        return
    table = Table("mode", "recall@1", "recall@5", f"MRR@{k}")
    for score in scores:
        table.add_row(
            score.mode.value,
            f"{score.recall_at_1:.3f}",
            f"{score.recall_at_5:.3f}",
            f"{score.mrr:.3f}",
        )
    console.print(table)
    console.print(
        f"{len(questions)} questions from {file}, collection {settings.qdrant_collection!r}.",
        highlight=False,
        markup=False,
    )


def _as_json(scores: list[ModeScores], file: Path, k: int) -> dict[str, object]:
    return {
        "file": str(file),
        "questions": scores[0].questions,
        "k": k,
        "modes": {
            score.mode.value: {
                "recall@1": score.recall_at_1,
                "recall@5": score.recall_at_5,
                "mrr": score.mrr,
                "misses": [asdict(miss) for miss in score.misses],
            }
            for score in scores
        },
    }
