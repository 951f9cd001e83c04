"""Slack ack latency under load: N signed app_mention events at once against
`dispatchbot run --mode http`, with the mock Slack Web API and a real vLLM.

Each load level sends two waves of N events, every event on a connection of its own, all N
released together. The first wave lands on an idle bot. The second is sent once half of the
first wave's answers that can run at once (BOT_ANSWER_WORKERS) are streaming text into
Slack, so its acks are measured while generations are running; the table says how many
answers were in progress (sign shown, final message not yet) during those acks. The goal
(p99 ack under 300 ms at N = 50 while generating) is judged on the second wave.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.report import BenchResult, Table, latency_summary, percentile
from bench.slack_harness import add_bot_arguments

if TYPE_CHECKING:
    from bench.slack_harness import Ack, BoltDispatch, RunningBot, ThreadTimeline

HELP = "Slack ack latency under N concurrent signed events while answers generate"
FULL_LOADS = (1, 10, 50)
QUICK_LOADS = (1, 3)
GOAL_LOAD = 50
GOAL_P99_MS = 300.0
# The load test caps answers below the bot's default (256): 2 x 50 answers share two cores,
# and what is measured is the acks and the answer rate at a fixed answer length.
DEFAULT_MAX_TOKENS = 128


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--loads",
        type=_int_list,
        default=None,
        help=f"concurrent events per wave, comma-separated (default {_show(FULL_LOADS)}; "
        f"--quick: {_show(QUICK_LOADS)})",
    )
    add_bot_arguments(
        parser,
        max_tokens_default=DEFAULT_MAX_TOKENS,
        max_tokens_help=f"LLM_MAX_TOKENS of the bot under load (default {DEFAULT_MAX_TOKENS})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds to wait for the answers of one load level (default 600)",
    )


@dataclass(frozen=True)
class LoadLevel:
    """What one load level measured: two waves of acks and every answer's timeline."""

    load: int
    idle_acks: list[Ack]
    busy_acks: list[Ack]
    in_progress_during_busy_acks: tuple[int, int]  # fewest, most answers running
    sent: int
    completed: int
    failed: int
    answers_per_min: float
    final_s: list[float]  # event sent -> final message, per completed answer
    first_sign_s: list[float]  # event sent -> status, stream start or placeholder
    first_text_s: list[float]  # event sent -> first answer words in Slack
    calls_per_answer: list[int]  # Web API calls each completed answer made
    rate_limited: int  # calls the mock answered with 429 (Slack's rate tiers)
    listen_overflows: int | None  # connections the kernel's listen queues turned away


def run(args: argparse.Namespace) -> BenchResult:
    from bench.slack_harness import (
        BOLT_LOGGER,
        POLICIES,
        bolt_dispatches,
        model_url,
        parse_log,
        running_bot,
    )
    from store.settings import Settings

    loads = args.loads or (QUICK_LOADS if args.quick else FULL_LOADS)
    policies = args.policies or [POLICIES]
    workers = Settings(_env_file=None).bot_answer_workers
    with (
        model_url(args.llm_url) as llm_url,
        running_bot(
            llm_url,
            max_tokens=args.max_tokens,
            policies=policies,
            debug_loggers=[BOLT_LOGGER],
            keep_log=args.bot_log,
            reply=args.reply,
        ) as bot,
    ):
        _warm_up(bot, args.timeout)
        levels = []
        offset = 0
        for load in loads:
            levels.append(measure_load(bot, load, workers, offset=offset, timeout_s=args.timeout))
            offset += 2 * load
        stopped = bot.stop()
        settings = bot.settings
    config = {
        "bot_settings": settings,
        "bot_answer_workers": workers,
        "policies": policies,
        "bot_peak_rss_mib": stopped.peak_rss_mib,
    }
    dispatches = bolt_dispatches(parse_log(stopped.log))
    problems = _log_problems(stopped.log, stopped.returncode)
    return _result(levels, dispatches, problems, config, args)


def _warm_up(bot: RunningBot, timeout_s: float) -> None:
    """One answer first, so the first load level does not pay for first-use costs
    (the embedder's first batch, the model's first prefill of the system prompt)."""
    from bench.slack_harness import eval_questions, post_event, signed_mention, wait_until_done

    event = signed_mention(eval_questions(1, offset=-1)[0], user="U0WARMUP")
    post_event(bot.events_url, event)
    wait_until_done(bot.slack, [event.thread_ts], timeout_s)


