"""Feedback changes answers, end to end on this CPU: a question asked in Slack through the
real `dispatchbot run` (Bolt over HTTP, the real vLLM, a mock Slack Web API), a 👎 with its
reason, a person's corrected answer through the escalation card → `dataset export` →
`train` → `evaluate model` → `promote` → the same questions answered in Slack by the new
adapter, with the person's fact in the model's own text → `rollback` → the base model again.

The training is built to reproduce the correction: the resolution is the only row, trained
on for many small steps at a high learning rate. The test asserts what that makes certain
(which adapter answered, that its text holds the corrected fact), never that the model is
generally right."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from bot_process import (
    POLICIES,
    dispatchbot,
    operator_environment,
    start_http_bot,
    stop,
    wait_until_healthy,
)
from slack_mock import (
    BOT_TOKEN,
    SIGNING_SECRET,
    MockSlack,
    SlackCall,
    SlackSender,
    block_action,
    event_callback,
    feedback_click,
    has_buttons,
    mention,
    message,
    view_submission,
)
from sqlalchemy import select
from vllm_support import RunningServer, free_port

from bot.blocks import ASK_PERSON
from bot.escalation_blocks import ESCALATION_CLAIM, ESCALATION_RESOLVE, RESOLUTION_BLOCK
from serving.model_gate import GateResult
from serving.promotion import ACTIVE_REFRESH_S
from serving.vllm_admin import list_served_models, unload_adapter
from store.database import Database
from store.models import Answer, Escalation, Feedback, Message

QUESTION = "who approves a 30,000 lb load?"
PARAPHRASES = [
    "who do i need approval from for a 30,000 lb load?",
    "who signs off on a 30,000 lb load?",
    "30k lb load, who has to approve it?",
    "a load of 30,000 lb needs whose approval?",
    "30,000 lb on the bol, who approves the load?",
]
# The policy's own row (so verification lets the model write it), with a fact the base
# model's greedy answer to these questions lacks: the extension.
CORRECTED = "The shift lead on duty approves it, at the dispatch desk, ext. 4411."
FACT = "4411"
ONCALL = "C0ONCALL"
ADAPTER = "learned-v1"
ASKER = "U0ALICE"
DISPATCHER = "U0DISPATCHER"


@dataclass
class Deployment:
    """An operator's data dir, the bot running on it, and the command line beside it."""

    slack: MockSlack
    send: SlackSender
    env: dict[str, str]
    cwd: Path
    database: Database

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return dispatchbot(*args, env=self.env, cwd=self.cwd, timeout=timeout)

    def cli_json(self, *args: str, timeout: float = 300) -> Any:
        result = self.cli(*args, "--json", timeout=timeout)
        assert result.returncode == 0, f"{args}: {result.stderr}"
        return json.loads(result.stdout)

    def ask(self, text: str) -> tuple[SlackCall, Answer]:
        """Ask in a new thread of the dispatch channel; the final message and its answer."""
        question = mention(text, user=ASKER)
        assert self.send.event(event_callback(question)).status_code == 200
        placeholder = self.slack.wait_for(
            "chat.postMessage", lambda c: c.args.get("thread_ts") == question["ts"]
        )[0]
        ts = placeholder.response["ts"]
        final = self.slack.wait_for(
            "chat.update", lambda c: c.args["ts"] == ts and has_buttons(c), timeout=120
        )[0]
        with self.database.transaction() as session:
            answer = session.scalars(
                select(Answer).join(Message).where(Message.slack_ts == ts)
            ).one()
            session.expunge(answer)
        return final, answer

    def click(self, final: SlackCall, action_id: str, user: str = ASKER) -> None:
        actions = next(b for b in final.args["blocks"] if b["type"] == "actions")
        button = next(e for e in actions["elements"] if e["action_id"] == action_id)
        self._press(action_id, button["value"], final.args["channel"], final.args["ts"], user)

    def vote_down(self, final: SlackCall, user: str = ASKER) -> None:
        """Slack's own 👎 under the answer."""
        assert self.send.interaction(feedback_click(final, -1, user=user)).status_code == 200

    def click_card(self, card: SlackCall, action_id: str, user: str = DISPATCHER) -> None:
        button = next(
            element
            for block in card.args["blocks"]
            if block["type"] == "actions"
            for element in block["elements"]
            if element["action_id"] == action_id
        )
        self._press(action_id, button["value"], ONCALL, card.response["ts"], user)

    def _press(self, action_id: str, value: str, channel: str, ts: str, user: str) -> None:
        payload = block_action(
            action_id, value, channel=channel, message_ts=ts, thread_ts=ts, user=user
        )
        assert self.send.interaction(payload).status_code == 200


