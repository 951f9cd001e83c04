"""`dispatchbot evaluate ...`: measure retrieval, and model versions side by side."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from sqlalchemy.orm import Session

from bot.commands.common import EXIT_UNAVAILABLE, command_services, fail, settings_of, stderr
from bot.commands.model import ensure_local_model
from bot.commands.retrieval import policy_store
from bot.services import Services, assistant_settings
from retrieval.collection import require_collection
from retrieval.embedding import load_embedder_for
from retrieval.evaluate import ModeScores, evaluate_retrieval, read_labelled_set
from retrieval.search import PolicySearch
from serving.answer_quality import (
    AnswerQualityReport,
    LabelledQuestion,
    LabelledSetError,
    evaluate_answers,
    prompt_support,
    read_labelled_questions,
    spread,
)
from serving.assistant import Assistant, AssistantAnswer
from serving.claims import SupportIndex
from serving.evaluation import (
    EvalItem,
    Gate,
    ItemKind,
    ModelScores,
    evaluate_model,
    gate,
    heldout_items,
    question_items,
    scores_json,
)
from serving.llm_client import ModelClient, ModelError
from serving.promotion import PromotedAdapter, PromotionError, active_versions, make_servable
from store.database import Database
from store.models import Answer, ModelVersion
from store.repository import find_model_version
from store.schema import upgrade
from store.types import utcnow

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
        embedder = load_embedder_for(settings)
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


DEFAULT_ANSWER_SET = Path("examples/eval/answers.jsonl")


@app.command("answers")
def evaluate_answers_command(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Option(
            "--file",
            help="JSON Lines of labelled questions: id, kind, question, thread, doc_id, "
            "section and facts (see examples/eval/answers.jsonl).",
        ),
    ] = DEFAULT_ANSWER_SET,
    count: int | None = typer.Option(
        None, "-n", min=1, help="Answer only N questions, taking each kind in turn."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON, with every answer's scores."),
) -> None:
    """Answer a labelled set through the whole answering path and score what people see.

    Facts present, unsupported claims, repetition, refusals and time, for the answer as
    shown and for the model's own text before verification. The conversations go to a
    scratch database, never to the store. Starts the local vLLM first when needed.
    """
    settings = settings_of(ctx)
    try:
        questions = spread(read_labelled_questions(file), count)
    except LabelledSetError as error:
        fail(str(error))
    with command_services(settings) as services, scratch_database() as scratch:
        ensure_local_model(settings)
        assistant = Assistant(
            search=services.search,
            model=ModelClient.from_settings(settings, PromotedAdapter(services.database)),
            database=scratch,
            settings=assistant_settings(settings),
        )
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            console=stderr, transient=True,
        ) as progress:  # fmt: skip
            task = progress.add_task("answering", total=len(questions))

            def advance(_: LabelledQuestion) -> None:
                progress.advance(task)

            try:
                result = evaluate_answers(
                    assistant, questions, support_of=stored_support(scratch), progress=advance
                )
            except ModelError as error:
                fail(str(error), EXIT_UNAVAILABLE)
    if as_json:
        typer.echo(json.dumps(result.to_json() | {"file": str(file)}, indent=2))
        return
    console.print(answer_quality_table(result))
    console.print(
        f"{result.questions} questions from {file} ({result.covered} covered, "
        f"{result.uncovered} not); verification: "
        + ", ".join(f"{outcome} {n}" for outcome, n in result.verification.items()),
        highlight=False,
        markup=False,
    )


def answer_quality_table(result: AnswerQualityReport) -> Table:
    """The figures for what people see beside the model's own text."""
    served = result.adapter or result.model
    table = Table("measure", "shown to people", "model's own text", title=f"answers by {served}")
    shown, generated = result.shown, result.generated
    rows = [
        (
            "expected facts present (covered)",
            shown.facts_present,
            generated.facts_present,
            "{:.0%}",
        ),
        ("expected facts found (all facts)", shown.facts_recall, generated.facts_recall, "{:.0%}"),
        ("answers with unsupported claims", shown.unsupported, generated.unsupported, "{}"),
        ("answers repeating a sentence", shown.repeating, generated.repeating, "{}"),
        ("covered questions refused", shown.covered_refused, generated.covered_refused, "{:.0%}"),
        (
            "uncovered questions answered",
            shown.uncovered_answered,
            generated.uncovered_answered,
            "{}",
        ),
    ]
    for label, ours, theirs, form in rows:
        table.add_row(label, form.format(ours), form.format(theirs))
    table.add_row("policy's words alone hold the facts", f"{result.quote_facts_present:.0%}", "")
    table.add_row(
        "seconds to the final text",
        f"median {result.median_seconds:.1f}, p95 {result.p95_seconds:.1f}",
        "",
    )
    return table


def stored_support(database: Database) -> Callable[[AssistantAnswer], SupportIndex]:
    """What an answer's claims may come from, read from the prompt stored with it."""

    def support(answer: AssistantAnswer) -> SupportIndex:
        with database.transaction() as session:
            return prompt_support(session.get_one(Answer, answer.answer_id).prompt)

    return support


@contextmanager
def scratch_database() -> Iterator[Database]:
    """A migrated SQLite database in a temporary folder, gone afterwards."""
    with tempfile.TemporaryDirectory(prefix="dispatchbot-eval-") as folder:
        database = Database(f"sqlite:///{folder}/evaluation.db")
        try:
            upgrade(database)
            yield database
        finally:
            database.dispose()


DEFAULT_UNANSWERABLE_SET = Path("examples/eval/unanswerable.jsonl")
BASE = "base"


