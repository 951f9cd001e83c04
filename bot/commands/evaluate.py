"""`dispatchbot evaluate ...`: measure retrieval, and model versions side by side."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from sqlalchemy.orm import Session

from bot.commands.common import command_services, settings_of, stderr
from bot.commands.model import ensure_local_model
from bot.commands.retrieval import policy_search, policy_store
from bot.services import Services, assistant_settings
from retrieval.evaluate import ModeScores, evaluate_retrieval, read_labelled_set
from serving.answer_quality import (
    AnswerQualityReport,
    LabelledQuestion,
    evaluate_answers,
    prompt_support,
    read_labelled_questions,
    spread,
)
from serving.assistant import Assistant, AssistantAnswer
from serving.claims import SupportIndex
from serving.evaluation import (
    BASE,
    AnswerLog,
    EvaluationError,
    EvaluationProgress,
    HeldoutItem,
    ModelJudgement,
    VersionReport,
    answer_heldout,
    heldout_items,
    pinned_client,
    version_report,
)
from serving.llm_client import ModelClient
from serving.model_gate import Measure, Requirement, judge
from serving.promotion import PromotedAdapter, active_versions, make_servable
from store.database import Database
from store.models import Answer, ModelVersion
from store.repository import find_model_version
from store.schema import upgrade
from store.settings import Settings
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
    with policy_store(settings) as store:
        questions = read_labelled_set(file)
        searcher = policy_search(settings, store)
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
    questions = spread(read_labelled_questions(file), count)
    with command_services(settings) as services, scratch_database() as scratch:
        ensure_local_model(settings)
        promoted = PromotedAdapter(services.database)
        assistant = Assistant(
            search=services.search,
            model=ModelClient.from_settings(settings, promoted, promoted.served_at),
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

            result = evaluate_answers(
                assistant, questions, support_of=stored_support(scratch), progress=advance
            )
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


@app.command("model")
def evaluate_model_command(
    ctx: typer.Context,
    candidate: str = typer.Option(..., "--candidate", help="The model version to judge."),
    against: str | None = typer.Option(
        None, "--against", help="The version to beat; default: the promoted one, else the base."
    ),
    file: Annotated[
        Path,
        typer.Option("--file", help="JSON Lines of labelled questions (as `evaluate answers`)."),
    ] = DEFAULT_ANSWER_SET,
    count: int | None = typer.Option(
        None,
        "-n",
        min=1,
        help="Only N questions, each kind in turn (and at most N held-out rows).",
    ),
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="A `dataset export` folder: ROUGE-L against its held-out approved answers "
            "is reported beside the gate.",
        ),
    ] = None,
    as_json: bool = typer.Option(False, "--json", help="Print the figures, gate and answers."),
) -> None:
    """Answer the labelled questions with two versions and judge the candidate's own text.

    Both answer every question greedily through the whole answering path (into scratch
    databases). The gate passes when the candidate's text holds the expected facts for more
    questions beyond chance (an exact paired test at 5%) and is no worse, beyond chance, on
    unsupported claims, repetition and answering uncovered questions. The verdict is stored
    on the candidate for `dispatchbot promote`. Exit status 0 when it passes, 1 when not.
    """
    settings = settings_of(ctx)
    questions = spread(read_labelled_questions(file), count)
    heldout = heldout_items(data)[:count] if data is not None else []
    with command_services(settings) as services:
        ensure_local_model(settings)
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            console=stderr, transient=True,
        ) as progress:  # fmt: skip
            task = progress.add_task("answering", total=2 * (len(questions) + len(heldout)))

            def advance(version: str, _: str) -> None:
                progress.update(task, description=f"answering with {version}", advance=1)

            judgement = evaluate_candidate(
                services, settings, candidate, against, questions, advance, heldout=heldout
            )
    if as_json:
        typer.echo(json.dumps(judgement.to_json() | {"file": str(file)}, indent=2))
    else:
        print_judgement(judgement)
    raise typer.Exit(0 if judgement.gate.passed else 1)


def evaluate_candidate(
    services: Services,
    settings: Settings,
    candidate: str,
    against: str | None,
    questions: Sequence[LabelledQuestion],
    progress: EvaluationProgress | None = None,
    *,
    heldout: Sequence[HeldoutItem] = (),
) -> ModelJudgement:
    """Judge `candidate` against `against` (None: the promoted version, else the base model)
    on `questions`, and store the judgement on the candidate's version. Prints nothing.

    Each version answers on a scratch database with a client that asks only that version,
    greedily. `heldout` rows add ROUGE-L to the report. Raises EvaluationError (unknown
    version, nothing to judge), PromotionError (an adapter cannot be loaded) and ModelError
    (no model answered, or the server answered with another version).
    """
    if not questions:
        raise EvaluationError("no labelled questions to judge on")
    endpoints = settings.llm_endpoints
    with services.database.transaction() as session:
        incumbent = against or active_versions(session).promoted or BASE
        if incumbent == candidate:
            raise EvaluationError(
                f"{candidate} is the version to beat already; name another with --against"
            )
        names = [candidate] if incumbent == BASE else [candidate, incumbent]
        for name in names:
            make_servable(
                _known_version(session, name),
                endpoints,
                api_key=settings.llm_api_key.get_secret_value(),
            )
    (ours, our_answers), (theirs, their_answers) = (
        _answer_as(services, settings, name, questions, heldout, progress)
        for name in (candidate, incumbent)
    )
    judgement = ModelJudgement(
        candidate=ours,
        incumbent=theirs,
        gate=judge(our_answers.answers, their_answers.answers),
        candidate_answers=our_answers,
        incumbent_answers=their_answers,
        evaluated_at=utcnow(),
    )
    with services.database.transaction() as session:
        version = _known_version(session, candidate)
        version.metrics = {**(version.metrics or {}), "evaluation": judgement.stored()}
    return judgement


def _answer_as(
    services: Services,
    settings: Settings,
    name: str,
    questions: Sequence[LabelledQuestion],
    heldout: Sequence[HeldoutItem],
    progress: EvaluationProgress | None,
) -> tuple[VersionReport, AnswerQualityReport]:
    adapter = None if name == BASE else name
    client = pinned_client(settings, adapter)

    def step(item: str) -> None:
        if progress is not None:
            progress(name, item)

    # A scratch database each: the two versions' threads must not see each other's turns.
    with scratch_database() as scratch:
        assistant = Assistant(
            search=services.search,
            model=client,
            database=scratch,
            settings=assistant_settings(settings),
        )
        log = AnswerLog(scratch)
        answers = evaluate_answers(
            assistant, questions, support_of=log, progress=lambda question: step(question.id)
        )
    log.require(adapter)
    references = answer_heldout(client, adapter, heldout, step)
    return version_report(name, answers, log, references), answers


def _known_version(session: Session, name: str) -> ModelVersion:
    version = find_model_version(session, name)
    if version is None:
        raise EvaluationError(
            f"no model version named {name!r}; `dispatchbot model report` lists them"
        )
    return version


def judgement_table(judgement: ModelJudgement) -> Table:
    """Both versions' figures on their own text, side by side."""
    ours, theirs = judgement.candidate, judgement.incumbent
    a, b = ours.scores, theirs.scores
    table = Table(
        "model's own text",
        ours.name,
        theirs.name,
        title=f"{a.questions} questions ({a.covered} covered, {a.uncovered} not)",
    )
    rows: list[tuple[str, float | None, float | None, str]] = [
        ("expected facts present (covered)", a.facts_present, b.facts_present, "{:.0%}"),
        ("answers with unsupported claims", a.unsupported, b.unsupported, "{}"),
        ("answers repeating a sentence", a.repeating, b.repeating, "{}"),
        ("uncovered questions refused", a.uncovered_refused, b.uncovered_refused, "{:.0%}"),
        ("covered questions refused", a.covered_refused, b.covered_refused, "{:.0%}"),
        ("citation validity", ours.citation_validity, theirs.citation_validity, "{:.0%}"),
        ("cites a source (covered)", a.citing, b.citing, "{:.0%}"),
        ("to the point", a.to_the_point, b.to_the_point, "{:.0%}"),
        ("words per answer", a.words, b.words, "{:.0f}"),
        ("median seconds to the final text", a.median_seconds, b.median_seconds, "{:.1f}"),
        ("p95 seconds to the final text", a.p95_seconds, b.p95_seconds, "{:.1f}"),
        (
            f"ROUGE-L vs {ours.heldout} held-out answers" if ours.heldout else "ROUGE-L (--data)",
            ours.rouge_l,
            theirs.rouge_l,
            "{:.3f}",
        ),
    ]
    for label, mine, other, form in rows:
        table.add_row(label, *("-" if v is None else form.format(v) for v in (mine, other)))
    return table