def measure_load(
    bot: RunningBot, load: int, workers: int, *, offset: int, timeout_s: float
) -> LoadLevel:
    """Two waves of `load` events; waits for all 2 x `load` answers (or the timeout)."""
    from bench.slack_harness import (
        eval_questions,
        post_events_at_once,
        signed_mention,
        wait_until_done,
    )

    questions = eval_questions(2 * load, offset=offset)
    events = [
        signed_mention(question, user=f"U0LOAD{index:03d}")
        for index, question in enumerate(questions)
    ]
    idle, busy = events[:load], events[load:]
    overflows_before = listen_overflows()
    idle_acks = post_events_at_once(bot.events_url, idle)
    # Half the answers that can run at once, streaming: tokens are being generated.
    streaming_target = max(1, math.ceil(min(load, workers) / 2))

    def generating(timelines: dict[str, ThreadTimeline]) -> bool:
        streaming = [t for t in timelines.values() if t.first_text is not None and not t.done]
        return len(streaming) >= streaming_target or all(t.done for t in timelines.values())

    wait_until_done(
        bot.slack, [e.thread_ts for e in idle], timeout_s, poll_s=0.02, until=generating
    )
    busy_acks = post_events_at_once(bot.events_url, busy)
    every_ts = [event.thread_ts for event in events]
    timelines = wait_until_done(bot.slack, every_ts, timeout_s)
    overflows_after = listen_overflows()

    running = [
        sum(timelines[ts].in_progress_at(moment) for ts in every_ts)
        for ack in busy_acks
        for moment in (ack.sent_at, ack.acked_at)
    ]
    first_sent = min(ack.sent_at for ack in idle_acks)
    finals = {ts: t.final for ts, t in timelines.items() if t.final is not None}
    sent_at = {ack.thread_ts: ack.sent_at for ack in [*idle_acks, *busy_acks]}
    last_final = max(finals.values(), default=math.nan)
    span_min = (last_final - first_sent) / 60
    done = [timelines[ts] for ts in finals]
    return LoadLevel(
        load=load,
        idle_acks=idle_acks,
        busy_acks=busy_acks,
        in_progress_during_busy_acks=(min(running), max(running)),
        sent=len(events),
        completed=len(finals),
        failed=sum(t.failed is not None and t.final is None for t in timelines.values()),
        answers_per_min=len(finals) / span_min if finals else 0.0,
        final_s=[final - sent_at[ts] for ts, final in finals.items()],
        first_sign_s=[t.first_sign - sent_at[t.thread_ts] for t in done if t.first_sign],
        first_text_s=[t.first_text - sent_at[t.thread_ts] for t in done if t.first_text],
        calls_per_answer=[t.calls for t in done],
        rate_limited=sum(t.rate_limited for t in timelines.values()),
        listen_overflows=(
            None
            if overflows_before is None or overflows_after is None
            else overflows_after - overflows_before
        ),
    )


