"""The one stream type of answers: progress as it happens, then a result.

The model client's stream carries text chunks then a GenerationResult; the assistant's
carries text and steps (the sources found) then the recorded answer. Both are read the
same way: iterate for text, `events()` for everything before the result, `result` after.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Generic, TypeVar, cast

ProgressT = TypeVar("ProgressT")
ResultT = TypeVar("ResultT")


class ResultStream(Generic[ProgressT, ResultT]):
    """Items from `items` up to the one of `result_type`, which becomes `result`.

    `stop()` sets `stopped`, which a producer that can end early checks between items (the
    model client then closes its request, and vLLM aborts a request whose client has gone).
    """

    def __init__(
        self,
        items: Iterator[ProgressT | ResultT],
        result_type: type[ResultT],
        stopped: threading.Event | None = None,
    ) -> None:
        self._items = items
        self._result_type = result_type
        self._result: ResultT | None = None
        self._stopped = stopped or threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def events(self) -> Iterator[ProgressT]:
        for item in self._items:
            if isinstance(item, self._result_type):
                self._result = item
            else:
                # Not the result, so progress: a type checker cannot narrow a union of type
                # variables by what an item is not.
                yield cast(ProgressT, item)

    def __iter__(self) -> Iterator[str]:
        """The text alone, in order."""
        for item in self.events():
            if isinstance(item, str):
                yield item

    @property
    def result(self) -> ResultT:
        if self._result is None:
            raise RuntimeError("the stream has not been read to its end")
        return self._result