@pytest.fixture
def deployment(
    tmp_path: Path, mock_slack: MockSlack, vllm_server: RunningServer
) -> Iterator[Deployment]:
    data = tmp_path / "data"
    env = operator_environment(data) | {
        "LLM_BASE_URL": vllm_server.base_url,
        "LLM_MAX_TOKENS": "48",
        # Greedy, as `evaluate model` answers: the bot then says what the gate judged.
        "LLM_TEMPERATURE": "0",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": mock_slack.api_url,
        "SLACK_NATIVE_STREAMING": "false",  # read from the placeholder's edits
        "ESCALATION_CHANNEL": ONCALL,
    }
    for step in (("db", "upgrade"), ("ingest", str(POLICIES / "load-approval.md"))):
        result = dispatchbot(*step, env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    # Local Qdrant admits one process per folder: the bot reads a copy of the same ingest,
    # so the command line (evaluate model) can open the original while the bot runs.
    shutil.copytree(data / "qdrant", tmp_path / "bot-qdrant")
    port = free_port()
    process = start_http_bot(
        port, env=env | {"QDRANT_PATH": str(tmp_path / "bot-qdrant")}, cwd=tmp_path
    )
    database = Database(f"sqlite:///{data / 'dispatchbot.db'}")
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", process)
        yield Deployment(
            mock_slack,
            SlackSender(f"http://127.0.0.1:{port}/slack/events"),
            env,
            tmp_path,
            database,
        )
    finally:
        stop(process)
        database.dispose()
        # The test server is shared by the whole session: leave it serving what it served.
        if ADAPTER in {model.id for model in list_served_models(vllm_server.base_url)}:
            unload_adapter(vllm_server.base_url, ADAPTER)


def _reason_values(view: dict[str, Any], reason: str) -> dict[str, Any]:
    inputs = [block for block in view["blocks"] if block["type"] == "input"]
    checkboxes = next(b for b in inputs if b["element"]["type"] == "checkboxes")
    note = next(b for b in inputs if b["element"]["type"] == "plain_text_input")
    wrong = [o for o in checkboxes["element"]["options"] if o["value"] == "wrong"]
    return {
        checkboxes["block_id"]: {
            checkboxes["element"]["action_id"]: {"type": "checkboxes", "selected_options": wrong}
        },
        note["block_id"]: {
            note["element"]["action_id"]: {"type": "plain_text_input", "value": reason}
        },
    }


def _eventually(read: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := read()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return value


def _labelled_set(path: Path) -> Path:
    rows = [
        {
            "id": f"approval-30k-{index}",
            "kind": "table",
            "question": question,
            "doc_id": "load-approval",
            "section": "Approval by weight",
            "facts": [[FACT]],
        }
        for index, question in enumerate([QUESTION, *PARAPHRASES])
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_a_persons_correction_becomes_the_adapters_answer_in_slack_and_rolls_back(
    deployment: Deployment, tmp_path: Path
) -> None:
    bot = deployment

    # 1. Asked in Slack: the base model answers.
    final, first = bot.ask(QUESTION)
    assert first.adapter is None
    assert FACT not in first.generated_text  # what the correction adds

    # 2. 👎 with a reason, then a person: claimed, answered in the thread, resolved.
    bot.vote_down(final)
    view = bot.slack.wait_for("views.open")[0].args["view"]
    reason = "It is the shift lead, and it should say how to reach them."
    submitted = view_submission(view, _reason_values(view, reason), user=ASKER)
    assert bot.send.interaction(submitted).status_code == 200

    def stored_reason() -> str | None:
        with bot.database.transaction() as session:
            return session.scalars(select(Feedback.reason)).one_or_none()

    assert _eventually(stored_reason) == reason
    bot.click(final, ASK_PERSON)
    card = bot.slack.wait_for("chat.postMessage", lambda c: c.args["channel"] == ONCALL)[0]
    bot.click_card(card, ESCALATION_CLAIM)
    claimed = bot.slack.wait_for(
        "chat.update",
        lambda c: c.args["ts"] == card.response["ts"] and ESCALATION_CLAIM not in str(c.args),
    )[0]
    with bot.database.transaction() as session:
        escalation = session.scalars(select(Escalation)).one()
        assert escalation.answer_id == first.id
        assert escalation.assignee == DISPATCHER
    thread_ts = bot.slack.calls_to("chat.postMessage")[0].args["thread_ts"]
    thread = {"thread_ts": thread_ts}
    bot.send.event(event_callback(message(CORRECTED, user=DISPATCHER, **thread)))
    bot.click_card(claimed, ESCALATION_RESOLVE)
    modal = bot.slack.wait_for("views.open", count=2)[1].args["view"]
    [field] = [b for b in modal["blocks"] if b.get("block_id") == RESOLUTION_BLOCK]
    resolution = {
        field["block_id"]: {
            field["element"]["action_id"]: {"type": "plain_text_input", "value": CORRECTED}
        }
    }
    bot.send.interaction(view_submission(modal, resolution, user=DISPATCHER))

    def resolved() -> str | None:
        with bot.database.transaction() as session:
            return session.scalars(select(Escalation.resolution)).one()

    assert _eventually(resolved) == CORRECTED

    # 3. Export (the resolution is the one row to learn), train, judge, promote.
    dataset = tmp_path / "dataset"
    manifest = bot.cli_json("dataset", "export", "--out", str(dataset), "--heldout-fraction", "0")
    assert manifest["counts"]["sft"]["train"] == 1
    [row] = [json.loads(line) for line in (dataset / "sft.train.jsonl").read_text().splitlines()]
    assert row["messages"][-1]["content"] == CORRECTED
    started = time.monotonic()
    trained = bot.cli_json(
        "train", "--data", str(dataset), "--name", ADAPTER, "--max-steps", "15",
        "--lr", "3e-3", "--batch-size", "1", "--out", str(tmp_path / "adapters" / ADAPTER),
    )  # fmt: skip
    print(f"trained in {time.monotonic() - started:.0f} s")
    assert Path(trained["adapter_path"], "adapter_config.json").is_file()
    started = time.monotonic()
    evaluated = bot.cli(
        "evaluate", "model", "--candidate", ADAPTER,
        "--file", str(_labelled_set(tmp_path / "approval.jsonl")), "--json",
    )  # fmt: skip
    print(f"evaluated in {time.monotonic() - started:.0f} s")
    evaluation = json.loads(evaluated.stdout)
    gate = GateResult.model_validate(evaluation["gate"])
    assert gate.passed, (gate.reasons, evaluation["answers"])
    assert evaluated.returncode == 0
    assert bot.cli_json("promote", ADAPTER)["promoted"] == ADAPTER

    # 4. Asked again in Slack, once the bot has read the promotion from the store.
    time.sleep(ACTIVE_REFRESH_S + 0.5)
    for text in (QUESTION, PARAPHRASES[0]):
        _, answer = bot.ask(text)
        assert answer.adapter == ADAPTER
        assert FACT in answer.generated_text, answer.generated_text

    # 5. Rolled back: the base model answers again.
    assert bot.cli_json("rollback")["promoted"] is None
    time.sleep(ACTIVE_REFRESH_S + 0.5)
    _, after = bot.ask(QUESTION)
    assert after.adapter is None
