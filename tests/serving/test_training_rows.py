"""The export's rows and manifest read back: what the exporter writes reads as it was, and a
line that is not a row says which file, which line, what is wrong and to export again."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from serving.training_rows import (
    ChatMessage,
    DatasetFileError,
    DatasetManifest,
    DpoRow,
    KtoRow,
    SftRow,
    read_manifest,
    read_rows,
)

PROMPT = [
    {"role": "system", "content": "Answer from policy. Cite sources as [n]."},
    {"role": "user", "content": "Who approves a 30,000 lb load? – the dock’s question"},
]
ANSWER = [{"role": "assistant", "content": "The shift lead approves it [1]."}]
SFT = {"messages": [*PROMPT, *ANSWER], "conversation": "3f2a9c0d1e4b5a67"}
KTO = {"prompt": PROMPT, "completion": ANSWER, "label": False, "conversation": "c1"}
DPO = {
    "prompt": PROMPT,
    "chosen": ANSWER,
    "rejected": [{"role": "assistant", "content": "Nobody."}],
    "conversation": "c1",
}
MANIFEST = {
    "created_at": "2026-03-01T09:30:00+00:00",
    "database": "sqlite:///var/dispatchbot.db",
    "counts": {
        "sft": {"train": 1, "heldout": 0},
        "kto": {"train": 1, "heldout": 0},
        "dpo": {"train": 1, "heldout": 0},
    },
    "skipped": {"no feedback": 2},
    "redactions": 1,
    "heldout_fraction": 0.1,
    "seed_rows": 0,
    "content_hash": "ab" * 32,
    "format": 1,
}


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def test_rows_written_by_the_exporter_read_back_equal(tmp_path: Path) -> None:
    rows = [
        SftRow.of([ChatMessage(**m) for m in PROMPT], ANSWER[0]["content"], "c1"),
        SftRow.model_validate(SFT),
    ]
    path = tmp_path / "sft.train.jsonl"
    path.write_text("".join(row.model_dump_json() + "\n" for row in rows), encoding="utf-8")

    assert read_rows(path, SftRow) == rows
    assert json.loads(path.read_text("utf-8").splitlines()[1]) == SFT


@pytest.mark.parametrize(
    ("model", "row", "for_trainer"),
    [
        (SftRow, SFT, {"prompt": PROMPT, "completion": ANSWER}),
        (KtoRow, KTO, {"prompt": PROMPT, "completion": ANSWER, "label": False}),
        (DpoRow, DPO, {"prompt": PROMPT, "chosen": ANSWER, "rejected": DPO["rejected"]}),
    ],
)
def test_files_in_the_earlier_spacing_read_and_give_the_trainer_its_form(
    tmp_path: Path, model: Any, row: dict[str, Any], for_trainer: dict[str, Any]
) -> None:
    # json.dumps' spacing, non-ASCII as written, a blank line and a U+2028 inside a message.
    unusual = json.loads(json.dumps(row))
    unusual["prompt" if "prompt" in unusual else "messages"][1]["content"] += "\u2028more"
    path = write_lines(
        tmp_path / "rows.jsonl",
        json.dumps(row, ensure_ascii=False),
        "",
        json.dumps(unusual, ensure_ascii=False),
    )

    first, second = read_rows(path, model)

    assert first.for_trainer() == for_trainer
    assert first.conversation == row["conversation"]
    assert second.model_dump(mode="json") == unusual


def test_a_row_after_a_prompt_and_with_its_final_answer_apart() -> None:
    follow_up = [*PROMPT, *ANSWER, {"role": "user", "content": "And 44,000 lb?"}]
    row = SftRow.model_validate({"messages": [*follow_up, *ANSWER], "conversation": "c"})

    assert row.for_trainer() == {"prompt": follow_up, "completion": ANSWER}


@pytest.mark.parametrize(
    ("model", "line", "problem"),
    [
        (SftRow, "{not json", r"sft\.jsonl:3 is not JSON \(key must be a string"),
        (SftRow, json.dumps([SFT]), r"sft\.jsonl:3 is not a JSON object"),
        (
            SftRow,
            json.dumps({"messages": SFT["messages"]}),
            r"sft\.jsonl:3: conversation is missing",
        ),
        (
            SftRow,
            json.dumps({**SFT, "messages": PROMPT}),
            r"sft\.jsonl:3: messages must end with the assistant's answer after a prompt",
        ),
        (
            SftRow,
            json.dumps({**SFT, "messages": [{"role": "user"}, *ANSWER]}),
            r"sft\.jsonl:3: messages\[0\] is not a \{role, content\} message .*'role': 'user'",
        ),
        (
            SftRow,
            json.dumps({**SFT, "messages": [{"role": "tool", "content": "x"}, *ANSWER]}),
            r"sft\.jsonl:3: messages\[0\] is not a \{role, content\} message",
        ),
        (SftRow, json.dumps({**SFT, "id": 7}), r"sft\.jsonl:3: id is not a field of this file"),
        (KtoRow, json.dumps({**KTO, "label": "yes"}), r"kto\.jsonl:3: label: .*boolean"),
        (KtoRow, json.dumps({**KTO, "prompt": []}), r"kto\.jsonl:3: prompt holds no messages"),
        (
            KtoRow,
            json.dumps({**KTO, "completion": PROMPT}),
            r"kto\.jsonl:3: completion is not one assistant message",
        ),
        (
            DpoRow,
            json.dumps({**DPO, "chosen": [*ANSWER, *ANSWER]}),
            r"dpo\.jsonl:3: chosen is not one assistant message",
        ),
        (DpoRow, json.dumps({**DPO, "rejected": "No."}), r"dpo\.jsonl:3: rejected: .*array"),
    ],
)
def test_a_bad_line_names_its_file_and_number(
    tmp_path: Path, model: Any, line: str, problem: str
) -> None:
    good = {SftRow: SFT, KtoRow: KTO, DpoRow: DPO}[model]
    name = f"{model.__name__[:3].lower()}.jsonl"
    path = write_lines(tmp_path / name, json.dumps(good), "", line, json.dumps(good))

    with pytest.raises(DatasetFileError, match=problem) as raised:
        read_rows(path, model)

    message = str(raised.value)
    assert message.startswith(f"{path}:3")
    assert message.endswith("; export again")
    assert "\n" not in message


def test_a_missing_file_says_to_export_again(tmp_path: Path) -> None:
    with pytest.raises(DatasetFileError, match=r"has no kto\.train\.jsonl; export again"):
        read_rows(tmp_path / "kto.train.jsonl", KtoRow)


def test_the_manifest_reads_back_as_written(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST, indent=2), encoding="utf-8")

    manifest = read_manifest(tmp_path)

    assert manifest.content_hash == "ab" * 32
    assert manifest.created_at == datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    assert manifest.counts["kto"] == {"train": 1, "heldout": 0}
    assert DatasetManifest.model_validate_json(manifest.model_dump_json()) == manifest


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"format": 2}, r"format is 2, and this dispatchbot reads format 1; export again"),
        ({"content_hash": None}, r"content_hash is missing; export again"),
        ({"content_hash": "abc"}, r"content_hash: String should match pattern"),
        ({"created_at": "2026-03-01T09:30:00"}, r"created_at: .*timezone"),
        ({"heldout_fraction": 1.0}, r"heldout_fraction: .*less than 1"),
        ({"counts": {"sft": {"train": -1}}}, r"counts\.sft\.train: .*greater than or equal"),
        ({"notes": "mine"}, r"notes is not a field of this file"),
    ],
)
def test_a_bad_manifest_says_what_is_wrong(
    tmp_path: Path, change: dict[str, Any], problem: str
) -> None:
    manifest = {key: value for key, value in {**MANIFEST, **change}.items() if value is not None}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")

    with pytest.raises(DatasetFileError, match=problem) as raised:
        read_manifest(tmp_path)

    assert str(raised.value).startswith(str(tmp_path / "manifest.json"))


def test_a_folder_without_a_manifest_is_not_an_export(tmp_path: Path) -> None:
    with pytest.raises(DatasetFileError, match="no dataset folder at"):
        read_manifest(tmp_path / "missing")
    with pytest.raises(DatasetFileError, match=r"has no manifest\.json, so it is not a dataset"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DatasetFileError, match=r"manifest\.json is not JSON"):
        read_manifest(tmp_path)
