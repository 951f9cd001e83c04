"""End-to-end answer: where the time of one answer goes, from the Slack event to the final
message, with `dispatchbot run --mode http`, the mock Slack Web API and a real vLLM.

Questions are asked one at a time, each in a new thread; the next is sent once the previous
answer's final message has reached the mock. Milestones come from the mock's arrival times
(the first sign: Slack's status or the placeholder; the first answer words; the final
message with its buttons); the split comes from
the bot's log: the assistant's stage timings ("answered ... retrieval_ms= model_ms="), the
model client's TTFT and token counts ("generated ..."), and slack_sdk's lines around each
Web API request, which time every Slack call from the bot's side.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.report import BenchResult, Table, latency_summary, percentile
from bench.slack_harness import add_bot_arguments

if TYPE_CHECKING:
    from bench.slack_harness import Ack, LogLine, ThreadTimeline

HELP = "one answer end to end: first sign, first token, final message, and the stage split"
FULL_QUESTIONS = 8
QUICK_QUESTIONS = 2
ASSISTANT_LOGGER = "serving.assistant"
MODEL_LOGGER = "serving.llm_client"
# Stages the assistant times (serving.assistant.StageTimings) and logs on its "answered" line.
MODEL_STAGE = "model (generation stream)"
LOGGED_STAGES = {
    "retrieval": "retrieval_ms",
    "prompt building": "prompt_ms",
    MODEL_STAGE: "model_ms",
    "store (answer write)": "store_ms",
}
SLACK_STAGE = "Slack calls (sign + final message)"
OTHER_STAGE = "other (dispatch, question write, blocks)"
TOTAL = "total: event -> final message"
IN_STREAM_SLACK = "Slack edits while streaming (inside the model stage)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--questions",
        type=int,
        default=None,
        help=f"questions asked one after another (default {FULL_QUESTIONS}; "
        f"--quick: {QUICK_QUESTIONS})",
    )
    add_bot_arguments(
        parser,
        max_tokens_default=None,
        max_tokens_help="LLM_MAX_TOKENS of the bot (default: the bot's own default)",
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for one answer"
    )


@dataclass(frozen=True)
class AnswerTrace:
    """One answer: its milestones (ms after the event was sent) and its stages (ms)."""

    ack_ms: float
    first_sign_ms: float
    first_token_ms: float  # the model's first token, in the bot
    first_text_ms: float  # the first answer words (streamed, or edited in), at Slack
    final_ms: float
    model_ttft_ms: float  # the model client's own TTFT (request -> first token)
    stages: dict[str, float]  # LOGGED_STAGES names (NaN when not logged), SLACK, OTHER
    in_stream_slack_ms: float
    slack_calls: int
    completion_tokens: int
    prompt_tokens: int


def run(args: argparse.Namespace) -> BenchResult:
    from bench.slack_harness import (
        POLICIES,
        WEB_API_LOGGER,
        eval_questions,
        model_url,
        parse_log,
        post_event,
        running_bot,
        signed_mention,
        wait_until_done,
    )
    from store.settings import Settings

    count = args.questions or (QUICK_QUESTIONS if args.quick else FULL_QUESTIONS)
    policies = args.policies or [POLICIES]
    asked: list[tuple[Ack, ThreadTimeline]] = []
    with (
        model_url(args.llm_url) as llm_url,
        running_bot(
            llm_url,
            max_tokens=args.max_tokens,
            debug_loggers=[WEB_API_LOGGER],
            policies=policies,
            keep_log=args.bot_log,
            reply=args.reply,
        ) as bot,
    ):
        # Not measured: the first answer pays first-use costs (the embedder's first batch).
        for question in [*eval_questions(1, offset=-1), *eval_questions(count)]:
            event = signed_mention(question, user="U0ASKER")
            ack = post_event(bot.events_url, event)
            timeline = wait_until_done(bot.slack, [event.thread_ts], args.timeout)
            asked.append((ack, timeline[event.thread_ts]))
        stopped = bot.stop()
        settings = bot.settings
    measured = asked[1:]
    unfinished = sum(timeline.final is None for _, timeline in measured)
    if unfinished:
        raise RuntimeError(
            f"{unfinished} of {len(measured)} answers did not reach their final message; "
            "keep the bot's log with --bot-log to see why"
        )
    lines = parse_log(stopped.log)
    traced = [trace_answer(ack, timeline, lines) for ack, timeline in measured]
    traces = [trace for trace in traced if trace is not None]
    if not traces:
        raise RuntimeError("no answer reached the model; check the policies and questions")
    max_tokens = args.max_tokens or Settings(_env_file=None).llm_max_tokens
    config = {
        "bot_settings": settings,
        "policies": policies,
        "llm_max_tokens": max_tokens,
        # Weak evidence is answered without the model; such answers have no stages to split.
        "answers_without_a_model_call": len(traced) - len(traces),
    }
    return _result(traces, config, args)


def trace_answer(
    ack: Ack, timeline: ThreadTimeline, lines: Sequence[LogLine]
) -> AnswerTrace | None:
    """Put one answer's log lines and Slack calls on its timeline; None when the answer
    never called the model (the evidence was too weak to answer from).

    Only one answer runs at a time, so every line between the event and the final message
    is this answer's. The model stage is the assistant's `model_ms`: the stream as the
    answer's thread read it, including the chat.update calls made between chunks (the
    model goes on generating meanwhile, so those overlap it and are not added again).
    """
    from bench.slack_harness import web_api_calls
    from serving.assistant import NO_GENERATION

    assert timeline.final is not None, "run() checked every answer finished"
    assert timeline.first_sign is not None, "a final message follows a first sign"
    start, end = ack.sent_at, timeline.final
    # The final call's response line comes just after the mock stamped the final message.
    window = [line for line in lines if start <= line.at <= end + 1.0]
    before_final = [line for line in window if line.at <= end]
    answered = _only(before_final, ASSISTANT_LOGGER, "answered ").fields()
    if answered.get("model") == NO_GENERATION:
        return None
    generated_line = _only(before_final, MODEL_LOGGER, "generated ")
    generated = generated_line.fields()
    stream_end = generated_line.at
    stream_start = stream_end - float(generated["latency_ms"]) / 1000
    calls = [call for call in web_api_calls(window) if start <= call.started <= end]
    in_stream = [call for call in calls if stream_start <= call.started <= stream_end]
    stages = {name: _ms_field(answered, key) for name, key in LOGGED_STAGES.items()}
    stages[SLACK_STAGE] = sum(call.ms for call in calls if call not in in_stream)
    total_ms = (end - start) * 1000
    stages[OTHER_STAGE] = total_ms - sum(v for v in stages.values() if not math.isnan(v))
    model_ttft_ms = float(generated["ttft_ms"])
    return AnswerTrace(
        ack_ms=ack.ms,
        first_sign_ms=(timeline.first_sign - start) * 1000,
        first_token_ms=(stream_start - start) * 1000 + model_ttft_ms,
        first_text_ms=((timeline.first_text or end) - start) * 1000,
        final_ms=total_ms,
        model_ttft_ms=model_ttft_ms,
        stages=stages,
        in_stream_slack_ms=sum(call.ms for call in in_stream),
        slack_calls=len(calls),
        completion_tokens=_int_field(generated, "completion_tokens"),
        prompt_tokens=_int_field(generated, "prompt_tokens"),
    )


def _only(lines: Sequence[LogLine], logger: str, prefix: str) -> LogLine:
    found = [line for line in lines if line.logger == logger and line.message.startswith(prefix)]
    if len(found) != 1:
        raise RuntimeError(
            f"expected one {logger} {prefix.strip()!r} log line per answer, found {len(found)}; "
            "is LOG_LEVEL=INFO reaching the bot?"
        )
    return found[0]


def _ms_field(fields: dict[str, str], key: str) -> float:
    """A stage the log line carries, or NaN: the row then says it was not logged."""
    return float(fields[key]) if key in fields else math.nan


def _int_field(fields: dict[str, str], key: str) -> int:
    value = fields.get(key, "None")
    return int(value) if value.isdigit() else 0


def _result(
    traces: Sequence[AnswerTrace], bot_config: dict[str, object], args: argparse.Namespace
) -> BenchResult:
    milestones = [
        ("ack (HTTP 200)", [t.ack_ms for t in traces]),
        (
            "first visible sign (status, or placeholder, at Slack)",
            [t.first_sign_ms for t in traces],
        ),
        ("first token from the model (in the bot)", [t.first_token_ms for t in traces]),
        ("first answer words at Slack", [t.first_text_ms for t in traces]),
        ("final message at Slack", [t.final_ms for t in traces]),
        ("model TTFT (request -> first token)", [t.model_ttft_ms for t in traces]),
    ]
    milestone_rows = [
        [name, summary["p50"], summary["p95"], summary["max"]]
        for name, values in milestones
        for summary in [latency_summary(values)]
    ]
    total = sum(t.final_ms for t in traces)
    stage_rows = []
    for name in [*LOGGED_STAGES, SLACK_STAGE, OTHER_STAGE]:
        values = [t.stages[name] for t in traces]
        logged = not any(math.isnan(value) for value in values)
        stage_rows.append(
            _stage_row(name, values, sum(values) / total * 100)
            if logged
            else [name, "-", "-", "not logged"]
        )
    stage_rows.append(
        _stage_row(IN_STREAM_SLACK, [t.in_stream_slack_ms for t in traces], "(in model)")
    )
    stage_rows.append(_stage_row(TOTAL, [t.final_ms for t in traces], 100.0))
    return BenchResult(
        name="answer",
        title="End-to-end answer path (dispatchbot run --mode http, mock Web API, real vLLM)",
        tables=[
            Table(
                "Milestones after the event was sent (ms)",
                ["milestone", "p50", "p95", "max"],
                milestone_rows,
            ),
            Table(
                "Where an answer's time goes (ms; share of the summed totals)",
                ["stage", "p50", "p95", "share %"],
                stage_rows,
            ),
        ],
        findings=_findings(traces, int(bot_config["llm_max_tokens"])),
        config={
            "questions": len(traces),
            "quick": bool(args.quick),
            "llm_url": args.llm_url or "a vLLM of the bench's own (bench.local_model)",
            **bot_config,
            "slack_update_interval_s": "the bot's default",
            "store": "SQLite in a scratch data folder (the default store)",
            "questions_from": "examples/eval/retrieval.jsonl less sensitive and "
            "ask-for-a-person ones, one at a time, each in a new thread",
            "warm_up": "one answer before the measured ones, not measured",
        },
        notes=[
            "Stages are what the bot's own log says (the assistant's StageTimings, slack_sdk's "
            "request lines); 'other' is the rest of the event -> final message time: Bolt's "
            "dispatch and the event dedupe write, the question write, block building.",
            "Slack edits while streaming happen between model chunks; vLLM keeps generating "
            "meanwhile, so they are inside the model stage and not added to the total again.",
            "The mock Web API answers in about a millisecond; real Slack adds a network round "
            "trip to each call (see Slack calls per answer).",
        ],
    )


def _stage_row(name: str, values: Sequence[float], share: float | str) -> list[object]:
    return [name, percentile(values, 50), percentile(values, 95), share]


def _findings(traces: Sequence[AnswerTrace], max_tokens: int) -> dict[str, object]:
    total = sum(t.final_ms for t in traces)
    shares = {
        name: sum(t.stages[name] for t in traces) / total * 100
        for name in [*LOGGED_STAGES, SLACK_STAGE, OTHER_STAGE]
        if not any(math.isnan(t.stages[name]) for t in traces)
    }
    slowest = max(shares, key=shares.__getitem__)
    outside_model = {name: share for name, share in shares.items() if name != MODEL_STAGE}
    slowest_outside = max(outside_model, key=outside_model.__getitem__)
    decode_s = [(t.stages[MODEL_STAGE] - t.model_ttft_ms) / 1000 for t in traces]
    tokens = [t.completion_tokens for t in traces]
    return {
        "slowest_stage": slowest,
        "slowest_stage_share_pct": shares[slowest],
        "slowest_stage_outside_the_model": slowest_outside,
        "slowest_outside_the_model_share_pct": outside_model[slowest_outside],
        "final_message_p50_ms": percentile([t.final_ms for t in traces], 50),
        "first_visible_sign_p50_ms": percentile([t.first_sign_ms for t in traces], 50),
        "first_answer_text_at_slack_p50_ms": percentile([t.first_text_ms for t in traces], 50),
        "model_ttft_p50_ms": percentile([t.model_ttft_ms for t in traces], 50),
        "prompt_tokens_p50": percentile([t.prompt_tokens for t in traces], 50),
        "completion_tokens_p50": percentile(tokens, 50),
        "decode_tokens_per_s": sum(tokens) / sum(decode_s) if sum(decode_s) > 0 else math.nan,
        # How the model stage divides: waiting for the first token (the prompt's prefill)
        # against decoding the rest, which grows with the answer's length.
        "model_ttft_share_of_model_stage_pct": sum(t.model_ttft_ms for t in traces)
        / sum(t.stages[MODEL_STAGE] for t in traces)
        * 100,
        "answers_cut_at_llm_max_tokens": sum(count >= max_tokens for count in tokens),
        "slack_calls_per_answer_p50": percentile([t.slack_calls for t in traces], 50),
        "slack_ms_per_answer_p50": percentile(
            [t.stages[SLACK_STAGE] + t.in_stream_slack_ms for t in traces], 50
        ),
    }
