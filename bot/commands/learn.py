"""`dispatchbot learn`: export, train, judge and promote in one command that a scheduler runs.

Idempotent: the export's content hash is compared with the dataset of the newest trained
version, so a run on unchanged data trains nothing. A run that stopped after training (a
model server that was down, say) leaves a candidate that the next run judges instead of
training again. A lock in the store keeps a second replica from training at the same time.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from slack_sdk.errors import SlackApiError
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.app import slack_client
from bot.blocks import SlackMessage
from bot.commands.common import (
    EXIT_UNAVAILABLE,
    command_services,
    fail,
    fail_with,
    settings_of,
    stderr,
)
from bot.commands.common import command_database as open_database
from bot.commands.evaluate import DEFAULT_ANSWER_SET, evaluate_candidate
from bot.commands.train import default_base, train_and_register
from bot.learn_blocks import LearnSummary, MeasureRow, learn_summary_message
from bot.services import Services
from serving.answer_quality import (
    LabelledQuestion,
    read_labelled_questions,
    spread,
)
from serving.dataset_export import (
    ExportReport,
    SeedRow,
    export_dataset,
    read_seed_file,
)
from serving.evaluation import (
    BASE,
    ModelJudgement,
    VersionReport,
    heldout_items,
)
from serving.llm_client import ModelError
from serving.model_gate import GateResult
from serving.promotion import PromotionError, active_versions, apply_promotion
from serving.training import Device, Method, TrainingConfig, TrainingResult
from serving.vllm_admin import list_served_models
from store.database import Database
from store.locks import HeldLock, LockHeld, LockLost, hold_lock
from store.models import ModelVersion, ModelVersionStatus
from store.settings import Settings

logger = logging.getLogger(__name__)
console = Console(soft_wrap=True)

EXIT_GATE_NOT_PASSED = 4  # trained and judged; the version answering stays
EXIT_LOCKED = 5  # another learn holds the lock: nothing was done
LOCK_NAME = "learn"
# Renewed every third of it while held, so a run may last hours; a run that died blocks the
# next one for this long at most.
LOCK_TTL = timedelta(minutes=10)
DATASETS = "datasets"  # under the data dir: one export per run that trained


class NextStep(StrEnum):
    """What a run does with a candidate trained on the same data by an earlier run."""

    JUDGE = "judge"  # never judged: the run that trained it stopped
    PROMOTE = "promote"  # passed against the version still answering, but was not promoted


@dataclass(frozen=True)
class Verdict:
    """The gate and both versions' figures, fresh or as stored on the candidate."""

    candidate: VersionReport
    incumbent: VersionReport
    gate: GateResult

    @classmethod
    def of(cls, judgement: ModelJudgement) -> Verdict:
        return cls(judgement.candidate, judgement.incumbent, judgement.gate)

    @classmethod
    def stored_on(cls, metrics: dict[str, Any] | None) -> Verdict | None:
        """None when the version was never judged, or judged by a gate of another shape."""
        stored = (metrics or {}).get("evaluation") or {}
        gate = GateResult.stored_on(metrics)
        try:
            candidate = VersionReport.model_validate(stored.get("candidate"))
            incumbent = VersionReport.model_validate(stored.get("incumbent"))
        except ValidationError:
            return None
        return None if gate is None else cls(candidate, incumbent, gate)


class Outcome(StrEnum):
    PROMOTED = "promoted"
    GATE_NOT_PASSED = "gate_not_passed"
    NOTHING_NEW = "nothing_new"  # the newest trained version learned from this very data
    NOTHING_TO_LEARN = "nothing_to_learn"  # no rows for the method yet
    WOULD_TRAIN = "would_train"  # --dry-run
    WOULD_JUDGE = "would_judge"  # --dry-run: a candidate trained on this data awaits judging
    WOULD_PROMOTE = "would_promote"  # --dry-run: one passed but was not promoted


