"""`dispatchbot run --mode http` as a benchmark meets it: a real bot process answering signed
Slack events, a mock Slack Web API that records when each call arrived, a real vLLM.

The bot runs as its own process (as in production, so the bench's threads never share its
interpreter lock), from a scratch data folder with the example policies ingested. It is
started through this module (`python -m bench.slack_harness ARGS`), which is the
`dispatchbot` console script with a log format the bench can parse: epoch seconds to the
microsecond and the thread of every line, and optionally the DEBUG lines of chosen loggers:
slack_sdk's around each Web API request (the bot's Slack calls timed from its side), Bolt's
around each dispatch (where an ack's time goes).
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from slack_sdk.signature import SignatureVerifier

from bench.local_model import free_port
from bench.report import REPO_ROOT
from tests.slack.slack_mock import (
    BOT_TOKEN,
    SIGNING_SECRET,
    MockSlack,
    SlackCall,
    event_callback,
    has_buttons,
    mention,
)

POLICIES = REPO_ROOT / "examples" / "policies"
EVAL_QUESTIONS = REPO_ROOT / "examples" / "eval" / "retrieval.jsonl"
EVENTS_PATH = "/slack/events"
# The bot's settings a result records (the others are the defaults, or secrets).
_SHOWN_SETTINGS = (
    "LLM_BASE_URL",
    "LLM_MODEL",
    "LLM_MAX_TOKENS",
    "LOG_LEVEL",
    "SLACK_NATIVE_STREAMING",
)
# slack_sdk logs each Web API request under the logger the bot gives its WebClient; Bolt
# logs each middleware it applies and the response it sends under the app's logger.
WEB_API_LOGGER = "dispatchbot.slack_api"
BOLT_LOGGER = "dispatchbot.bolt"
DEBUG_FLAG = "--debug-logger"
LOG_FORMAT = "%(created).6f %(threadName)s %(levelname)s %(name)s: %(message)s"
# The fallback text of bot.blocks.error_message, the apology that replaces a failed answer.
FAILURE_TEXT = "Sorry, something went wrong while I was answering"
# Thread names may hold spaces ("Thread-3 (process_request_thread)"); the level ends them.
_LOG_LINE = re.compile(r"^(\d+\.\d+) (.+?) (DEBUG|INFO|WARNING|ERROR|CRITICAL) ([\w.]+): (.*)$")
_FIELD = re.compile(r"(\w+)=(\S+)")


# --- the bot process ---------------------------------------------------------------------


def add_bot_arguments(
    parser: argparse.ArgumentParser, *, max_tokens_default: int | None, max_tokens_help: str
) -> None:
    """The options every part that runs the bot shares: model, answer length, corpus, log."""
    parser.add_argument(
        "--llm-url",
        default=None,
        help="a running vLLM's /v1 URL to use (default: start one of the bench's own)",
    )
    parser.add_argument("--max-tokens", type=int, default=max_tokens_default, help=max_tokens_help)
    parser.add_argument(
        "--policies",
        type=Path,
        nargs="+",
        default=None,
        help="policy files or folders the bot answers from (default examples/policies)",
    )
    parser.add_argument(
        "--bot-log", type=Path, default=None, help="keep the bot's log in this file"
    )
    parser.add_argument(
        "--reply",
        choices=("agent", "placeholder"),
        default="agent",
        help="how answers appear: Slack's agent methods (the default) or a placeholder the "
        "bot edits (SLACK_NATIVE_STREAMING=false)",
    )


@dataclass(frozen=True)
class BotExit:
    returncode: int
    log: str
    peak_rss_mib: float | None  # the process's high-water mark of resident memory


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM of a running process (Linux), in MiB; None where /proc does not say."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


@dataclass
class RunningBot:
    """A `dispatchbot run --mode http` process and the mock Slack it talks to."""

    url: str
    slack: MockSlack
    process: subprocess.Popen[bytes]
    log_path: Path
    settings: dict[str, str]  # the environment it was given, secrets left out
    _exit: BotExit | None = field(default=None, repr=False)

    @property
    def events_url(self) -> str:
        return self.url + EVENTS_PATH

    def stop(self, timeout_s: float = 180) -> BotExit:
        """SIGTERM, as an orchestrator stops it: running answers finish, then it exits."""
        if self._exit is None:
            peak = peak_rss_mib(self.process.pid)
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self._exit = BotExit(self.process.returncode, self.log_path.read_text("utf-8"), peak)
        return self._exit


@contextmanager
def running_bot(
    llm_url: str,
    *,
    max_tokens: int | None = None,
    debug_loggers: Sequence[str] = (),
    policies: Sequence[Path] = (POLICIES,),
    keep_log: Path | None = None,
    startup_timeout_s: float = 180,
    prepare: Callable[[Path], None] | None = None,
    reply: str = "agent",
) -> Iterator[RunningBot]:
    """Start the mock Slack and the bot (store migrated, policies ingested); stop both after.

    `max_tokens` sets LLM_MAX_TOKENS (None: the bot's default); `debug_loggers` log at
    DEBUG in the bot (WEB_API_LOGGER, BOLT_LOGGER). The bot's log is
    `RunningBot.stop().log`, and is copied to `keep_log` at the end when that is given.
    `prepare` gets the data dir once the policies are in, before the bot holds the store.
    `reply` "placeholder" turns Slack's agent methods off (SLACK_NATIVE_STREAMING=false).
    """
    slack = MockSlack().start()
    data_dir = Path(tempfile.mkdtemp(prefix="dispatchbot-bench-slack-"))
    try:
        env = _bot_env(data_dir, slack.api_url, llm_url, max_tokens)
        env["SLACK_NATIVE_STREAMING"] = "true" if reply == "agent" else "false"
        _create_store(data_dir)
        _dispatchbot(["ingest", *(str(path.resolve()) for path in policies)], env, data_dir)
        if prepare is not None:
            prepare(data_dir)
        port = free_port()
        log_path = data_dir / "bot.log"
        args = ["run", "--mode", "http", "--host", "127.0.0.1", "--port", str(port)]
        with log_path.open("wb") as log:
            process = subprocess.Popen(  # noqa: S603 - our own bot, with our own arguments
                _bot_command([f"{DEBUG_FLAG}={name}" for name in debug_loggers], args),
                env=env,
                cwd=data_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        shown = {k: v for k, v in env.items() if k in _SHOWN_SETTINGS}
        bot = RunningBot(f"http://127.0.0.1:{port}", slack, process, log_path, shown)
        try:
            _wait_until_healthy(bot, startup_timeout_s)
            yield bot
        finally:
            log = bot.stop().log
            if keep_log is not None:
                keep_log.write_text(log, "utf-8")
    finally:
        slack.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@contextmanager
def model_url(llm_url: str | None) -> Iterator[str]:
    """`llm_url` when given (a running vLLM), else a vLLM of the bench's own for the block."""
    if llm_url:
        yield llm_url
        return
    from bench.local_model import local_vllm

    with local_vllm(quiet=True) as model:
        yield model.base_url


def served_model(llm_url: str) -> str:
    """The name the vLLM serves its base model under (the first it lists)."""
    response = httpx.get(llm_url.rstrip("/") + "/models", timeout=10)
    response.raise_for_status()
    return str(response.json()["data"][0]["id"])


def _bot_env(data_dir: Path, api_url: str, llm_url: str, max_tokens: int | None) -> dict[str, str]:
    """The environment an operator would give the bot, and nothing from the developer's:
    every variable that names a setting is dropped first, and the bot runs in the scratch
    folder, so no .env is found either."""
    from store.settings import Settings

    names = {name.upper() for name in Settings.model_fields} | {"DISPATCHBOT_DATA_DIR"}
    env = {key: value for key, value in os.environ.items() if key.upper() not in names}
    env |= {
        "PYTHONPATH": str(REPO_ROOT),
        "DISPATCHBOT_DATA_DIR": str(data_dir),
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": api_url,
        "LLM_BASE_URL": llm_url,
        "LLM_MODEL": served_model(llm_url),
        "LOG_LEVEL": "INFO",
        # The sample questions are for dispatchers and service agents: every channel may
        # read those policies, as a dispatch team's workspace would be set up.
        "AUDIENCE_DEFAULT": "dispatch,service",
        # The load puts more questions into one channel in a minute than a team would: with
        # the limits off every one of them is answered, and measured.
        "RATE_LIMIT_USER_PER_MINUTE": "0",
        "RATE_LIMIT_CHANNEL_PER_MINUTE": "0",
    }
    if max_tokens is not None:
        env["LLM_MAX_TOKENS"] = str(max_tokens)
    return env


def _create_store(data_dir: Path) -> None:
    """What `dispatchbot db upgrade` does, in this process: one bot start-up less to wait for
    (the command line imports the whole app, torch included)."""
    from store import schema
    from store.database import Database
    from store.settings import Settings

    database = Database(Settings(_env_file=None, data_dir=data_dir).database_url)
    try:
        schema.upgrade(database)
    finally:
        database.dispose()


def _bot_command(harness_flags: list[str], args: list[str]) -> list[str]:
    return [sys.executable, "-m", "bench.slack_harness", *harness_flags, *args]


def _dispatchbot(args: list[str], env: dict[str, str], cwd: Path) -> None:
    done = subprocess.run(  # noqa: S603 - our own console script
        _bot_command([], args), env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise RuntimeError(f"dispatchbot {' '.join(args)} failed:\n{done.stdout}{done.stderr}")


def _wait_until_healthy(bot: RunningBot, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if bot.process.poll() is not None:
            raise RuntimeError(f"dispatchbot run exited at start:\n{bot.stop().log[-3000:]}")
        try:
            if httpx.get(bot.url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"dispatchbot run did not answer /healthz in {timeout_s:.0f} s")


def _run_dispatchbot(argv: list[str]) -> None:
    """The console script, with the bench's log format (see the module docstring)."""
    debug = [arg.removeprefix(f"{DEBUG_FLAG}=") for arg in argv if arg.startswith(DEBUG_FLAG)]
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(), format=LOG_FORMAT)
    logging.getLogger("alembic").setLevel(logging.WARNING)  # as the console script does
    for name in debug:
        logging.getLogger(name).setLevel(logging.DEBUG)
    from bot.cli import app

    app([arg for arg in argv if not arg.startswith(DEBUG_FLAG)], prog_name="dispatchbot")


# --- questions and signed events ---------------------------------------------------------


def eval_questions(count: int, *, offset: int = 0) -> list[str]:
    """`count` real questions from the evaluation set, cycling when more are asked for.

    Questions that ask for a person or are sensitive are left out: the bot hands those to
    people (a safety note first, or no model call at all), which is another path.
    """
    from serving.escalation_rules import EscalationRules
    from store.settings import Settings

    defaults = Settings(_env_file=None)
    rules = EscalationRules(defaults.escalation_phrases, defaults.escalation_sensitive_terms)
    lines = EVAL_QUESTIONS.read_text("utf-8").splitlines()
    usable = [
        question
        for question in (json.loads(line)["question"] for line in lines if line.strip())
        if not rules.asks_for_a_person(question) and rules.sensitive_term(question) is None
    ]
    return [usable[(offset + index) % len(usable)] for index in range(count)]


@dataclass(frozen=True)
class SignedEvent:
    """An app_mention in its own thread, signed the way Slack signs it."""

    thread_ts: str  # the question's ts: the answer goes into this thread
    body: bytes
    headers: dict[str, str]


def signed_mention(text: str, *, user: str = "U0ALICE", channel: str = "C0DISPATCH") -> SignedEvent:
    event = mention(text, user=user, channel=channel)
    body = json.dumps(event_callback(event))
    stamp = str(int(time.time()))
    signature = SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp=stamp, body=body)
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature,
    }
    return SignedEvent(event["ts"], body.encode(), headers)


