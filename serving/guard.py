"""An answer that repeats the system prompt is replaced before it is shown or stored.

The system prompt tells the model never to reveal its rules, but a small model can be talked
into it; this check holds whatever the model does. An answer "reveals" the rules when it
carries a run of REVEALING_RUN_WORDS consecutive words of SYSTEM_PROMPT, compared as words
(case, punctuation, Markdown and citation marks ignored), so reformatting does not hide it.
Shorter runs are ordinary policy talk ("ask a dispatcher or supervisor").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator

from serving.prompts import SYSTEM_PROMPT

REVEALING_RUN_WORDS = 8
PROMPT_WITHHELD = (
    "I can't share how I'm set up. Ask me about a dispatch rule or a service ticket and I'll "
    "answer from the policy library."
)

_CITATION_MARK = re.compile(r"\[\d{1,2}\]")
_WORD = re.compile(r"[^\W_]+")


def _words(text: str) -> list[str]:
    # NFKC folds look-alikes (full-width letters, ligatures) into the plain ones.
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _WORD.findall(_CITATION_MARK.sub(" ", folded))


def _runs(words: list[str], start: int = 0) -> Iterator[tuple[str, ...]]:
    for index in range(start, len(words) - REVEALING_RUN_WORDS + 1):
        yield tuple(words[index : index + REVEALING_RUN_WORDS])


_SYSTEM_PROMPT_RUNS = frozenset(_runs(_words(SYSTEM_PROMPT)))


def reveals_system_prompt(text: str) -> bool:
    """Whether `text` repeats REVEALING_RUN_WORDS consecutive words of the system prompt."""
    return any(run in _SYSTEM_PROMPT_RUNS for run in _runs(_words(text)))


def until_system_prompt(chunks: Iterable[str]) -> Iterator[str]:
    """The streamed chunks up to the one that completes a run of the system prompt.

    Streaming cannot take back what was shown (a terminal, Slack's native streams), so the
    stream goes quiet there: at most the first words of the run get out before the final
    text replaces the answer. The rest is still read, since the generation's result comes
    with its end. Only the runs that end in the newest words are looked up.
    """
    text = ""
    settled = 0  # the words before this one are complete and every run they end was checked
    revealing = False
    for chunk in chunks:
        if revealing:
            continue
        text += chunk
        words = _words(text)
        start = max(0, settled - REVEALING_RUN_WORDS + 1)
        if any(run in _SYSTEM_PROMPT_RUNS for run in _runs(words, start)):
            revealing = True
            continue
        settled = max(0, len(words) - 1)  # the last word may go on in the next chunk
        yield chunk