@dataclass(frozen=True)
class LearnReport:
    outcome: Outcome
    export: ExportReport
    method: Method
    note: str
    candidate: str | None = None
    training: TrainingResult | None = None
    verdict: Verdict | None = None
    promoted: str | None = None

    @property
    def exit_status(self) -> int:
        return EXIT_GATE_NOT_PASSED if self.outcome is Outcome.GATE_NOT_PASSED else 0

    def to_json(self) -> dict[str, Any]:
        verdict = self.verdict
        return {
            "outcome": self.outcome.value,
            "exit_status": self.exit_status,
            "note": self.note,
            "dataset": {
                "path": str(self.export.out_dir) if self.export.out_dir.exists() else None,
                "content_hash": self.export.content_hash,
                "counts": self.export.counts,
            },
            "method": self.method.value,
            "candidate": self.candidate,
            "training": self.training.summary() if self.training else None,
            "against": verdict.incumbent.name if verdict else None,
            "gate": (
                {"passed": verdict.gate.passed, "reasons": verdict.gate.reasons}
                if verdict
                else None
            ),
            "measures": [
                {"measure": m.label, "before": m.before, "after": m.after}
                for m in (measures(verdict) if verdict else [])
            ],
            "promoted": self.promoted,
        }


@dataclass(frozen=True)
class LearnOptions:
    method: Method
    base: str
    max_steps: int | None
    seed_rows: list[SeedRow] | None
    questions: list[LabelledQuestion]
    question_count: int | None


def learn(
    ctx: typer.Context,
    seed: Annotated[
        Path | None,
        typer.Option(
            "--seed",
            help="Seed rows to train on besides the store's (like examples/training/seed.jsonl); "
            "give the same file on every run, or the dataset changes. Default: none.",
        ),
    ] = None,
    method: Annotated[
        Method,
        typer.Option("--method", case_sensitive=False, help="sft, kto or dpo (see `train`)."),
    ] = Method.SFT,
    max_steps: Annotated[
        int | None,
        typer.Option("--max-steps", min=1, help="Stop training after this many steps."),
    ] = None,
    base: Annotated[
        str | None,
        typer.Option(
            "--base",
            help="Base model to train on (a folder or a Hugging Face name): the one the model "
            "server serves. Default: the SmolLM2 of `dispatchbot model setup`.",
        ),
    ] = None,
    questions: Annotated[
        Path,
        typer.Option("--questions", help="Labelled questions the candidate is judged on."),
    ] = DEFAULT_ANSWER_SET,
    question_count: Annotated[
        int | None,
        typer.Option(
            "--question-count",
            min=1,
            help="Judge on N questions, each kind in turn (and at most N held-out rows).",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Export and say what a run would do; change nothing."),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object with the outcome.")
    ] = False,
) -> None:
    """Export the training data; if it changed since the newest trained version, train an
    adapter, judge it against the version answering now and promote it if it passes the gate.

    One run at a time across replicas (a lock in the store): safe on a schedule.
    The summary goes to Slack, to LEARN_REPORT_CHANNEL (else ESCALATION_CHANNEL).
    The model server must be running: learn never starts one.

    Exit status:
      0  promoted, or nothing new to learn from
      2  bad input or configuration
      3  the database, Qdrant or the model server is unavailable; run again
         later (a candidate already trained is judged then, not trained again)
      4  trained and judged: the gate was not passed, nothing changed
      5  another learn holds the lock: nothing was done
    """
    settings = settings_of(ctx)
    options = _options(settings, seed, method, max_steps, base, questions, question_count)
    name = f"dispatchbot-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    with open_database(settings) as database:
        if dry_run:
            report = _dry_run(settings, database, options)
        else:
            try:
                with hold_lock(database, LOCK_NAME, _holder(), LOCK_TTL) as lock:
                    report = _learn(settings, database, lock, options, name)
            except LockHeld as error:
                fail(
                    f"another `dispatchbot learn` is running: {error}. Nothing was done.",
                    EXIT_LOCKED,
                )
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        _print_report(report)
    if report.verdict is not None:
        post_summary(settings, learn_summary_message(_summary(report)))
    raise typer.Exit(report.exit_status)