@dataclass(frozen=True)
class Ack:
    thread_ts: str
    sent_at: float  # time.monotonic(), just before connecting
    acked_at: float  # after the whole response was read
    status: int

    @property
    def ms(self) -> float:
        return (self.acked_at - self.sent_at) * 1000


def post_event(events_url: str, event: SignedEvent, timeout_s: float = 10) -> Ack:
    """Deliver one event on a connection of its own, as Slack does, and time the ack.

    The standard library's client, not httpx: building an httpx client per request costs
    milliseconds of CPU (an SSL context), which would be counted as the bot's ack time.
    """
    target = urlsplit(events_url)
    connection = http.client.HTTPConnection(target.hostname or "", target.port, timeout=timeout_s)
    try:
        sent_at = time.monotonic()
        connection.request("POST", target.path, body=event.body, headers=event.headers)
        response = connection.getresponse()
        response.read()
        return Ack(event.thread_ts, sent_at, time.monotonic(), response.status)
    finally:
        connection.close()


def post_events_at_once(events_url: str, events: Sequence[SignedEvent]) -> list[Ack]:
    """Every event from its own thread, released together by a barrier: N at the same time."""
    barrier = threading.Barrier(len(events))
    acks: list[Ack | BaseException] = [RuntimeError("not sent")] * len(events)

    def send(index: int) -> None:
        barrier.wait()
        try:
            acks[index] = post_event(events_url, events[index])
        except OSError as error:
            acks[index] = error

    threads = [threading.Thread(target=send, args=(index,)) for index in range(len(events))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failed = [ack for ack in acks if not isinstance(ack, Ack)]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(events)} events were not delivered: {failed[0]}")
    return [ack for ack in acks if isinstance(ack, Ack)]


