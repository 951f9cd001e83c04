"""Questions the store could not take, kept on disk until it can: a small append-only journal.

A question the database refuses (down, read-only, out of connections) would otherwise be
lost. Its Slack event fields go to `<data dir>/spool/questions.jsonl`, written and fsync'd
before the user is told it was kept; bot/spool_worker.py answers it once the store takes
writes again and appends a `done` line. Lines are only ever appended (a crash can at most
tear the last one, which is skipped); the file is emptied once nothing in it is pending.

An flock on a lock file beside it serialises writers: the listeners and the worker each
open the spool, and so may a second process on the same data dir.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from store.settings import Settings
from store.types import utcnow

logger = logging.getLogger(__name__)

SPOOL_FILE = Path("spool") / "questions.jsonl"
# What question_from_event reads. Never the request body: it carries a verification token.
_EVENT_FIELDS = (
    "type",
    "subtype",
    "user",
    "bot_id",
    "text",
    "ts",
    "thread_ts",
    "channel",
    "channel_type",
)


@dataclass(frozen=True)
class SpooledQuestion:
    """A Slack message event the bot took but could not record, with what replaying it needs."""

    key: str  # the event id, which the event dedupe claims
    listener: str  # "app_mention" or "message": the listener that took it
    event: dict[str, Any]
    team_id: str
    bot_user_id: str | None
    request_id: str  # the id the user was shown and the logs carry
    spooled_at: str

    @classmethod
    def from_event(
        cls,
        event: dict[str, Any],
        *,
        event_id: str | None,
        team_id: str,
        bot_user_id: str | None,
        request_id: str,
    ) -> SpooledQuestion:
        fields = {name: event[name] for name in _EVENT_FIELDS if name in event}
        return cls(
            # Every Events API delivery has an id; the message's own place is the fallback.
            key=event_id or f"{event.get('channel')}:{event.get('ts')}",
            listener=str(event.get("type") or "message"),
            event=fields,
            team_id=team_id,
            bot_user_id=bot_user_id,
            request_id=request_id,
            spooled_at=utcnow().isoformat(),
        )


class QuestionSpool:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")

    @classmethod
    def of(cls, settings: Settings) -> QuestionSpool:
        """The spool in the data dir: each replica has its own."""
        return cls(settings.data_dir / SPOOL_FILE)

    def keep(self, question: SpooledQuestion) -> None:
        """Append the question unless it is already pending; on disk when this returns.

        Raises OSError when the disk refuses it too.
        """
        with self._locked():
            if question.key in self._read_pending():
                return
            self._append({"spooled": asdict(question)})

    def pending(self) -> list[SpooledQuestion]:
        """The questions still to answer, oldest first."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return []  # the worker asks every few seconds; most of the time this is all
        with self._locked():
            return list(self._read_pending().values())

    def done(self, key: str) -> None:
        """The question was answered (or seen to be answered): it leaves the spool."""
        with self._locked():
            self._append({"done": key})
            if not self._read_pending():
                with self.path.open("r+b") as journal:
                    journal.truncate(0)
                    os.fsync(journal.fileno())

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read_pending(self) -> dict[str, SpooledQuestion]:
        pending: dict[str, SpooledQuestion] = {}
        if not self.path.exists():
            return pending
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if "spooled" in record:
                    question = SpooledQuestion(**record["spooled"])
                    pending[question.key] = question
                else:
                    pending.pop(str(record["done"]), None)
            except (ValueError, TypeError, KeyError):
                # A write torn by a crash: it was never confirmed to anyone.
                logger.warning("skipped an unreadable line %d of %s", number, self.path)
        return pending

    def _append(self, record: dict[str, Any]) -> None:
        created = not self.path.exists()
        with self.path.open("ab") as journal:
            if journal.tell() > 0 and not _ends_with_newline(self.path):
                journal.write(b"\n")  # close a torn line, so this one stays readable
            journal.write(json.dumps(record, ensure_ascii=False).encode() + b"\n")
            journal.flush()
            os.fsync(journal.fileno())
        if created:
            _fsync_directory(self.path.parent)


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as journal:
        journal.seek(-1, os.SEEK_END)
        return journal.read(1) == b"\n"


def _fsync_directory(directory: Path) -> None:
    # A new file is durable only once its directory entry is.
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