def _options(
    settings: Settings,
    seed: Path | None,
    method: Method,
    max_steps: int | None,
    base: str | None,
    questions: Path,
    question_count: int | None,
) -> LearnOptions:
    """Everything that can be wrong with the input, found before any work is done."""
    seed_rows = read_seed_file(seed) if seed is not None else None
    labelled = spread(read_labelled_questions(questions), question_count)
    if settings.vllm_max_lora_rank < TrainingConfig.rank:
        fail(
            f"VLLM_MAX_LORA_RANK ({settings.vllm_max_lora_rank}) is below the rank learn "
            f"trains ({TrainingConfig.rank}); raise it"
        )
    return LearnOptions(
        method=method,
        base=base or default_base(settings),
        max_steps=max_steps,
        seed_rows=seed_rows,
        questions=labelled,
        question_count=question_count,
    )


def _learn(
    settings: Settings, database: Database, lock: HeldLock, options: LearnOptions, name: str
) -> LearnReport:
    assert settings.models_dir is not None, "Settings derives models_dir from the data dir"
    out_dir = (settings.data_dir / DATASETS / name).absolute()
    training: TrainingResult | None = None

    def remove_unused_export() -> None:
        if training is None:  # a trained adapter's card points at its export: kept then
            shutil.rmtree(out_dir, ignore_errors=True)

    with ExitStack() as stack:
        stack.callback(remove_unused_export)
        services = _LazyServices(settings, stack)
        export = _export(settings, database, services, out_dir, options.seed_rows)
        waiting = _candidate_for(database, export.content_hash)
        if waiting is None:
            done = _nothing_to_do(database, export, options.method)
            if done is not None:
                return done
            services.get()  # Qdrant must answer before hours of training, as must the model
            _require_model_servers(settings)
            config = TrainingConfig(
                data_dir=out_dir,
                base_model=options.base,
                out_dir=(settings.models_dir / "adapters" / name).absolute(),
                name=name,
                method=options.method,
                max_steps=options.max_steps,
                max_seq_len=settings.llm_context_tokens,
                device=Device.AUTO,
            )
            training = train_and_register(settings, config)
            candidate, step = name, NextStep.JUDGE
        else:
            candidate, step = waiting
            doing = "judging it" if step is NextStep.JUDGE else "it passed the gate: promoting it"
            stderr.print(f"{candidate} was trained on this data by an earlier run; {doing}.")
        if step is NextStep.JUDGE:
            verdict = Verdict.of(_judge(services.get(), settings, candidate, options, out_dir))
        else:
            verdict = _stored_verdict(database, candidate)
        _still_held(lock)
        promoted = _promote(settings, database, candidate) if verdict.gate.passed else None
    outcome = Outcome.PROMOTED if promoted else Outcome.GATE_NOT_PASSED
    note = (
        f"{candidate} passed the gate against {verdict.incumbent.name} and answers now"
        if promoted
        else f"{candidate} did not pass the gate; {verdict.incumbent.name} still answers"
    )
    return LearnReport(
        outcome=outcome,
        export=export,
        method=options.method,
        note=note,
        candidate=candidate,
        training=training,
        verdict=verdict,
        promoted=promoted,
    )


def _dry_run(settings: Settings, database: Database, options: LearnOptions) -> LearnReport:
    with ExitStack() as stack:
        services = _LazyServices(settings, stack)
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="learn-")))
        export = _export(settings, database, services, scratch / "export", options.seed_rows)
        waiting = _candidate_for(database, export.content_hash)
        if waiting is not None:
            candidate, step = waiting
            return LearnReport(
                Outcome.WOULD_JUDGE if step is NextStep.JUDGE else Outcome.WOULD_PROMOTE,
                export,
                options.method,
                f"would {step} {candidate}, trained on this data by an earlier run",
                candidate=candidate,
            )
        done = _nothing_to_do(database, export, options.method)
        if done is not None:
            return done
        rows = export.counts[options.method.value]["train"]
        return LearnReport(
            Outcome.WOULD_TRAIN,
            export,
            options.method,
            f"would train on {rows} {options.method.value.upper()} rows, judge and promote",
        )


def _judge(
    services: Services, settings: Settings, candidate: str, options: LearnOptions, data: Path
) -> ModelJudgement:
    """The candidate against the version answering now; the verdict is stored on it."""
    try:
        heldout = heldout_items(data)[: options.question_count]
        return evaluate_candidate(
            services, settings, candidate, None, options.questions, heldout=heldout
        )
    except (PromotionError, ModelError) as error:
        fail_with(error, f"; run learn again to judge {candidate}")