# --- what reached Slack ------------------------------------------------------------------


@dataclass(frozen=True)
class ThreadTimeline:
    """When each step of one answer reached Slack (time.monotonic(), None: not yet)."""

    thread_ts: str
    first_sign: float | None = None  # the status, the stream's start or the placeholder
    first_text: float | None = None  # the first answer text (streamed, edited or final)
    final: float | None = None  # the message with the feedback buttons
    failed: float | None = None  # the apology instead of an answer
    calls: int = 0  # Web API calls made for the answer
    rate_limited: int = 0  # of them, answered with HTTP 429

    @property
    def done(self) -> bool:
        return self.final is not None or self.failed is not None

    def in_progress_at(self, moment: float) -> bool:
        """Shown a sign, not finished: the answer is being worked on at `moment`."""
        if self.first_sign is None or self.first_sign > moment:
            return False
        end = self.final if self.final is not None else self.failed
        return end is None or end > moment


_STREAM_METHODS = ("chat.startStream", "chat.appendStream", "chat.stopStream")


def thread_timelines(
    calls: Sequence[SlackCall], thread_tss: Sequence[str]
) -> dict[str, ThreadTimeline]:
    """What the mock saw of each thread, on either way of answering (Slack's agent methods,
    or a placeholder and its edits). A stream's appends and an edit name only their message,
    so messages the bot started in a thread are mapped back to the thread through their ts."""
    wanted = set(thread_tss)
    thread_of_message: dict[str, str] = {}
    found: dict[str, dict[str, Any]] = {ts: {"calls": 0, "rate_limited": 0} for ts in thread_tss}
    for call in calls:
        in_thread = call.args.get("thread_ts") in wanted
        if call.method == "assistant.threads.setStatus" and in_thread:
            thread = str(call.args["thread_ts"])
            if call.response.get("ok"):
                _note(found[thread], "first_sign", call.at)
        elif call.method in ("chat.postMessage", "chat.startStream") and in_thread:
            thread = str(call.args["thread_ts"])
            if call.response.get("ok"):
                thread_of_message[str(call.response.get("ts"))] = thread
                _note(found[thread], "first_sign", call.at)
        elif call.method in ("chat.update", *_STREAM_METHODS):
            if call.args.get("ts") not in thread_of_message:
                continue
            thread = thread_of_message[str(call.args["ts"])]
        else:
            continue
        found[thread]["calls"] += 1
        if call.response.get("_http_status") == 429:
            found[thread]["rate_limited"] += 1
            continue
        if call.method == "chat.update" or _streams_text(call):
            _note(found[thread], "first_text", call.at)
        if has_buttons(call):
            _note(found[thread], "first_text", call.at)
            _note(found[thread], "final", call.at)
        elif str(call.args.get("text", "")).startswith(FAILURE_TEXT) or (
            call.method == "chat.stopStream" and FAILURE_TEXT in json.dumps(call.args)
        ):
            _note(found[thread], "failed", call.at)
    return {ts: ThreadTimeline(ts, **values) for ts, values in found.items()}


