"""The files of a dataset export, as one set of types: `serving.dataset_export` writes them,
`serving.training` reads them back.

An export folder holds `manifest.json` and six JSON Lines files, `<kind>.<split>.jsonl`, one
row a line in TRL's conversational formats:

- SFT: `{"messages": [...prompt, answer], "conversation"}`
- KTO: `{"prompt": [...], "completion": [answer], "label": true|false, "conversation"}`
- DPO: `{"prompt": [...], "chosen": [answer], "rejected": [answer], "conversation"}`

`conversation` is an opaque thread id: rows of one thread share it, and the held-out split
keeps them on one side. A file that does not read says which file, which line and what to do.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    NonNegativeInt,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from store.errors import BadInput

FORMAT = 1
MANIFEST = "manifest.json"
EXPORT_AGAIN = "export again"


class RowKind(StrEnum):
    SFT = "sft"
    KTO = "kto"
    DPO = "dpo"


class Split(StrEnum):
    TRAIN = "train"
    HELDOUT = "heldout"


def data_file(kind: str, split: Split) -> str:
    """The name of the file of one kind of row and one side of the split."""
    return f"{kind}.{split}.jsonl"


# The six files in the order the content hash reads them.
DATA_FILES = tuple(data_file(kind, split) for kind in RowKind for split in Split)


class DatasetFileError(BadInput):
    """An export's file is missing or does not read as the exporter writes it; the message
    says which file and line, and what to do."""


class ChatMessage(BaseModel):
    """One message of a chat prompt or answer, as the model is sent or writes it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str

    @model_validator(mode="wrap")
    @classmethod
    def _one_message(cls, value: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        # One sentence for any way a message is wrong, showing the message, rather than one
        # error per missing or extra key.
        try:
            return handler(value)
        except ValidationError:
            raise ValueError(
                "is not a {role, content} message with role system, user or assistant: "
                f"{str(value)[:80]!r}"
            ) from None

    @classmethod
    def answer(cls, text: str) -> tuple[ChatMessage]:
        """An answer as rows hold it: one assistant message."""
        return (cls(role="assistant", content=text),)


def _has_messages(messages: tuple[ChatMessage, ...]) -> tuple[ChatMessage, ...]:
    if not messages:
        raise ValueError("holds no messages")
    return messages


def _is_one_assistant_message(messages: tuple[ChatMessage, ...]) -> tuple[ChatMessage, ...]:
    if len(messages) != 1 or messages[0].role != "assistant":
        raise ValueError("is not one assistant message")
    return messages


Messages = Annotated[tuple[ChatMessage, ...], AfterValidator(_has_messages)]
Answer = Annotated[tuple[ChatMessage, ...], AfterValidator(_is_one_assistant_message)]


def _transformed(
    messages: Sequence[ChatMessage], transform: Callable[[str], str]
) -> tuple[ChatMessage, ...]:
    return tuple(
        message.model_copy(update={"content": transform(message.content)}) for message in messages
    )


class _TrainingRow(BaseModel):
    # Each row declares its fields itself, in the order they have on disk.
    model_config = ConfigDict(frozen=True, extra="forbid")

    def for_trainer(self) -> dict[str, Any]:
        """The row as TRL's trainer of its method takes it: without the conversation id."""
        return self.model_dump(mode="json", exclude={"conversation"})

    @abstractmethod
    def with_contents(self, transform: Callable[[str], str]) -> Self:
        """The row with `transform` applied to the content of every message; the
        conversation id is not text anybody wrote and stays."""


class SftRow(_TrainingRow):
    """A good answer after the exact prompt the model saw."""

    messages: Messages
    conversation: str

    @field_validator("messages")
    @classmethod
    def _ends_with_the_answer(cls, messages: tuple[ChatMessage, ...]) -> tuple[ChatMessage, ...]:
        if len(messages) < 2 or messages[-1].role != "assistant":
            raise ValueError("must end with the assistant's answer after a prompt")
        return messages

    @classmethod
    def of(cls, prompt: Sequence[ChatMessage], answer: str, conversation: str) -> SftRow:
        return cls(messages=(*prompt, *ChatMessage.answer(answer)), conversation=conversation)

    @property
    def prompt(self) -> tuple[ChatMessage, ...]:
        return self.messages[:-1]

    @property
    def completion(self) -> tuple[ChatMessage, ...]:
        return self.messages[-1:]

    def for_trainer(self) -> dict[str, Any]:
        # Prompt and completion apart, so the loss counts only the final answer's tokens.
        messages = self.model_dump(mode="json")["messages"]
        return {"prompt": messages[:-1], "completion": messages[-1:]}

    def with_contents(self, transform: Callable[[str], str]) -> Self:
        return self.model_copy(update={"messages": _transformed(self.messages, transform)})


class KtoRow(_TrainingRow):
    """An answer people rated: `label` is true for net 👍, false for net 👎."""

    prompt: Messages
    completion: Answer
    label: StrictBool
    conversation: str

    @classmethod
    def of(
        cls, prompt: Sequence[ChatMessage], answer: str, label: bool, conversation: str
    ) -> KtoRow:
        return cls(
            prompt=tuple(prompt),
            completion=ChatMessage.answer(answer),
            label=label,
            conversation=conversation,
        )

    def with_contents(self, transform: Callable[[str], str]) -> Self:
        return self.model_copy(
            update={
                "prompt": _transformed(self.prompt, transform),
                "completion": _transformed(self.completion, transform),
            }
        )


class DpoRow(_TrainingRow):
    """A person's answer (chosen) preferred over the 👎 answer (rejected) to one prompt."""

    prompt: Messages
    chosen: Answer
    rejected: Answer
    conversation: str

    @classmethod
    def of(
        cls, prompt: Sequence[ChatMessage], chosen: str, rejected: str, conversation: str
    ) -> DpoRow:
        return cls(
            prompt=tuple(prompt),
            chosen=ChatMessage.answer(chosen),
            rejected=ChatMessage.answer(rejected),
            conversation=conversation,
        )

    def with_contents(self, transform: Callable[[str], str]) -> Self:
        return self.model_copy(
            update={
                "prompt": _transformed(self.prompt, transform),
                "chosen": _transformed(self.chosen, transform),
                "rejected": _transformed(self.rejected, transform),
            }
        )


TrainingRow = SftRow | KtoRow | DpoRow
ROW_MODELS: dict[RowKind, type[TrainingRow]] = {
    RowKind.SFT: SftRow,
    RowKind.KTO: KtoRow,
    RowKind.DPO: DpoRow,
}


class DatasetManifest(BaseModel):
    """manifest.json: what an export holds and how it was made. Written last, so a folder
    with a manifest is a complete export."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    created_at: AwareDatetime
    database: str  # its URL without the password
    counts: dict[str, dict[str, NonNegativeInt]]  # rows by kind, then by split
    skipped: dict[str, NonNegativeInt]  # what stayed out, by reason
    redactions: NonNegativeInt
    heldout_fraction: float = Field(ge=0, lt=1)
    seed_rows: NonNegativeInt
    content_hash: str = Field(pattern=r"^[0-9a-f]{64}$")  # see dataset_export.content_hash
    format: int = FORMAT

    @field_validator("format")
    @classmethod
    def _readable_format(cls, version: int) -> int:
        if version != FORMAT:
            raise ValueError(f"is {version}, and this dispatchbot reads format {FORMAT}")
        return version


# Reading


_RowT = TypeVar("_RowT", bound=_TrainingRow)


def read_manifest(directory: Path) -> DatasetManifest:
    """The manifest of an export folder, checked."""
    if not directory.is_dir():
        raise DatasetFileError(
            f"no dataset folder at {directory}; write one with "
            f"`dispatchbot dataset export --out {directory}`"
        )
    path = directory / MANIFEST
    if not path.is_file():
        raise DatasetFileError(
            f"{directory} has no {MANIFEST}, so it is not a dataset export; "
            "write one with `dispatchbot dataset export`"
        )
    try:
        text = path.read_bytes()
    except OSError as error:
        raise DatasetFileError(f"cannot read {path}: {error.strerror}") from error
    try:
        return DatasetManifest.model_validate_json(text)
    except ValidationError as error:
        raise DatasetFileError(_problem(str(path), error)) from None


def read_rows(path: Path, model: type[_RowT]) -> list[_RowT]:
    """Every row of one JSON Lines file of an export; the first bad line is reported with
    the file and its number."""
    try:
        # Bytes split at line ends only: a U+2028 inside a message is not a line end.
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        raise DatasetFileError(f"{path.parent} has no {path.name}; {EXPORT_AGAIN}") from None
    except OSError as error:
        raise DatasetFileError(f"cannot read {path}: {error.strerror}") from error
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(model.model_validate_json(line))
        except ValidationError as error:
            raise DatasetFileError(_problem(f"{path}:{number}", error)) from None
    return rows


def _problem(where: str, error: ValidationError) -> str:
    """One line for the first thing wrong: where, which field, what, and what to do."""
    first = error.errors(include_url=False)[0]
    field = _field_name(first)
    if first["type"] == "json_invalid":
        problem = f" is not JSON ({first['ctx']['error']})"
    elif first["type"] == "model_type" and not field:
        problem = " is not a JSON object"
    elif first["type"] == "value_error":  # our validators' texts follow the field's name
        problem = f": {f'{field} ' if field else ''}{first['ctx']['error']}"
    elif first["type"] == "missing":
        problem = f": {field} is missing"
    elif first["type"] == "extra_forbidden":
        problem = f": {field} is not a field of this file"
    else:
        problem = f": {field}: {first['msg']}"
    return f"{where}{problem}; {EXPORT_AGAIN}"


def _field_name(error: ErrorDetails) -> str:
    """`messages[2]` or `counts.sft` from pydantic's location."""
    name = ""
    for part in error["loc"]:
        name += f"[{part}]" if isinstance(part, int) else f".{part}" if name else str(part)
    return name
