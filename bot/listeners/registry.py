"""The one way a listener is registered: acknowledged at once, its work run lazily inside
`reported`, so no failure is silent.

Bolt logs a lazy listener that raised as one line without a traceback, and tells nobody.
Here a failure is logged with its traceback and the request id, and the person who clicked
or wrote is told privately what failed and the reference to quote (bot/notices.py).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from slack_bolt import Ack, App, BoltContext, BoltRequest
from slack_bolt.kwargs_injection import build_required_kwargs
from slack_sdk import WebClient

from bot.logs import bind_request_id
from bot.middleware import REQUEST_ID, new_request_id
from bot.notices import Recipient, failure_notice
from store.errors import DispatchbotError, ErrorKind

logger = logging.getLogger(__name__)

Work = Callable[..., None]


def ack_now(ack: Ack) -> None:
    """Acknowledge at once; the work runs afterwards in a lazy listener (Slack waits 3 s)."""
    ack()


class TriggerKind(StrEnum):
    EVENT = "event"
    ACTION = "action"
    VIEW = "view"


@dataclass(frozen=True)
class Trigger:
    """What starts a listener (an event type, an action id, a view's callback id), and what
    it does, in words a failure notice can use ("record your vote")."""

    kind: TriggerKind
    name: str
    doing: str


@dataclass
class Listeners:
    """Registers listeners on `app`, and remembers every trigger it registered."""

    app: App
    triggers: list[Trigger] = field(default_factory=list)

    def event(self, event_type: str, work: Work, *, doing: str) -> None:
        self._register(Trigger(TriggerKind.EVENT, event_type, doing), work, ack_now)

    def action(self, action_id: str, work: Work, *, doing: str) -> None:
        self._register(Trigger(TriggerKind.ACTION, action_id, doing), work, ack_now)

    def view(
        self, callback_id: str, work: Work, *, doing: str, ack: Callable[..., None] = ack_now
    ) -> None:
        """`ack` may answer the submission itself (errors shown in the modal)."""
        self._register(Trigger(TriggerKind.VIEW, callback_id, doing), work, ack)

    def _register(self, trigger: Trigger, work: Work, ack: Callable[..., None]) -> None:
        registrar = {
            TriggerKind.EVENT: self.app.event,
            TriggerKind.ACTION: self.app.action,
            TriggerKind.VIEW: self.app.view,
        }[trigger.kind]
        registrar(trigger.name)(ack=ack, lazy=[reported(work, trigger.doing)])
        self.triggers.append(trigger)


def reported(work: Work, doing: str) -> Work:
    """`work` as a lazy listener whose failures are logged and told to the person.

    Bolt hands a listener the arguments its parameters name; the wrapper asks for the
    request and builds `work`'s arguments from it as Bolt would.
    """
    wanted = inspect.getfullargspec(work).args

    def listener(request: BoltRequest) -> None:
        context = request.context
        reference = str(context.get(REQUEST_ID) or new_request_id())
        bind_request_id(reference)
        try:
            work(
                **build_required_kwargs(
                    logger=logger,
                    required_arg_names=wanted,
                    request=request,
                    response=None,
                    this_func=work,
                )
            )
        except Exception as error:
            report_failure(error, doing, request.body, context, reference)

    # Bolt tells lazy listeners apart by name.
    listener.__name__ = listener.__qualname__ = work.__name__
    return listener


def report_failure(
    error: BaseException,
    doing: str,
    body: dict[str, Any],
    context: BoltContext,
    reference: str,
) -> None:
    """Log `error` with its traceback, then tell the person privately; telling them may
    fail too (Slack may be what failed), which is logged and goes no further. A refusal (a
    claim on someone else's question) is no fault: logged in a line, and told; nor is a
    payload that is not what Slack sends (bad input), logged as a warning."""
    kind = error.kind if isinstance(error, DispatchbotError) else None
    if kind is ErrorKind.REFUSED:
        logger.info("refused to %s request=%s: %s", doing, reference, error)
    elif kind is ErrorKind.BAD_INPUT:
        logger.warning("could not %s request=%s: %s", doing, reference, error)
    else:
        logger.error(
            "could not %s request=%s: %s", doing, reference, type(error).__name__, exc_info=error
        )
    client = context.client
    recipient = Recipient.of(client, body) if isinstance(client, WebClient) else None
    if recipient is None:
        return
    try:
        recipient.tell(failure_notice(error, doing, reference))
    except Exception:
        logger.exception("could not tell user=%s of request=%s", recipient.user_id, reference)


def app_error_handler(error: Exception, body: dict[str, Any], context: BoltContext) -> None:
    """What Bolt calls for a failure outside the lazy work: a middleware, or an ack that
    answers a modal itself."""
    reference = str(context.get(REQUEST_ID) or new_request_id())
    report_failure(error, "handle that", body, context, reference)
