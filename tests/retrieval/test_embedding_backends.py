"""EMBEDDING_BACKEND: the ONNX exports load offline, agree with torch and are made once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from retrieval import onnx_backend
from retrieval.embedding import PACKAGED_MODEL, Embedder, load_embedder, resolve_model
from retrieval.errors import RetrievalError

TEXTS = [
    "who approves a 30k lb load",
    "Load Approval Thresholds > Approval by weight\nFrom 26,001 to 40,000 lb the shift lead "
    "on duty approves the load; above 40,000 lb the terminal manager signs off in the TMS.",
]
# What the export check demands too: fp32 agrees to rounding, int8 stays close.
MIN_COSINE = {"onnx": 0.999, "onnx-int8": 0.95}
REPO = Path(__file__).resolve().parents[2]
POLICY = REPO / "examples" / "policies" / "load-approval.md"

Swap = Callable[[str, Path], SentenceTransformer]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models dir whose embeddings/ holds both exports, made once for this module."""
    folder = tmp_path_factory.mktemp("models")
    # int8 is quantized from the fp32 export, so this one call makes both.
    onnx_backend.use_onnx(_fresh_model(), PACKAGED_MODEL, "onnx-int8", folder / "embeddings")
    return folder


@pytest.fixture(scope="module")
def torch_embedder() -> Embedder:
    return load_embedder("all-MiniLM-L6-v2", "torch")


@pytest.fixture
def swap() -> Swap:
    """A freshly loaded torch model switched to `backend` with exports kept in a folder."""

    def run(backend: str, cache_dir: Path) -> SentenceTransformer:
        model = _fresh_model()
        onnx_backend.use_onnx(model, PACKAGED_MODEL, backend, cache_dir)
        return model

    return run


def _fresh_model() -> SentenceTransformer:
    # Not load_embedder: it hands out one model per process, and these tests need new ones.
    return SentenceTransformer(resolve_model(PACKAGED_MODEL), device="cpu")


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_each_backend_gives_unit_vectors_close_to_torchs(
    backend: str, models_dir: Path, torch_embedder: Embedder
) -> None:
    onnx = load_embedder("all-MiniLM-L6-v2", backend, models_dir / "embeddings")

    # The same model to the collection: its name, size and token budget do not change.
    assert (onnx.name, onnx.dimension, onnx.max_tokens) == (PACKAGED_MODEL, 384, 254)
    assert onnx.count_tokens(TEXTS[1]) == torch_embedder.count_tokens(TEXTS[1])
    ours = np.array([onnx.encode_query(TEXTS[0]), *onnx.encode_documents(TEXTS[1:])])
    torchs = np.array(
        [torch_embedder.encode_query(TEXTS[0]), *torch_embedder.encode_documents(TEXTS[1:])]
    )
    assert np.linalg.norm(ours, axis=1) == pytest.approx(1.0, abs=1e-5)
    assert (ours * torchs).sum(axis=1).min() >= MIN_COSINE[backend]


def test_an_export_is_made_once_and_reused(
    models_dir: Path, swap: Swap, monkeypatch: pytest.MonkeyPatch
) -> None:
    exports = models_dir / "embeddings"
    assert sorted(path.name for path in exports.iterdir()) == [
        "sentence-transformers-all-MiniLM-L6-v2-onnx",
        "sentence-transformers-all-MiniLM-L6-v2-onnx-int8",
    ]
    manifest = json.loads(
        (exports / "sentence-transformers-all-MiniLM-L6-v2-onnx-int8" / "export.json").read_text()
    )
    assert manifest["backend"] == "onnx-int8"
    assert manifest["quantization"]["weight_type"] == "QInt8"

    def no_export(*args: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_backend, "_export_fp32", no_export)
    monkeypatch.setattr(onnx_backend, "_quantize", no_export)
    for backend in ("onnx", "onnx-int8"):
        model = swap(backend, exports)
        assert isinstance(model[0].model, onnx_backend.OnnxTransformer)


