"""Promotion, canaries and rollback as the store records them, and how routing follows."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.model_gate import GateResult
from serving.promotion import PromotedAdapter, PromotionError, active_versions, promote, rollback
from serving.routing import AdapterRouter
from store import repository
from store.database import Database
from store.errors import NameTaken
from store.models import ModelVersion, ModelVersionStatus

PASSED = {
    "evaluation": {
        "gate": GateResult(passed=True, reasons=[], questions=0, comparisons=[]).model_dump(
            mode="json"
        )
    }
}


def _register(database: Database, tmp_path: Path, name: str, metrics: dict | None = None) -> None:
    adapter = tmp_path / name
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    with database.transaction() as session:
        repository.register_model_version(
            session,
            name=name,
            base_model="smollm2-135m-instruct",
            adapter_path=str(adapter),
            dataset_hash="abc",
            metrics=PASSED if metrics is None else metrics,
        )


def _statuses(database: Database) -> dict[str, str]:
    with database.transaction() as session:
        return {v.name: v.status.value for v in session.query(ModelVersion)}


def test_promote_then_roll_back_walks_the_history(database: Database, tmp_path: Path) -> None:
    for name in ("acme-v1", "acme-v2"):
        _register(database, tmp_path, name)
    router = AdapterRouter({}, "base", PromotedAdapter(database, refresh_s=0))
    assert router.route().served_model == "base"

    with database.transaction() as session:
        promote(session, "acme-v1", endpoints=[])
    assert router.route().served_model == "acme-v1"
    assert router.route().promoted  # may fall back to base if a server lost it
    with database.transaction() as session:
        promote(session, "acme-v2", endpoints=[])
    assert router.route().served_model == "acme-v2"
    assert _statuses(database) == {"acme-v1": "retired", "acme-v2": "promoted"}

    with database.transaction() as session:
        assert rollback(session, endpoints=[]).promoted == "acme-v1"
    assert router.route().served_model == "acme-v1"
    assert _statuses(database) == {"acme-v1": "promoted", "acme-v2": "rejected"}
    with database.transaction() as session:
        assert rollback(session, endpoints=[]).promoted is None
    assert router.route().served_model == "base"
    with database.transaction() as session, pytest.raises(PromotionError, match="nothing"):
        rollback(session, endpoints=[])


def test_a_canary_answers_its_share_and_rolls_back_first(
    database: Database, tmp_path: Path
) -> None:
    for name in ("acme-v1", "acme-v2"):
        _register(database, tmp_path, name)
    with database.transaction() as session:
        promote(session, "acme-v1", endpoints=[])
        promote(session, "acme-v2", endpoints=[], canary_share=0.25)
    draws = iter([0.1, 0.9, 0.24, 0.5])
    router = AdapterRouter(
        {"C0PINNED": "acme-v1"}, "base", PromotedAdapter(database, draw=lambda: next(draws))
    )

    served = [router.route().served_model for _ in range(4)]

    assert served == ["acme-v2", "acme-v1", "acme-v2", "acme-v1"]
    assert router.route(channel="C0PINNED").served_model == "acme-v1"  # routes still win
    assert not router.route(channel="C0PINNED").promoted
    with database.transaction() as session:
        active = rollback(session, endpoints=[])
    assert (active.promoted, active.canary) == ("acme-v1", None)
    assert _statuses(database)["acme-v2"] == ModelVersionStatus.REJECTED.value


def test_promotion_needs_a_passed_gate_and_an_adapter(database: Database, tmp_path: Path) -> None:
    _register(database, tmp_path, "untested", metrics={})
    with database.transaction() as session:
        with pytest.raises(PromotionError, match="evaluate model --candidate untested"):
            promote(session, "untested", endpoints=[])
        with pytest.raises(PromotionError, match="no model version named 'nope'"):
            promote(session, "nope", endpoints=[])
        promote(session, "untested", endpoints=[], force=True)
        assert active_versions(session).promoted == "untested"
    (tmp_path / "untested" / "adapter_config.json").unlink()
    _register(database, tmp_path, "other")
    (tmp_path / "other" / "adapter_config.json").unlink()
    with database.transaction() as session, pytest.raises(PromotionError, match="train it again"):
        promote(session, "other", endpoints=[])


def test_names_are_never_reused(database: Database, tmp_path: Path) -> None:
    _register(database, tmp_path, "acme-v1")
    with database.transaction() as session, pytest.raises(NameTaken, match="exists already"):
        repository.register_model_version(
            session, name="acme-v1", base_model="b", adapter_path=None, dataset_hash=None
        )
