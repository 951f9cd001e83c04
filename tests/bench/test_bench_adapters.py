"""The adapters benchmark without its servers: each server it starts is launched with the
settings its table names, and each option's ratio is taken against the base model of the
same rounds. (A run starts four vLLMs at once: `make bench-adapters`, not the test suite.)"""

from __future__ import annotations

from pathlib import Path

import bench.adapter_serving as adapters
from bench.serving_concurrency import RequestTiming


def _flag(command: list[str], flag: str) -> str | None:
    return command[command.index(flag) + 1] if flag in command else None


def test_each_server_is_launched_as_its_row_says(tmp_path: Path) -> None:
    models = {"merged": tmp_path / "merged"}
    commands = {
        variant.key: adapters._server_config(variant, tmp_path, models).command()
        for variant in adapters.VARIANTS
    }

    # Today's: the settings' defaults, as `dispatchbot model serve` starts it.
    assert [_flag(commands["today"], f) for f in ("--max-loras", "--max-lora-rank")] == ["4", "16"]
    assert "--max-cpu-loras" not in commands["today"]
    narrowing = ("--max-loras", "--max-cpu-loras", "--max-lora-rank")
    for narrowed in ("one-lora", "attention-only"):
        assert [_flag(commands[narrowed], flag) for flag in narrowing] == ["1", "1", "8"]
    attention_only = commands["attention-only"]
    modules = attention_only[attention_only.index("--lora-target-modules") + 1 :]
    assert modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert "--lora-target-modules" not in commands["one-lora"]
    assert "--enable-lora" not in commands["merged"]
    assert _flag(commands["merged"], "--model") == str(tmp_path / "merged")
    assert {option.server for option in adapters.OPTIONS} == set(commands)


def test_ratios_are_against_the_base_model_at_the_same_concurrency() -> None:
    def cell(option: adapters.Option, level: int, seconds: float) -> adapters._Cell:
        timing = RequestTiming(ttft_ms=100, latency_ms=seconds * 1000, prompt_tokens=900,
                               completion_tokens=64)  # fmt: skip
        return adapters._Cell(option, level, [timing, timing])

    base, merged = adapters.REFERENCE, adapters.OPTIONS[-1]
    cells = [cell(base, 1, 4.0), cell(merged, 1, 3.0), cell(base, 4, 6.0), cell(merged, 4, 9.0)]

    findings = adapters._findings(cells)

    assert findings == {
        "merged r8: answer time vs base at 1 concurrent": 0.75,
        "merged r8: answer time vs base at 4 concurrent": 1.5,
    }
    assert [row[-1] for row in adapters._rows(cells)] == [1.0, 0.75, 1.0, 1.5]