def _promote(settings: Settings, database: Database, candidate: str) -> str:
    try:
        # As `dispatchbot promote` does: merged into a vLLM of its own on the local default.
        apply_promotion(
            settings, database, candidate, report=lambda step: stderr.print(f"• {step}")
        )
    except PromotionError as error:
        fail_with(error, f"; run learn again to promote {candidate}")
    return candidate


def _export(
    settings: Settings,
    database: Database,
    services: _LazyServices,
    out_dir: Path,
    seed_rows: list[SeedRow] | None,
) -> ExportReport:
    if not seed_rows:
        return export_dataset(database, out_dir)
    return export_dataset(
        database,
        out_dir,
        seed_rows=seed_rows,
        search=services.get().search,  # seed prompts hold the sources retrieval finds today
        search_k=settings.search_k,
        prompt_sources=settings.answer_prompt_sources,
        context_tokens=settings.llm_context_tokens,
        reserved_for_answer=settings.llm_max_tokens,
    )


def _candidate_for(database: Database, content_hash: str) -> tuple[str, NextStep] | None:
    """The newest trained version, when it learned from this data and its run stopped before
    the end: never judged, or passed against the version still answering, not promoted."""
    with database.transaction() as session:
        newest = _newest_trained(session)
        if newest is None or newest.dataset_hash != content_hash:
            return None
        if newest.status is not ModelVersionStatus.CANDIDATE or newest.canary_share:
            return None
        verdict = Verdict.stored_on(newest.metrics)
        if verdict is None:
            return newest.name, NextStep.JUDGE
        if not verdict.gate.passed:
            return None
        answering = active_versions(session).promoted or BASE
        # Judged against another version than the one answering now: judge again.
        step = NextStep.PROMOTE if verdict.incumbent.name == answering else NextStep.JUDGE
        return newest.name, step


def _stored_verdict(database: Database, name: str) -> Verdict:
    with database.transaction() as session:
        version = session.scalars(select(ModelVersion).where(ModelVersion.name == name)).one()
        verdict = Verdict.stored_on(version.metrics)
    assert verdict is not None, "_candidate_for promotes only a version with a stored verdict"
    return verdict


def _nothing_to_do(database: Database, export: ExportReport, method: Method) -> LearnReport | None:
    with database.transaction() as session:
        newest = _newest_trained(session)
        if newest is not None and newest.dataset_hash == export.content_hash:
            return LearnReport(
                Outcome.NOTHING_NEW,
                export,
                method,
                f"nothing new: {newest.name} ({newest.status.value}) was trained on this very "
                f"data (hash {export.content_hash[:12]}); nothing trained",
            )
    if export.counts[method.value]["train"] == 0:
        return LearnReport(
            Outcome.NOTHING_TO_LEARN,
            export,
            method,
            f"nothing to learn from: no {method.value.upper()} rows in the store yet "
            "(👍 answers, people's answers to escalations, or a --seed file); nothing trained",
        )
    return None


def _newest_trained(session: Session) -> ModelVersion | None:
    return session.scalars(
        select(ModelVersion)
        .where(ModelVersion.dataset_hash.is_not(None))
        .order_by(ModelVersion.created_at.desc(), ModelVersion.id.desc())
        .limit(1)
    ).first()


def _require_model_servers(settings: Settings) -> None:
    """Promotion loads the adapter into every endpoint: each must answer before training."""
    for endpoint in settings.llm_endpoints:
        try:
            list_served_models(endpoint, api_key=settings.llm_api_key.get_secret_value())
        except httpx.HTTPError as error:
            fail(
                f"cannot reach the model server at {endpoint} ({type(error).__name__}); start it "
                "(`dispatchbot model serve`) or check LLM_BASE_URL. Nothing was trained.",
                EXIT_UNAVAILABLE,
            )


def _still_held(lock: HeldLock) -> None:
    try:
        lock.check()
    except LockLost as error:
        fail(f"{error}; nothing was promoted. Run learn again.", EXIT_LOCKED)