_MEASURES = {
    Measure.FACTS_PRESENT: "expected facts present",
    Measure.UNSUPPORTED: "unsupported claims",
    Measure.REPEATING: "repeated sentences",
    Measure.UNCOVERED_ANSWERED: "uncovered questions answered",
}
_VERDICTS = {
    (Requirement.BETTER, True): "better",
    (Requirement.BETTER, False): "not better beyond chance",
    (Requirement.NO_WORSE, True): "no worse",
    (Requirement.NO_WORSE, False): "worse beyond chance",
}


def print_judgement(judgement: ModelJudgement) -> None:
    """The side-by-side table, each paired test, and the verdict with its reasons."""
    console.print(judgement_table(judgement))
    gate = judgement.gate
    for c in gate.comparisons:
        console.print(
            f"  {_MEASURES[c.measure]}: better in {c.candidate_better}, worse in "
            f"{c.candidate_worse} of {c.pairs} questions, one-sided p = {c.p_value:.3f}: "
            f"{_VERDICTS[c.requirement, c.passed]}",
            highlight=False,
            markup=False,
        )
    if gate.passed:
        console.print(
            f"[green]Gate passed:[/] promote it with "
            f"`dispatchbot promote {judgement.candidate.name}`.",
            highlight=False,
        )
    else:
        console.print("[red]Gate not passed:[/]", highlight=False)
        for reason in gate.reasons:
            console.print(f"  - {reason}", highlight=False, markup=False)
