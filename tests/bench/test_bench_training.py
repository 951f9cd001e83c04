"""The training benchmark at its tiniest: a real export of four seed rows over one policy,
then one LoRA step of one row on this CPU, reported as a reader relies on."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
from bench_support import run_part

import bench.training_speed as training_speed
from bench.report import REPO_ROOT, write_result
from serving.training import TrainingConfig

# transformers 5 renamed options that TRL 1.x and PEFT still use; nothing for us to change.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*is deprecated and will be removed in v6"),
    pytest.mark.slow,  # a benchmark run: a training step on CPU
]
# The first seed rows all cite this policy; ingesting it alone keeps the export to seconds.
POLICY = REPO_ROOT / "examples" / "policies" / "load-approval.md"


def test_one_step_on_the_exported_seed(tmp_path: Path) -> None:
    # Seed prompts hold five sources (800-1,450 tokens): a shorter --max-seq-len would cut
    # every answer off, and the trainer would have no row left.
    result = run_part(
        training_speed,
        [
            "--steps",
            "1",
            "--batch-size",
            "1",
            "--max-seq-len",
            "1536",
            "--seed-rows",
            "4",
            "--device",
            "cpu",
            "--policies",
            str(POLICY),
        ],
    )

    (table,) = result.tables
    [row] = [dict(zip(table.columns, values, strict=True)) for values in table.rows]
    assert (row["device"], row["steps"], row["batch"], row["max seq len"]) == ("cpu", 1, 1, 1536)
    assert row["dtype"] in ("bf16", "fp32")
    assert 1 <= row["train rows"] <= 4
    for column in table.columns[6:]:
        if column not in ("later steps p50 s", "peak GPU GiB"):
            assert 0 < row[column] < math.inf, column
    assert math.isnan(row["later steps p50 s"])  # one step: nothing after the first
    assert math.isnan(row["peak GPU GiB"])
    assert row["first step s"] <= row["train s"]
    assert row["s/step"] == pytest.approx(1 / row["steps/s"])
    assert 1 < row["adapter MiB"] < 20  # the adapter was written (7.4 MiB at r=16)
    assert result.findings["steps"] == 1
    assert result.findings["peak_gpu_gib"] is None
    assert 0 < result.findings["mean_tokens_per_row"] <= 1536
    assert result.config["seed_rows_exported"] == 4
    assert result.config["rank"] == TrainingConfig.rank

    written = json.loads(write_result(result, time.time(), tmp_path).read_text())
    assert written["findings"]["steps_per_s"] == result.findings["steps_per_s"]
    assert written["tables"][0]["columns"] == list(table.columns)
    assert written["config"]["dataset_hash"] == result.config["dataset_hash"]