@app.command("model")
def evaluate_model_command(
    ctx: typer.Context,
    candidate: str = typer.Option(..., "--candidate", help="The model version to judge."),
    against: str | None = typer.Option(
        None, "--against", help="The version to beat; default: the promoted one, else the base."
    ),
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", help="A `dataset export` folder: its held-out rows are the reference."
        ),
    ] = None,
    answerable: Annotated[
        Path, typer.Option("--answerable", help="JSON Lines of questions the policies cover.")
    ] = DEFAULT_RETRIEVAL_SET,
    unanswerable: Annotated[
        Path,
        typer.Option("--unanswerable", help="JSON Lines of questions they do not cover."),
    ] = DEFAULT_UNANSWERABLE_SET,
    limit: int = typer.Option(
        12, "--limit", min=1, help="Prompts taken from each set (held-out, covered, not covered)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the scores and the gate as JSON."),
) -> None:
    """Answer the same prompts with two versions side by side; store the scores and the gate.

    Passes the gate only if not worse on citation validity and refusals, and closer to the
    reference answers (ROUGE-L). Exit status 0 when it passes, 1 when it does not.
    """
    settings = settings_of(ctx)
    endpoints = [settings.llm_base_url, *settings.llm_fallback_urls]
    with command_services(settings) as services:
        with services.database.transaction() as session:
            contender = _version_or_fail(session, candidate)
            baseline_name = against or active_versions(session).promoted or BASE
            baseline = None if baseline_name == BASE else _version_or_fail(session, baseline_name)
            try:
                for version in filter(None, (contender, baseline)):
                    make_servable(
                        version, endpoints, api_key=settings.llm_api_key.get_secret_value()
                    )
            except PromotionError as error:
                fail(str(error), EXIT_UNAVAILABLE)
        question_sets = {ItemKind.ANSWERABLE: answerable, ItemKind.UNANSWERABLE: unanswerable}
        items = _evaluation_items(services, data, question_sets, limit)
        client = ModelClient.from_settings(settings)
        try:
            scores = [
                evaluate_model(client, name, items)
                for name in (candidate, None if baseline_name == BASE else baseline_name)
            ]
        except ModelError as error:
            fail(str(error), EXIT_UNAVAILABLE)
        verdict = gate(scores[0], scores[1])
        evaluation = {
            "candidate": scores_json(scores[0]),
            "against": scores_json(scores[1]) | {"model": baseline_name},
            "items": {kind.value: sum(i.kind is kind for i in items) for kind in ItemKind},
            "gate": {"passed": verdict.passed, "reasons": verdict.reasons},
            "evaluated_at": utcnow().isoformat(),
        }
        with services.database.transaction() as session:
            version = _version_or_fail(session, candidate)
            version.metrics = {**(version.metrics or {}), "evaluation": evaluation}
    if as_json:
        typer.echo(json.dumps(evaluation, indent=2))
    else:
        _print_model_scores(scores[0], scores[1], baseline_name, verdict)
    raise typer.Exit(0 if verdict.passed else 1)


def _version_or_fail(session: Session, name: str) -> ModelVersion:
    version = find_model_version(session, name)
    if version is None:
        fail(f"no model version named {name!r}; `dispatchbot model report` lists them")
    return version


def _evaluation_items(
    services: Services, data: Path | None, question_sets: dict[ItemKind, Path], limit: int
) -> list[EvalItem]:
    settings = services.settings
    items: list[EvalItem] = []
    if data is not None:
        try:
            items += heldout_items(data)[:limit]
        except (FileNotFoundError, ValueError, KeyError) as error:
            fail(f"cannot read the held-out rows of {data}: {error}")
    for kind, path in question_sets.items():
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
            asked = [json.loads(line)["question"] for line in lines if line.strip()]
        except (OSError, ValueError, KeyError) as error:
            fail(f"cannot read questions from {path} ({error}); pass --{kind.value} FILE")
        items += question_items(
            asked[:limit],
            kind,
            lambda question: services.search.search(question, k=settings.search_k),
            context_tokens=settings.llm_context_tokens,
            reserved_for_answer=settings.llm_max_tokens,
        )
    return items


def _print_model_scores(
    candidate: ModelScores, against: ModelScores, against_name: str, verdict: Gate
) -> None:
    table = Table("measure", candidate.model, against_name, title=f"{candidate.items} prompts")
    rows: list[tuple[str, float | None, float | None, str]] = [
        ("citation validity", candidate.citation_validity, against.citation_validity, "{:.0%}"),
        ("cites a source", candidate.citing, against.citing, "{:.0%}"),
        ("refuses when not covered", candidate.refusal, against.refusal, "{:.0%}"),
        ("ROUGE-L vs reference", candidate.rouge_l, against.rouge_l, "{:.3f}"),
        ("to the point", candidate.to_the_point, against.to_the_point, "{:.0%}"),
        ("words per answer", candidate.words, against.words, "{:.0f}"),
        ("median latency ms", candidate.median_latency_ms, against.median_latency_ms, "{:.0f}"),
        ("p95 latency ms", candidate.p95_latency_ms, against.p95_latency_ms, "{:.0f}"),
    ]
    for label, ours, theirs, form in rows:
        table.add_row(label, *("-" if v is None else form.format(v) for v in (ours, theirs)))
    console.print(table)
    if verdict.passed:
        console.print(
            f"[green]Gate passed:[/] promote it with `dispatchbot promote {candidate.model}`."
        )
    else:
        console.print("[red]Gate not passed:[/] " + "; ".join(verdict.reasons), highlight=False)
