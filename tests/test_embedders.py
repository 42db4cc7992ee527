"""OPTIMUS_EMBEDDER: picking any mem0 embedder, its size, its server and its key.

Hosted embedders are driven for real through mem0's factory against an embeddings server on
loopback (tests/embedding_stub.py); nothing here is mocked.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from core.config import load_settings
from core.errors import ConfigError
from core.memory.embedders import KNOWN_DIMS, choose_embedder, model_key
from core.memory.engine import build_embedder
from tests.embedding_stub import EmbeddingStub, stub_vector

KEY = "sk-test-embedder-key-7f3a9c"


@pytest.fixture
def stub():
    server = EmbeddingStub(dims=64).start()
    try:
        yield server
    finally:
        server.stop()


def test_default_is_the_bundled_minilm():
    choice = choose_embedder(load_settings())
    assert (choice.id, choice.dims, choice.provider) == ("local:all-MiniLM-L6-v2", 384, "optimus_local")
    assert choice.config["model_kwargs"]["backend"] == "onnx"


@pytest.mark.parametrize("value, message", [
    ("openai", "use 'local' or '<provider>:<model>'"),
    ("openai:", "use 'local' or '<provider>:<model>'"),
    (":text-embedding-3-small", "use 'local' or '<provider>:<model>'"),
])
def test_a_malformed_embedder_setting_names_the_variable(value, message):
    with pytest.raises(ConfigError) as info:
        load_settings(embedder=value)
    assert "OPTIMUS_EMBEDDER" in str(info.value) and message in str(info.value)


def test_an_unknown_provider_lists_mem0s(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with pytest.raises(ConfigError) as info:
        choose_embedder(load_settings(embedder="voyage:voyage-3"))
    message = str(info.value)
    assert "OPTIMUS_EMBEDDER=voyage:voyage-3" in message and "'voyage'" in message
    for provider in ("openai", "ollama", "azure_openai", "gemini", "huggingface", "lmstudio", "together"):
        assert provider in message
    assert "fastembed" not in message.split("mem0's:")[1]  # refused providers are not offered


@pytest.mark.parametrize("embedder, extra, variable", [
    ("openai:text-embedding-3-small", {}, "OPENAI_API_KEY"),
    ("openai:text-embedding-3-small", {"openai_api_key": ""}, "OPENAI_API_KEY"),  # compose's unset
    ("gemini:gemini-embedding-001", {}, "GOOGLE_API_KEY"),
    ("together:BAAI/bge-large-en-v1.5", {}, "TOGETHER_API_KEY"),
    ("azure_openai:text-embedding-3-small", {"embedder_base_url": "https://x.openai.azure.com"},
     "AZURE_OPENAI_API_KEY"),
    ("azure_openai:text-embedding-3-small", {"azure_openai_api_key": KEY}, "OPTIMUS_EMBEDDER_BASE_URL"),
    ("ollama:nomic-embed-text", {}, "OPTIMUS_EMBEDDER_BASE_URL"),
    ("lmstudio:nomic-embed-text", {"embedding_dims": 768}, "OPTIMUS_EMBEDDER_BASE_URL"),
    ("huggingface:BAAI/bge-small-en-v1.5", {}, "OPTIMUS_EMBEDDER_BASE_URL"),
    ("openai:my-own-model", {"openai_api_key": KEY}, "OPTIMUS_EMBEDDING_DIMS"),
])
def test_a_missing_key_url_or_size_is_a_config_error_naming_the_variable(embedder, extra, variable):
    with pytest.raises(ConfigError) as info:
        choose_embedder(load_settings(embedder=embedder, **extra))
    assert variable in str(info.value)
    assert KEY not in str(info.value)


@pytest.mark.parametrize("provider", ["fastembed", "langchain"])
def test_providers_that_download_or_need_code_are_refused_with_the_reason(provider):
    with pytest.raises(ConfigError, match="not supported"):
        choose_embedder(load_settings(embedder=f"{provider}:some-model"))


def test_the_size_comes_from_the_setting_or_the_table_of_known_models(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    assert choose_embedder(load_settings(embedder="openai:text-embedding-3-large")).dims == 3072
    assert choose_embedder(load_settings(embedder="openai:text-embedding-3-small", embedding_dims=512)).dims == 512
    ollama = choose_embedder(load_settings(embedder="ollama:nomic-embed-text:latest",
                                           embedder_base_url="http://127.0.0.1:11434"))
    assert ollama.dims == 768 and model_key("models/Gemini-Embedding-001") == "gemini-embedding-001"
    assert all(isinstance(n, int) and n > 0 for n in KNOWN_DIMS.values())
    with pytest.raises(ConfigError, match="bundled all-MiniLM-L6-v2 produces 384-d"):
        choose_embedder(load_settings(embedding_dims=768))


def test_openai_is_asked_for_shorter_vectors_only_when_a_known_model_is_shortened(monkeypatch):
    """mem0 sends embedding_dims to the API as 'dimensions'; OpenAI-compatible servers may reject it."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    assert "embedding_dims" not in choose_embedder(load_settings(embedder="openai:text-embedding-3-small")).config
    shortened = choose_embedder(load_settings(embedder="openai:text-embedding-3-small", embedding_dims=256))
    assert shortened.config["embedding_dims"] == 256
    custom = choose_embedder(load_settings(embedder="openai:e5-mistral", embedding_dims=4096,
                                           embedder_base_url="http://127.0.0.1:9/v1"))
    assert "embedding_dims" not in custom.config and custom.dims == 4096


