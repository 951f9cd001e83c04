"""What is measured beside the gate, read and asked the way a judgement does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving.evaluation import (
    EvaluationError,
    heldout_items,
    pinned_client,
    rouge_l,
    valid_citations,
)
from store.settings import Settings


def test_rouge_l_is_the_longest_common_subsequence_f1() -> None:
    assert rouge_l("the shift lead approves it", "the shift lead approves it") == 1.0
    assert rouge_l("lead shift the", "the shift lead") == pytest.approx(1 / 3)
    assert rouge_l("", "anything") == 0.0
    assert rouge_l("Call 1-800-555-0142 now", "call 1-800-555-0142") > 0.7


def test_citations_must_point_at_given_sources() -> None:
    assert valid_citations("Approved by the lead [1] and logged [2].", 2)
    assert valid_citations("No citation at all.", 0)
    assert not valid_citations("Per policy [3].", 2)
    assert not valid_citations("Per policy [0].", 2)


def test_held_out_rows_give_the_prompt_and_the_approved_answer(tmp_path: Path) -> None:
    prompt = [{"role": "system", "content": "rules"}, {"role": "user", "content": "q"}]
    row = {"messages": [*prompt, {"role": "assistant", "content": "The lead approves [1]."}]}
    (tmp_path / "sft.heldout.jsonl").write_text(json.dumps(row) + "\n\n", encoding="utf-8")

    [item] = heldout_items(tmp_path)

    assert (item.id, item.messages, item.reference) == (
        "heldout-1",
        prompt,
        row["messages"][-1]["content"],
    )
    with pytest.raises(EvaluationError, match="dataset export"):
        heldout_items(tmp_path / "missing")
    (tmp_path / "sft.heldout.jsonl").write_text('{"prompt": "q"}\n', encoding="utf-8")
    with pytest.raises(EvaluationError, match=r"sft\.heldout\.jsonl:1 is not a held-out SFT row"):
        heldout_items(tmp_path)


def test_a_judged_version_is_asked_whatever_the_routes_say() -> None:
    settings = Settings(_env_file=None, adapter_routes={"dispatch": "other", "C1": "other"})

    for adapter in ("acme-v2", None):
        router = pinned_client(settings, adapter).router
        for route in (router.route(), router.route(channel="C1", task_kind="dispatch")):
            assert route.adapter == adapter