def listen_overflows() -> int | None:
    """The kernel's count of connections dropped because a listen queue was full
    (TcpExt ListenOverflows, machine-wide); None where /proc does not say."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return None
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            counters = dict(zip(names.split()[1:], values.split()[1:], strict=True))
            value = counters.get("ListenOverflows")
            return int(value) if value is not None else None
    return None


def _result(
    levels: Sequence[LoadLevel],
    dispatches: Sequence[BoltDispatch],
    problems: list[str],
    bot_config: dict[str, Any],
    args: argparse.Namespace,
) -> BenchResult:
    workers = bot_config["bot_answer_workers"]
    ack_rows = []
    for level in levels:
        running = "{}-{}".format(*level.in_progress_during_busy_acks)
        ack_rows.append(_ack_row(level.load, "idle bot", level.idle_acks, dispatches, "-"))
        ack_rows.append(
            _ack_row(level.load, "during generation", level.busy_acks, dispatches, running)
        )
    answer_rows = [
        [
            level.load,
            level.sent,
            level.completed,
            level.failed,
            level.answers_per_min,
            percentile(level.first_sign_s, 50) * 1000,
            percentile(level.first_text_s, 50),
            percentile(level.final_s, 50),
            percentile(level.final_s, 95),
            percentile(level.calls_per_answer, 50),
            max(level.calls_per_answer, default=math.nan),
            level.rate_limited,
            "-" if level.listen_overflows is None else level.listen_overflows,
        ]
        for level in levels
    ]
    findings = _findings(levels) | {"bot_peak_rss_mib": bot_config["bot_peak_rss_mib"]}
    notes = [
        "Acks are timed from just before connecting to the end of the response, one "
        "connection per event (as Slack delivers events), by threads of the bench process.",
        "'during generation' is a second wave of N events sent once half of the first wave's "
        f"concurrently running answers (BOT_ANSWER_WORKERS = {workers}) were streaming; "
        "'answers in progress' counts answers that had shown their sign but not their final "
        "message when a probe was sent and when its ack came back (fewest-most).",
        "Answers beyond BOT_ANSWER_WORKERS wait for their turn (their sign shown), so final "
        "times at large N include that wait; answers/min = completed / (last final - first "
        "event sent).",
        "The mock Web API answers in about a millisecond; real Slack adds a network round trip "
        "to every call, which delays answers but not acks (acks make no Web API call).",
        "Web API calls/answer: every call made for one answer (status, stream start, appends, "
        "stop; or placeholder, edits, final edit). 429s: calls the mock refused with HTTP 429: "
        "it keeps each method within Slack's rate tier per workspace (a minute's calls, bursts "
        "up to it allowed; chat.postMessage and chat.startStream about one a second per "
        "channel), as Slack does.",
        "in Bolt: from Bolt's first middleware to its response, in the bot (its DEBUG lines, "
        "on for this run: about a dozen per request). The event-id dedupe write runs after "
        "the ack, in the lazy listener, so it is not part of an ack.",
        "listen overflows: connections the kernel refused because a listen queue (the bot's "
        "or the mock's) was full, counted machine-wide; each costs the client a 1 s SYN retry.",
    ]
    notes.extend(problems)
    return BenchResult(
        name="slack",
        title="Slack ack latency under load (dispatchbot run --mode http, mock Web API)",
        tables=[
            Table(
                "Ack time of N events sent at once (ms)",
                [
                    "N",
                    "wave",
                    "acks",
                    "p50",
                    "p95",
                    "p99",
                    "max",
                    "in Bolt p99",
                    "answers in progress",
                ],
                ack_rows,
            ),
            Table(
                "Per load level: the answers of both waves (2 x N)",
                [
                    "N",
                    "sent",
                    "completed",
                    "failed",
                    "answers/min",
                    "first sign p50 ms",
                    "first words p50 s",
                    "final p50 s",
                    "final p95 s",
                    "calls/answer p50",
                    "calls/answer max",
                    "429s",
                    "listen overflows",
                ],
                answer_rows,
            ),
        ],
        findings=findings,
        config={
            "loads": [level.load for level in levels],
            "quick": bool(args.quick),
            "llm_url": args.llm_url or "a vLLM of the bench's own (bench.local_model)",
            "llm_max_tokens": args.max_tokens,
            "llm_max_tokens_note": "lowered from the bot's default of 256 for the load test",
            **bot_config,
            "store": "SQLite in a scratch data folder (the default store)",
            "questions": "examples/eval/retrieval.jsonl less sensitive and ask-for-a-person ones",
            "warm_up": "one answer before the first load level, not measured",
            "reply": args.reply,
        },
        notes=notes,
    )


def _ack_row(
    load: int, wave: str, acks: Sequence[Ack], dispatches: Sequence[BoltDispatch], running: str
) -> list[object]:
    """One wave's ack times, and how long Bolt took over them in the bot (the requests Bolt
    handled between the wave's first send and last ack)."""
    summary = latency_summary([ack.ms for ack in acks])
    figures = [summary[key] for key in ("n", "p50", "p95", "p99", "max")]
    first, last = min(ack.sent_at for ack in acks), max(ack.acked_at for ack in acks)
    handled = [d for d in dispatches if first <= d.started <= last]
    in_bolt = percentile([d.ms for d in handled], 99)
    return [load, wave, *figures, in_bolt, running]


def _findings(levels: Sequence[LoadLevel]) -> dict[str, Any]:
    top = max(levels, key=lambda level: level.load)
    busy_ms = [ack.ms for ack in top.busy_acks]
    p99 = percentile(busy_ms, 99)
    findings: dict[str, Any] = {
        f"ack_p99_ms_during_generation_at_n{top.load}": p99,
        f"ack_max_ms_during_generation_at_n{top.load}": max(busy_ms),
        f"answers_per_min_at_n{top.load}": top.answers_per_min,
        f"calls_per_answer_p50_at_n{top.load}": percentile(top.calls_per_answer, 50),
        "rate_limited_calls": sum(level.rate_limited for level in levels),
        "answers_completed": sum(level.completed for level in levels),
        "answers_sent": sum(level.sent for level in levels),
    }
    if top.load >= GOAL_LOAD:
        verdict = "pass" if p99 < GOAL_P99_MS else "fail"
    else:
        verdict = f"not judged (largest N was {top.load}, the goal is at N = {GOAL_LOAD})"
    findings[f"goal_p99_ack_under_{GOAL_P99_MS:.0f}ms_at_n{GOAL_LOAD}"] = verdict
    return findings


def _log_problems(log: str, returncode: int) -> list[str]:
    """Errors and refused Slack calls in the bot's log: a figure from a failing bot is void."""
    errors = [line.split(": ", 1)[-1] for line in log.splitlines() if " ERROR " in line]
    refused = log.count("Slack refused a call")
    problems = []
    if returncode != 0:
        problems.append(f"the bot exited with status {returncode} on SIGTERM (expected 0)")
    if errors:
        shown = "; ".join(dict.fromkeys(errors[:3]))
        problems.append(
            f"the bot logged {len(errors)} errors (keep its log with --bot-log): {shown}"
        )
    if refused:
        problems.append(f"Slack (the mock) refused {refused} calls")
    return problems


def _int_list(text: str) -> tuple[int, ...]:
    values = tuple(int(part) for part in text.split(",") if part.strip())
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected positive integers, e.g. 1,10,50")
    return values


def _show(values: Sequence[int]) -> str:
    return ",".join(map(str, values))