def test_keys_come_from_the_sdk_named_settings_and_stay_out_of_repr(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    choice = choose_embedder(load_settings(embedder="openai:text-embedding-3-small"))
    assert choice.config["api_key"] == KEY and "openai_base_url" not in choice.config
    assert KEY not in repr(choice)
    monkeypatch.setenv("GEMINI_API_KEY", "gem-key")
    assert choose_embedder(load_settings(embedder="gemini:gemini-embedding-001")).config["api_key"] == "gem-key"
    azure = choose_embedder(load_settings(embedder="azure_openai:prod-embeddings", embedding_dims=1536,
                                          azure_openai_api_key="az-key",
                                          embedder_base_url="https://r.openai.azure.com"))
    assert azure.config["azure_kwargs"] == {"api_key": "az-key", "azure_deployment": "prod-embeddings",
                                            "azure_endpoint": "https://r.openai.azure.com",
                                            "api_version": "2024-10-21"}


def test_an_openai_compatible_server_gets_its_own_key_first(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    url = "http://127.0.0.1:9/v1"
    own = choose_embedder(load_settings(embedder="openai:bge", embedding_dims=8, embedder_base_url=url,
                                        openai_compatible_api_key="compat-key"))
    assert (own.config["api_key"], own.config["openai_base_url"]) == ("compat-key", url)
    assert choose_embedder(load_settings(embedder="openai:bge", embedding_dims=8, embedder_base_url=url)
                           ).config["api_key"] == KEY
    monkeypatch.delenv("OPENAI_API_KEY")
    open_server = choose_embedder(load_settings(embedder="openai:bge", embedding_dims=8, embedder_base_url=url))
    assert open_server.config["api_key"] == "unused"  # a server without auth; the client wants something


def test_ollama_falls_back_to_ollama_base_url_without_its_v1_suffix(monkeypatch):
    monkeypatch.setenv("OLLAMA_BASE_URL", "http://127.0.0.1:11434/v1")
    choice = choose_embedder(load_settings(embedder="ollama:nomic-embed-text"))
    assert choice.config["ollama_base_url"] == "http://127.0.0.1:11434"


def test_blank_values_from_compose_mean_unset():
    settings = load_settings(embedding_dims="", embedder_base_url=" ", embedder_api_version="")
    assert (settings.embedding_dims, settings.embedder_base_url, settings.embedder_api_version) == (None, None, None)


def test_a_hosted_embedder_built_by_mem0s_factory_talks_to_the_server(stub, monkeypatch):
    monkeypatch.setenv("OPTIMUS_OPENAI_COMPATIBLE_API_KEY", KEY)
    settings = load_settings(embedder="openai:stub-embed", embedding_dims=64, embedder_base_url=stub.url)
    choice, embedder = build_embedder(settings)
    assert type(embedder).__module__ == "mem0.embeddings.openai"
    assert embedder.embed("I play the cello", "search") == pytest.approx(stub_vector("I play the cello", 64))
    batch = embedder.embed_batch(["one", "two", "three"], "add")
    assert [len(v) for v in batch] == [64, 64, 64]
    assert [(s.path, s.authorization, s.model) for s in stub.seen] == [
        ("/v1/embeddings", f"Bearer {KEY}", "stub-embed")] * 2
    assert choice.id == "openai:stub-embed"


def test_ollama_through_mem0s_factory(stub):
    settings = load_settings(embedder="ollama:nomic-embed-text", embedder_base_url=stub.root)
    choice, embedder = build_embedder(settings)
    assert choice.dims == 768 and type(embedder).__module__ == "mem0.embeddings.ollama"
    assert embedder.embed("hello there") == pytest.approx(stub_vector("hello there", 64))
    assert stub.seen[-1].path == "/api/embed" and stub.seen[-1].model == "nomic-embed-text"


def test_azure_openai_through_mem0s_factory(stub):
    settings = load_settings(embedder="azure_openai:prod-embeddings", embedding_dims=64, azure_openai_api_key=KEY,
                             embedder_base_url=stub.root)
    choice, embedder = build_embedder(settings)
    assert embedder.embed_batch(["bonjour", "hello"], "add") == [
        pytest.approx(stub_vector("bonjour", 64)), pytest.approx(stub_vector("hello", 64))]
    seen = stub.seen[-1]
    assert seen.path.startswith("/openai/deployments/prod-embeddings/embeddings?api-version=2024-10-21")
    assert seen.authorization == KEY and choice.id == "azure_openai:prod-embeddings"


def test_an_embedder_whose_sdk_is_missing_says_which_package(monkeypatch):
    monkeypatch.setenv("TOGETHER_API_KEY", KEY)
    with pytest.raises(ConfigError) as info:
        build_embedder(load_settings(embedder="together:BAAI/bge-large-en-v1.5"))
    assert "'together'" in str(info.value) and KEY not in str(info.value)


def test_the_key_never_reaches_the_logs(stub, monkeypatch, caplog, tmp_path: Path):
    """Build, embed and fail (the server answering 500) at DEBUG level: the key is sent, never logged."""
    monkeypatch.setenv("OPTIMUS_OPENAI_COMPATIBLE_API_KEY", KEY)
    settings = load_settings(embedder="openai:stub-embed", embedding_dims=64, embedder_base_url=stub.url)
    with caplog.at_level(logging.DEBUG):
        _, embedder = build_embedder(settings)
        embedder.embed_batch(["a secretive text"], "add")
        stub.fail_after = len(stub.seen)
        with pytest.raises(Exception):
            embedder.embed("now the server fails")
    assert stub.seen[0].authorization == f"Bearer {KEY}"
    assert caplog.records  # the OpenAI client and httpx did log at DEBUG
    assert KEY not in caplog.text
