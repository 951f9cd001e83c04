"""Run a sentence-transformers model's transformer with ONNX Runtime, in fp32 or int8.

sentence-transformers has an ONNX backend of its own, but it needs optimum-onnx, whose
releases all require transformers < 4.58; this project runs transformers 5. So the
transformer is exported here with `torch.onnx`, quantized with ONNX Runtime's dynamic
quantization, and put in place of the torch module inside the loaded SentenceTransformer:
tokenization, pooling and normalization stay sentence-transformers' own, and only the
transformer's forward pass runs elsewhere.

An export is made once, on the first load, into `<cache dir>/<model>-<backend>/`, beside a
manifest naming the weights it was made from: another model under the same name (a folder
trained again), or int8 on another kind of CPU, gets a new export. Every new export is
checked against the torch model before it is kept.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import platform
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from retrieval.errors import RetrievalError

if TYPE_CHECKING:
    from onnxruntime import InferenceSession
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Transformer
    from transformers import PretrainedConfig

log = logging.getLogger(__name__)

ONNX_BACKENDS = ("onnx", "onnx-int8")
ONNX_FILE = "model.onnx"
MANIFEST_FILE = "export.json"
_MANIFEST_FORMAT = 1

# Traced with padding in the batch, so the attention mask is part of the graph.
_TRACE_TEXTS = ("a short one", "a longer sentence, so that the short one is padded")
# Checked on a batch of other lengths than the trace, one of them longer than it.
_CHECK_TEXTS = (
    "Who approves a load over 30,000 lb?",
    "Hazmat",
    "When a reefer unit alarms, the driver records the temperature, calls dispatch and "
    "stays with the trailer until a technician confirms the setpoint holds.",
)
# Least cosine similarity of an export's vectors to torch's: fp32 agrees to rounding
# (0.99999); int8 was 0.986 at worst on the example policies.
_MIN_COSINE = {"onnx": 0.999, "onnx-int8": 0.95}


class OnnxTransformer(torch.nn.Module):
    """Stands in for the Hugging Face model inside sentence-transformers' Transformer module."""

    def __init__(self, session: InferenceSession, config: PretrainedConfig) -> None:
        super().__init__()
        self.session = session
        # sentence-transformers reads the hidden size and output flags from the config.
        self.config = config
        self._inputs = [node.name for node in session.get_inputs()]

    def forward(self, **features: Any) -> dict[str, torch.Tensor]:
        feed = {name: features[name].cpu().numpy() for name in self._inputs}
        (hidden,) = self.session.run(None, feed)
        return {"last_hidden_state": torch.from_numpy(hidden)}


def use_onnx(model: SentenceTransformer, name: str, backend: str, cache_dir: Path) -> None:
    """Swap `model`'s transformer for an ONNX Runtime session, exporting it first if need be."""
    _require_onnxruntime(backend)
    transformer = _text_transformer(model, name, backend)
    config = transformer.model.config
    folder = _ensure_export(model, transformer, name, backend, cache_dir)
    # torch's submodule swap: sentence-transformers types the attribute as a Hugging Face
    # PreTrainedModel, but calls it only as a Module, which OnnxTransformer is.
    transformer.set_submodule("model", OnnxTransformer(_session(folder / ONNX_FILE), config))


def export_folder(cache_dir: Path, name: str, backend: str) -> Path:
    """Where the export of model `name` for `backend` is kept."""
    return cache_dir / f"{re.sub(r'[^A-Za-z0-9._-]+', '-', name).strip('-.')}-{backend}"


def _require_onnxruntime(backend: str) -> None:
    try:
        import onnx  # noqa: F401 - the exporter and the quantizer need it
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401 - torch.onnx's exporter needs it
    except ImportError as error:
        raise RetrievalError(
            f"EMBEDDING_BACKEND={backend} needs {error.name}, which is not installed: "
            "reinstall dispatchbot (`make install`) or set EMBEDDING_BACKEND=torch"
        ) from error


def _text_transformer(model: SentenceTransformer, name: str, backend: str) -> Transformer:
    from sentence_transformers.sentence_transformer.modules import Transformer

    first = model[0]
    if (
        not isinstance(first, Transformer)
        or first.transformer_task != "feature-extraction"
        or first.tokenizer is None
    ):
        raise RetrievalError(
            f"EMBEDDING_BACKEND={backend} runs text models built on a Hugging Face "
            f"transformer, and {name!r} is not one: set EMBEDDING_BACKEND=torch"
        )
    return first


def _ensure_export(
    model: SentenceTransformer, transformer: Transformer, name: str, backend: str, cache_dir: Path
) -> Path:
    """The folder of an export that matches the loaded weights, made now if there is none."""
    manifest = _manifest(transformer.model, backend)
    folder = export_folder(cache_dir, name, backend)
    if _is_current(folder, manifest):
        return folder
    # int8 is quantized from the fp32 export, which is kept too (a few seconds either way).
    source = (
        _ensure_export(model, transformer, name, "onnx", cache_dir) if backend != "onnx" else None
    )
    log.info("exporting %s for %s into %s (once)", name, backend, folder)
    staging: Path | None = None
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=cache_dir))
        if source is None:
            _export_fp32(transformer, staging / ONNX_FILE, name)
        else:
            _quantize(source / ONNX_FILE, staging / ONNX_FILE, manifest["quantization"], name)
        _check_export(model, transformer, staging / ONNX_FILE, name, backend)
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
        staging.chmod(0o755)  # mkdtemp made it private; the rest of the models dir is not
        _publish(staging, folder, manifest)
    except OSError as error:
        raise RetrievalError(
            f"cannot write the ONNX export of {name!r} to {cache_dir} ({error.strerror}); "
            "set MODELS_DIR to a writable folder"
        ) from error
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def _manifest(module: torch.nn.Module, backend: str) -> dict[str, Any]:
    return {
        "format": _MANIFEST_FORMAT,
        "backend": backend,
        "weights_sha256": _weights_sha256(module),
        "quantization": _quantization() if backend == "onnx-int8" else None,
    }


