"""dispatchbot's own errors: each carries a message written for the person who meets it
(an operator at a terminal, or someone in Slack), and a kind that decides what happens next.

The kind, not the class, decides the exit status of a command (bot/commands/common.py) and
how Slack words the failure (bot/listener_errors.py), so a new error needs no new handler.
Errors that mean a bug (a broken precondition) stay ValueError, TypeError and the like.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorKind(StrEnum):
    BAD_INPUT = "bad input"  # the input or the configuration has to change
    UNAVAILABLE = "unavailable"  # something dispatchbot depends on is down: try again later
    REFUSED = "refused"  # understood and declined: the state or a rule does not allow it


class DispatchbotError(Exception):
    """An error whose message can be shown as it is: it says what failed and what to do."""

    kind: ErrorKind = ErrorKind.BAD_INPUT

    def __init__(self, message: str, *, kind: ErrorKind | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind


class BadInput(DispatchbotError):
    kind = ErrorKind.BAD_INPUT


class Unavailable(DispatchbotError):
    kind = ErrorKind.UNAVAILABLE


class Refused(DispatchbotError):
    kind = ErrorKind.REFUSED


class NotOnRecord(BadInput, LookupError):
    """The store holds no row by that id or name (it may have been purged)."""


class NameTaken(Refused):
    """A name that must be unique is in use already."""