def _streams_text(call: SlackCall) -> bool:
    if call.method not in _STREAM_METHODS:
        return False
    chunks = call.args.get("chunks") or []
    return bool(call.args.get("markdown_text")) or any(
        chunk.get("type") == "markdown_text" and str(chunk.get("text", "")).strip()
        for chunk in chunks
    )


def _note(values: dict[str, Any], key: str, at: float) -> None:
    values.setdefault(key, at)


def wait_until_done(
    slack: MockSlack,
    thread_tss: Sequence[str],
    timeout_s: float,
    *,
    poll_s: float = 0.2,
    until: Callable[[dict[str, ThreadTimeline]], bool] | None = None,
) -> dict[str, ThreadTimeline]:
    """Poll the mock until every thread has its final message (or apology), or `until` holds.

    Returns the timelines at that moment; on timeout, whatever had arrived.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        timelines = thread_timelines(list(slack.calls), thread_tss)
        finished = (
            until(timelines) if until else all(timeline.done for timeline in timelines.values())
        )
        if finished or time.monotonic() >= deadline:
            return timelines
        time.sleep(poll_s)


# --- the bot's log -----------------------------------------------------------------------


@dataclass(frozen=True)
class LogLine:
    at: float  # time.monotonic() in this process's terms
    thread: str
    logger: str
    message: str

    def fields(self) -> dict[str, str]:
        """The `key=value` pairs of a metadata line ("answered ... retrieval_ms=12")."""
        return dict(_FIELD.findall(self.message))


def parse_log(text: str) -> list[LogLine]:
    """The bot's log lines, their epoch times moved onto this process's monotonic clock
    (the one the mock stamps calls with); continuation lines (tracebacks) are skipped."""
    offset = time.time() - time.monotonic()
    lines = []
    for raw in text.splitlines():
        match = _LOG_LINE.match(raw)
        if match:
            created, thread, _level, logger, message = match.groups()
            lines.append(LogLine(float(created) - offset, thread, logger, message))
    return lines


@dataclass(frozen=True)
class WebApiCall:
    """One Slack Web API request as the bot's client timed it."""

    method: str
    thread: str
    started: float
    ended: float

    @property
    def ms(self) -> float:
        return (self.ended - self.started) * 1000