def _weights_sha256(module: torch.nn.Module) -> str:
    """A fingerprint of the exact weights (about 0.1 s for all-MiniLM-L6-v2's 90 MB)."""
    digest = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _quantization() -> dict[str, Any]:
    """Dynamic int8 settings for this CPU: signed int8 weights, one scale per channel.

    With VNNI (and on ARM) int8 products are summed without overflow. Plain AVX2/AVX512
    can saturate, and ONNX Runtime's advice there is `reduce_range` (7-bit weights).
    """
    return {"weight_type": "QInt8", "per_channel": True, "reduce_range": _x86_without_vnni()}


def _x86_without_vnni() -> bool:
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        return False
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return True  # cannot tell: take the setting that is safe everywhere
    return not re.search(r"\b(avx512_vnni|avx_vnni)\b", cpuinfo)


def _is_current(folder: Path, manifest: dict[str, Any]) -> bool:
    try:
        found = json.loads((folder / MANIFEST_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return found == manifest and (folder / ONNX_FILE).is_file()


def _export_fp32(transformer: Transformer, target: Path, name: str) -> None:
    hf_model = transformer.model.eval()
    accepted = inspect.signature(hf_model.forward).parameters
    tokenizer = transformer.tokenizer
    assert tokenizer is not None, "_text_transformer takes only models with a tokenizer"
    names = [key for key in tokenizer.model_input_names if key in accepted]
    sample = tokenizer(list(_TRACE_TEXTS), padding=True, return_tensors="pt")
    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence", max=transformer.max_seq_length)
    try:
        with _quiet(), torch.no_grad():
            program = torch.onnx.export(
                _LastHiddenState(hf_model, names),
                tuple(sample[key] for key in names),
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_shapes={"inputs": tuple({0: batch, 1: sequence} for _ in names)},
                dynamo=True,
                verbose=False,
            )
            assert program is not None, "dynamo=True returns the ONNX program"
            program.save(str(target))
    except Exception as error:
        # torch.export fails in many ways on a model it cannot trace (unsupported operators,
        # data-dependent shapes, ...); to the user they all mean the same thing.
        raise RetrievalError(
            f"cannot export embedding model {name!r} to ONNX ({_first_line(error)}); "
            "set EMBEDDING_BACKEND=torch"
        ) from error


class _LastHiddenState(torch.nn.Module):
    """The Hugging Face model with positional inputs and one tensor out, as the exporter wants."""

    def __init__(self, model: torch.nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs, strict=True))).last_hidden_state


def _quantize(source: Path, target: Path, settings: dict[str, Any], name: str) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        with _quiet():
            quantize_dynamic(
                source,
                target,
                weight_type=QuantType[settings["weight_type"]],
                per_channel=settings["per_channel"],
                reduce_range=settings["reduce_range"],
            )
    except Exception as error:  # as for the export: any failure means "use another backend"
        raise RetrievalError(
            f"cannot quantize embedding model {name!r} to int8 ({_first_line(error)}); "
            "set EMBEDDING_BACKEND=onnx or torch"
        ) from error


def _check_export(
    model: SentenceTransformer, transformer: Transformer, path: Path, name: str, backend: str
) -> None:
    """Refuse an export whose vectors stray from the torch model's."""
    texts = list(_CHECK_TEXTS)
    expected = model.encode(texts, normalize_embeddings=True, show_progress_bar=False)
    torch_model = transformer.model
    transformer.set_submodule("model", OnnxTransformer(_session(path), torch_model.config))
    try:
        found = model.encode(texts, normalize_embeddings=True, show_progress_bar=False)
    finally:
        transformer.model = torch_model
    worst = float((expected * found).sum(axis=1).min())
    if worst < _MIN_COSINE[backend]:
        raise RetrievalError(
            f"the {backend} export of {name!r} does not reproduce the model (cosine similarity "
            f"{worst:.4f} to torch's vectors, expected at least {_MIN_COSINE[backend]}); "
            "set EMBEDDING_BACKEND=torch"
        )


def _publish(staging: Path, folder: Path, manifest: dict[str, Any]) -> None:
    """Move a finished export into place in one step, so no reader sees half of one."""
    shutil.rmtree(folder, ignore_errors=True)  # an export of other weights
    try:
        staging.rename(folder)
    except OSError:
        # Another process finished the same export first: theirs is as good as ours.
        if not _is_current(folder, manifest):
            raise


def _session(path: Path) -> InferenceSession:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    # Threads that spin while waiting for work are what made torch's two threads take
    # 0.5-1 s per query on 2 busy cores (one thread: 40-80 ms). ONNX Runtime's pool without
    # spinning kept one query at 3-13 ms there and still uses both cores for batches.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # ONNX Runtime's errors share no base class but Exception
        raise RetrievalError(
            f"cannot load the ONNX export {path} ({_first_line(error)}); delete "
            f"{path.parent} and it is exported again on the next start"
        ) from error


def _first_line(error: BaseException) -> str:
    """What went wrong in one line: the exporter wraps the cause in pages of advice."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence advice that does not apply here while exporting or quantizing.

    torch.onnx warns that torchvision is missing and that its exported program is in
    training mode; ONNX Runtime's quantizer suggests an optional pre-processing step that
    made no difference to speed or accuracy for this model.
    """
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)
