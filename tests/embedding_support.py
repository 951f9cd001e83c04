"""The embedding model the tests share: the packaged all-MiniLM-L6-v2, run the way the
product runs it by default, its ONNX export kept in var/models beside the test LLM's weights."""

from __future__ import annotations

from vllm_support import MODELS_DIR

from retrieval.embedding import Embedder, load_embedder
from store.settings import DEFAULT_EMBEDDING_BACKEND

EMBEDDINGS_DIR = MODELS_DIR / "embeddings"


def default_embedder() -> Embedder:
    """Loaded once per process; in a clean clone the first call exports it (seconds)."""
    return load_embedder("all-MiniLM-L6-v2", DEFAULT_EMBEDDING_BACKEND, EMBEDDINGS_DIR)
