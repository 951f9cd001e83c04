"""A question people already answered, asked again: event to final message in Slack.

`dispatchbot run --mode http` on the embedded defaults, the mock Slack Web API and a real
vLLM (which a reused answer never calls). Before the bot starts, one resolved question is
saved as a verified answer, as the resolve modal saves it: once as it was asked, and once
with three more ways of asking it (one line each in the modal). Then the question itself
and its ten paraphrases from examples/eval/paraphrases.jsonl are asked one at a time, each
in a new thread, and each answer's final message is timed from the event, with whether it
came from the verified answer (no model call) or from the model.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.report import REPO_ROOT, BenchResult, Table, latency_summary

if TYPE_CHECKING:
    from bench.slack_harness import RunningBot

HELP = "a question people answered, asked again with paraphrases: event to final message"
PARAPHRASES = REPO_ROOT / "examples" / "eval" / "paraphrases.jsonl"
SAVED_QUESTION = "who approves a 30,000 lb load?"
PERSON_ANSWER = "The shift lead on duty approves it in the TMS; the desk is on ext. 4411."
AUTHOR = "U0SHIFTLEAD"
EXTRA_PHRASINGS = 3
BUDGET_MS = 300.0
COLUMNS = ["saved as", "asked", "from the verified answer", "p50 ms", "p95 ms", "max ms"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--llm-url", default=None, help="a running vLLM's /v1 URL (default: start one)"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per answer")


@dataclass(frozen=True)
class Asked:
    question: str
    from_verified: bool
    ms: float


def run(args: argparse.Namespace) -> BenchResult:
    from bench.slack_harness import model_url

    paraphrases = [
        row["question"]
        for row in map(json.loads, PARAPHRASES.read_text("utf-8").splitlines())
        if row["saved"] == SAVED_QUESTION and row["match"]
    ]
    runs: dict[str, list[Asked]] = {}
    with model_url(args.llm_url) as llm_url:
        runs["as asked"] = _ask(llm_url, [SAVED_QUESTION], [SAVED_QUESTION, *paraphrases], args)
        given = [SAVED_QUESTION, *paraphrases[:EXTRA_PHRASINGS]]
        rest = [SAVED_QUESTION, *paraphrases[EXTRA_PHRASINGS:]]
        runs[f"with {EXTRA_PHRASINGS} more phrasings"] = _ask(llm_url, given, rest, args)
    return _result(runs)


def _ask(
    llm_url: str, phrasings: list[str], questions: list[str], args: argparse.Namespace
) -> list[Asked]:
    from bench.slack_harness import post_event, running_bot, signed_mention, wait_until_done

    asked = []
    with running_bot(llm_url, prepare=lambda data_dir: _save(data_dir, phrasings)) as bot:
        # Not measured: the first question pays first-use costs (the embedder's first batch).
        for index, question in enumerate(["what is a multi-stop load?", *questions]):
            event = signed_mention(question, user="U0ASKER")
            ack = post_event(bot.events_url, event)
            timeline = wait_until_done(bot.slack, [event.thread_ts], args.timeout)[event.thread_ts]
            if timeline.final is None:
                raise RuntimeError(f"no final answer to {question!r} within {args.timeout} s")
            if index:
                verified = _from_verified(bot, event.thread_ts)
                asked.append(Asked(question, verified, (timeline.final - ack.sent_at) * 1000))
    return asked


def _save(data_dir: Path, phrasings: list[str]) -> None:
    """The verified answer as the resolve modal saves it: the record, then its index."""
    from retrieval.client import open_store
    from retrieval.embedding import load_embedder_for
    from retrieval.verified import VerifiedEntry, index_verified
    from store import verified_answers
    from store.database import Database
    from store.settings import Settings
    from store.verified_answers import PolicyRef

    settings = Settings(_env_file=None, data_dir=data_dir)
    database = Database(settings.database_url)
    try:
        with database.transaction() as session:
            row = verified_answers.save(
                session,
                question="\n".join(phrasings),
                answer=PERSON_ANSWER,
                author=AUTHOR,
                audience="dispatch",
                policy_refs=[PolicyRef("load-approval", 3, "Load Approval Thresholds")],
            )
            entry = VerifiedEntry(
                row.id, row.question, row.answer, row.author, row.created_at, row.audience, ()
            )
    finally:
        database.dispose()
    with open_store(settings) as store:
        index_verified(store, load_embedder_for(settings), entry)


def _from_verified(bot: RunningBot, thread_ts: str) -> bool:
    """The final message carries the credit line only when a verified answer was given."""
    messages = {
        str(call.response.get("ts"))
        for call in bot.slack.calls
        if call.method in ("chat.postMessage", "chat.startStream")
        and call.args.get("thread_ts") == thread_ts
    }
    return any(
        call.method in ("chat.update", "chat.stopStream")
        and call.args.get("ts") in messages
        and f"<@{AUTHOR}>" in json.dumps(call.args.get("blocks"))
        for call in bot.slack.calls
    )


def _result(runs: dict[str, list[Asked]]) -> BenchResult:
    rows = []
    findings: dict[str, object] = {}
    for name, asked in runs.items():
        reused = [entry.ms for entry in asked if entry.from_verified]
        summary = latency_summary(reused) if reused else None
        rows.append(
            [
                name,
                len(asked),
                len(reused),
                round(summary["p50"]) if summary else "-",
                round(summary["p95"]) if summary else "-",
                round(summary["max"]) if summary else "-",
            ]
        )
        findings[f"{name}: answered from the verified answer"] = f"{len(reused)}/{len(asked)}"
        if summary:
            findings[f"{name}: p95 ms event to final message"] = round(summary["p95"])
            findings[f"{name}: within {BUDGET_MS:.0f} ms"] = summary["p95"] <= BUDGET_MS
    answered = [
        [name, entry.question, entry.from_verified, round(entry.ms)]
        for name, asked in runs.items()
        for entry in asked
    ]
    return BenchResult(
        name="reused-answers",
        title="A question people answered, asked again: event to final message in Slack",
        tables=[
            Table("Answers from the verified answer (no model call)", COLUMNS, rows),
            Table(
                "Every question",
                ["saved as", "question", "from the verified answer", "ms"],
                answered,
            ),
        ],
        findings=findings,
        config={"saved_question": SAVED_QUESTION, "extra_phrasings": EXTRA_PHRASINGS},
        notes=[
            "event to final message: from sending the signed event to the mock receiving the "
            "message with the feedback buttons; questions not reused went to the model"
        ],
    )