def web_api_calls(lines: Sequence[LogLine]) -> list[WebApiCall]:
    """Pair slack_sdk's "Sending a request" and "Received the following response" lines.

    A thread makes one request at a time, so a request's response is the next response
    line of the same thread.
    """
    open_requests: dict[str, tuple[str, float]] = {}
    calls = []
    for line in lines:
        if line.logger != WEB_API_LOGGER:
            continue
        if line.message.startswith("Sending a request - url: "):
            url = line.message.removeprefix("Sending a request - url: ").split(",", 1)[0]
            open_requests[line.thread] = (url.rsplit("/", 1)[-1], line.at)
        elif line.message.startswith("Received the following response") and (
            line.thread in open_requests
        ):
            method, started = open_requests.pop(line.thread)
            calls.append(WebApiCall(method, line.thread, started, line.at))
    return calls


@dataclass(frozen=True)
class BoltDispatch:
    """One request through Bolt, from its first middleware to its response."""

    thread: str
    started: float
    ended: float

    @property
    def ms(self) -> float:
        return (self.ended - self.started) * 1000


def bolt_dispatches(lines: Sequence[LogLine]) -> list[BoltDispatch]:
    """Bolt's DEBUG lines per request thread (the HTTP server gives each request one)."""
    marks: dict[str, dict[str, float]] = {}
    dispatches = []
    for line in lines:
        if line.logger != BOLT_LOGGER:
            continue
        if line.message.startswith("Applying slack_bolt.middleware.ssl_check"):
            marks[line.thread] = {"started": line.at}
        elif line.thread in marks and line.message.startswith("Responding with status"):
            found = marks.pop(line.thread)
            dispatches.append(BoltDispatch(line.thread, found["started"], line.at))
    return dispatches


if __name__ == "__main__":
    _run_dispatchbot(sys.argv[1:])
