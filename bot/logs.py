"""Log records as readable lines or as JSON objects, each carrying the request it belongs to.

The request id is the reference an error message in Slack quotes, so a user's screenshot
leads straight to the log lines of their request. It lives in a context variable: the
middleware sets it when a request arrives, and the answer executor copies the context into
the worker thread that runs the listener (see bot/app.py).

Personal data (emails, phone numbers, card numbers, SSNs) is redacted from every record,
tracebacks included. The code logs metadata, not message text; this is the second line, for
what slips through: a library's error that quotes a failed SQL statement's parameters.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal, TextIO

from serving.redaction import redact

LogFormat = Literal["text", "json"]

current_request_id: ContextVar[str | None] = ContextVar("dispatchbot_request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(request_tag)s: %(message)s"


def bind_request_id(request_id: str | None) -> None:
    """Log records made from here on in this context (and in copies of it) carry the id."""
    current_request_id.set(request_id)


class RequestIdFilter(logging.Filter):
    """Stamps every record with the request id in effect where it was made."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = current_request_id.get()
        record.request_id = request_id
        record.request_tag = f" [request={request_id}]" if request_id else ""
        return True


class RedactingFilter(logging.Filter):
    """Replaces personal data in a record's message and traceback before any handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True  # a broken format string: the handler reports it, as logging does
        redacted, replaced = redact(message)
        if replaced:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            # Formatters reuse a traceback already rendered into exc_text.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)[0]
        if record.stack_info:
            record.stack_info = redact(record.stack_info)[0]
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log collectors (Loki, CloudWatch, Datadog) parse as is."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


def log_handler(log_format: LogFormat, stream: TextIO | None = None) -> logging.Handler:
    """A stderr handler (or one on `stream`) in `log_format`, stamping request ids and
    redacting personal data."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(RedactingFilter())
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    return handler


def configure_logging(level: int | str, log_format: LogFormat) -> None:
    """Log to stderr in `log_format` at `level`.

    Like logging.basicConfig, a root logger that already has handlers keeps them: a program
    that runs dispatchbot in-process (a test runner, the benchmarks) chose its own format.
    """
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(log_handler(log_format))
    root.setLevel(level)