def _holder() -> str:
    """Who holds the lock, as the second run reports it: the host (a pod's name) and pid."""
    return f"{socket.gethostname()} pid {os.getpid()}"


class _LazyServices:
    """Qdrant, the embedder and the rest, opened the first time a step needs them."""

    def __init__(self, settings: Settings, stack: ExitStack) -> None:
        self._settings = settings
        self._stack = stack
        self._services: Services | None = None

    def get(self) -> Services:
        if self._services is None:
            self._services = self._stack.enter_context(command_services(self._settings))
        return self._services


# The report


def measures(verdict: Verdict) -> list[MeasureRow]:
    """The before/after table: the gate's measures first, then what is reported beside."""
    before, after = verdict.incumbent, verdict.candidate
    b, a = before.scores, after.scores
    rows: list[tuple[str, float | None, float | None, str]] = [
        ("expected facts present (covered)", b.facts_present, a.facts_present, "{:.0%}"),
        ("answers with unsupported claims", b.unsupported, a.unsupported, "{}"),
        ("answers repeating a sentence", b.repeating, a.repeating, "{}"),
        ("uncovered questions refused", b.uncovered_refused, a.uncovered_refused, "{:.0%}"),
        ("covered questions refused", b.covered_refused, a.covered_refused, "{:.0%}"),
        ("citation validity", before.citation_validity, after.citation_validity, "{:.0%}"),
        ("median seconds to the final text", b.median_seconds, a.median_seconds, "{:.1f}"),
        (f"ROUGE-L vs {after.heldout} held-out answers", before.rouge_l, after.rouge_l, "{:.3f}"),
    ]
    return [
        MeasureRow(label, *("-" if v is None else form.format(v) for v in (old, new)))
        for label, old, new, form in rows
    ]


def _summary(report: LearnReport) -> LearnSummary:
    verdict = report.verdict
    assert verdict is not None, "only a run that judged has a summary"
    assert report.candidate is not None
    counts = report.export.counts[report.method.value]
    training = report.training
    return LearnSummary(
        candidate=report.candidate,
        incumbent=verdict.incumbent.name,
        passed=verdict.gate.passed,
        promoted=report.promoted is not None,
        reasons=verdict.gate.reasons,
        measures=measures(verdict),
        dataset_hash=report.export.content_hash,
        train_rows=counts["train"],
        heldout_rows=counts["heldout"],
        training=(
            f"{training.method.value} on {training.base_model}: {training.steps} steps in "
            f"{training.wall_s:.0f} s on {training.device}, final loss {training.final_loss:.3f}"
            if training
            else None
        ),
    )


def _print_report(report: LearnReport) -> None:
    if report.verdict is not None:
        table = Table("measure", "before", "after", title="before/after")
        for row in measures(report.verdict):
            table.add_row(row.label, row.before, row.after)
        table.caption = f"before: {report.verdict.incumbent.name} · after: {report.candidate}"
        console.print(table)
        for reason in report.verdict.gate.reasons:
            console.print(f"  - {reason}", highlight=False, markup=False)
    console.print(report.note[0].upper() + report.note[1:] + ".", highlight=False, markup=False)


def post_summary(settings: Settings, message: SlackMessage) -> bool:
    """Post to LEARN_REPORT_CHANNEL, else ESCALATION_CHANNEL; True when Slack took it.

    The store is the record of the run: a Slack failure is logged, never raised.
    """
    channel = settings.learn_report_channel or settings.escalation_channel
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else ""
    if not channel or not token:
        logger.info("learn summary not posted: no LEARN_REPORT_CHANNEL or SLACK_BOT_TOKEN")
        return False
    try:
        slack_client(settings).chat_postMessage(
            channel=channel, text=message.text, blocks=message.blocks
        )
    except SlackApiError as error:
        logger.warning(
            "learn summary not posted to %s: Slack said %s", channel, error.response.get("error")
        )
        return False
    except Exception as error:  # whatever else fails (the network), the run's outcome stands
        logger.warning("learn summary not posted to %s: %s", channel, type(error).__name__)
        return False
    return True