def test_an_export_of_other_weights_is_made_again(
    models_dir: Path, swap: Swap, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = models_dir / "embeddings" / "sentence-transformers-all-MiniLM-L6-v2-onnx"
    stale = tmp_path / source.name
    shutil.copytree(source, stale)
    manifest = json.loads((stale / "export.json").read_text())
    (stale / "export.json").write_text(json.dumps(manifest | {"weights_sha256": "retrained"}))
    exported: list[Path] = []

    def export_by_copy(transformer: object, target: Path, name: str) -> None:
        exported.append(target)  # the real export takes seconds; its result is the same file
        shutil.copy(source / "model.onnx", target)

    monkeypatch.setattr(onnx_backend, "_export_fp32", export_by_copy)
    swap("onnx", tmp_path)

    assert len(exported) == 1
    assert json.loads((stale / "export.json").read_text()) == manifest
    assert [path.name for path in tmp_path.iterdir()] == [stale.name]  # no staging left behind


def test_a_broken_export_says_how_to_recover(models_dir: Path, swap: Swap, tmp_path: Path) -> None:
    name = "sentence-transformers-all-MiniLM-L6-v2-onnx-int8"
    shutil.copytree(models_dir / "embeddings" / name, tmp_path / name)
    (tmp_path / name / "model.onnx").write_bytes(b"not an onnx model")

    with pytest.raises(
        RetrievalError, match=r"cannot load the ONNX export .*delete .*exported again"
    ):
        swap("onnx-int8", tmp_path)


def test_a_failed_export_says_what_to_do(
    swap: Swap, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unsupported(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unsupported operator aten::frobnicate\nand pages of advice")

    monkeypatch.setattr(torch.onnx, "export", unsupported)

    with pytest.raises(RetrievalError) as failed:
        swap("onnx", tmp_path)
    message = str(failed.value)
    assert "RuntimeError: unsupported operator aten::frobnicate" in message
    assert "pages of advice" not in message
    assert "set EMBEDDING_BACKEND=torch" in message
    assert list(tmp_path.iterdir()) == []  # nothing half-written is kept


def test_an_unwritable_models_dir_says_what_to_do(swap: Swap, tmp_path: Path) -> None:
    not_a_folder = tmp_path / "models"
    not_a_folder.write_text("a file where the export should go")

    with pytest.raises(RetrievalError, match=r"cannot write the ONNX export .*set MODELS_DIR"):
        swap("onnx", not_a_folder / "embeddings")


def test_without_onnxruntime_the_error_says_what_to_do(
    swap: Swap, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)

    with pytest.raises(RetrievalError, match=r"needs onnxruntime.*EMBEDDING_BACKEND=torch"):
        swap("onnx", tmp_path)


def test_an_unknown_backend_is_refused_before_loading() -> None:
    with pytest.raises(RetrievalError, match="unknown embedding backend 'tensorrt'"):
        load_embedder("all-MiniLM-L6-v2", "tensorrt")  # type: ignore[arg-type]


@pytest.mark.slow  # child processes
def test_the_cli_runs_the_configured_backend_offline_from_the_models_dir(
    models_dir: Path, tmp_path: Path
) -> None:
    exports = models_dir / "embeddings"
    before = {path: path.stat().st_mtime_ns for path in exports.rglob("model.onnx")}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QDRANT_", "EMBEDDING_"))}
    env |= {
        "DISPATCHBOT_DATA_DIR": str(tmp_path / "data"),
        "MODELS_DIR": str(models_dir),
        "EMBEDDING_BACKEND": "onnx-int8",
        "HF_HUB_OFFLINE": "1",
        "LOG_LEVEL": "INFO",
    }

    ingested = subprocess.run(  # noqa: S603 - our own console script
        [str(Path(sys.executable).parent / "dispatchbot"), "ingest", str(POLICY)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert ingested.returncode == 0, ingested.stderr
    assert "loading embedding model all-MiniLM-L6-v2 (onnx-int8)" in ingested.stderr
    assert "exporting" not in ingested.stderr
    assert {path: path.stat().st_mtime_ns for path in exports.rglob("model.onnx")} == before
