"""Which embedder an install uses: the bundled MiniLM, or any provider of mem0's ``EmbedderFactory``.

``OPTIMUS_EMBEDDER`` is ``local`` (default: all-MiniLM-L6-v2 on this machine, see
:mod:`core.memory.embedder`) or ``<mem0 provider>:<model>``::

    openai:text-embedding-3-small      OPENAI_API_KEY; or any OpenAI-compatible server with
                                       OPTIMUS_EMBEDDER_BASE_URL (key: OPTIMUS_OPENAI_COMPATIBLE_API_KEY,
                                       else OPENAI_API_KEY, else none)
    azure_openai:<deployment>          AZURE_OPENAI_API_KEY, OPTIMUS_EMBEDDER_BASE_URL (the resource endpoint),
                                       OPTIMUS_EMBEDDER_API_VERSION (default below)
    gemini:gemini-embedding-001        GOOGLE_API_KEY (or GEMINI_API_KEY)
    together:<model>                   TOGETHER_API_KEY (needs the ``together`` package)
    ollama:nomic-embed-text            OPTIMUS_EMBEDDER_BASE_URL or OLLAMA_BASE_URL
    lmstudio:<model>                   OPTIMUS_EMBEDDER_BASE_URL
    huggingface:<model>                OPTIMUS_EMBEDDER_BASE_URL (a text-embeddings-inference server;
                                       HUGGINGFACE_API_KEY if it wants one), or a model directory on disk
    vertexai:…, aws_bedrock:…          credentials as their SDKs read them (packages not bundled)

Keys come from :class:`~core.config.Settings` only (their SDK names, as for chat models), never
from the environment behind its back, and are handed to mem0 in the provider config; nothing here
logs them. ``fastembed`` (downloads models at run time) and ``langchain`` (needs a Python object)
are refused with the reason.

The vector size is :attr:`EmbedderChoice.dims`: ``OPTIMUS_EMBEDDING_DIMS``, else the size of a
well-known model from :data:`KNOWN_DIMS`, else a :class:`ConfigError` asking for it. The store
records which embedder filled it (:attr:`EmbedderChoice.id`), so a change is caught at start and
moved over by ``python -m core reembed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import Settings
from core.errors import ConfigError
from core.memory import embedder as local
from core.memory.mem0_adapter import RegisteredEmbedderConfig, embedder_providers

LOCAL = "local"
DEFAULT_AZURE_API_VERSION = "2024-10-21"

# Sizes of well-known embedding models (native, i.e. without asking for shorter vectors). Keys are
# lowercased, without Gemini's "models/" prefix or an Ollama ":tag".
KNOWN_DIMS: dict[str, int] = {
    # OpenAI / Azure OpenAI
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
    # Google (Gemini API, Vertex AI)
    "gemini-embedding-001": 3072,
    "text-embedding-004": 768,
    "text-embedding-005": 768,
    "text-multilingual-embedding-002": 768,
    "embedding-001": 768,
    # Ollama library
    "nomic-embed-text": 768,
    "mxbai-embed-large": 1024,
    "all-minilm": 384,
    "snowflake-arctic-embed": 1024,
    "snowflake-arctic-embed2": 1024,
    "bge-m3": 1024,
    "embeddinggemma": 768,
    # Hugging Face / Together / TEI model ids
    "sentence-transformers/all-minilm-l6-v2": 384,
    "baai/bge-small-en-v1.5": 384,
    "baai/bge-base-en-v1.5": 768,
    "baai/bge-large-en-v1.5": 1024,
    "baai/bge-m3": 1024,
    "nomic-ai/nomic-embed-text-v1.5": 768,
    "intfloat/multilingual-e5-large-instruct": 1024,
    "intfloat/e5-large-v2": 1024,
    "togethercomputer/m2-bert-80m-8k-retrieval": 768,
    # AWS Bedrock
    "amazon.titan-embed-text-v2:0": 1024,
    "amazon.titan-embed-text-v1": 1536,
    "cohere.embed-english-v3": 1024,
    "cohere.embed-multilingual-v3": 1024,
}

# Providers whose mem0 embedder sends ``embedding_dims`` to the API as a request for shorter vectors:
# always (Google), or whenever it is set (OpenAI, Bedrock Titan v2), which some OpenAI-compatible
# servers reject; those get it only when a known model is asked for a size other than its own.
_ALWAYS_SENDS_DIMS = {"gemini", "vertexai"}
_SENDS_DIMS_WHEN_SET = {"openai", "aws_bedrock"}
_REFUSED = {
    "fastembed": "it downloads its models at run time; use 'local' or a server (ollama:, openai: with a base URL)",
    "langchain": "it needs a LangChain object, not a setting; use the provider directly",
}
# provider -> (Settings field of its key, the variable a person sets)
_KEYS = {
    "openai": ("openai_api_key", "OPENAI_API_KEY"),
    "azure_openai": ("azure_openai_api_key", "AZURE_OPENAI_API_KEY"),
    "gemini": ("google_api_key", "GOOGLE_API_KEY"),
    "together": ("together_api_key", "TOGETHER_API_KEY"),
}
_URL_OPTION = {"openai": "openai_base_url", "ollama": "ollama_base_url", "lmstudio": "lmstudio_base_url",
               "huggingface": "huggingface_base_url"}


@dataclass(frozen=True, slots=True)
class EmbedderChoice:
    """The configured embedder: a mem0 provider, its model, its vector size and its mem0 config.

    ``config`` may hold an API key; it is left out of ``repr`` and must never be logged.
    """

    provider: str  # mem0 provider name ("optimus_local" for the bundled model)
    model: str
    dims: int
    config: dict[str, Any] = field(repr=False, compare=False)

    @property
    def id(self) -> str:
        """Names the vector space, recorded in the store: ``local:all-MiniLM-L6-v2``, ``openai:<model>``."""
        return f"{LOCAL}:{self.model}" if self.provider == local.PROVIDER_NAME else f"{self.provider}:{self.model}"

    @property
    def label(self) -> str:
        return f"{self.id} ({self.dims}-d)"


def model_key(model: str) -> str:
    """How a model name is looked up in :data:`KNOWN_DIMS`."""
    key = model.strip().lower().removeprefix("models/")
    if ":" in key and not key.startswith("amazon.") and not key.startswith("cohere."):
        key = key.split(":", 1)[0]  # an Ollama tag ("nomic-embed-text:latest")
    return key


def choose_embedder(settings: Settings) -> EmbedderChoice:
    """The embedder ``settings`` ask for, with its mem0 provider config; :class:`ConfigError` names
    the variable to set when a key, a server URL or the vector size is missing."""
    if settings.embedder == LOCAL:
        if settings.embedding_dims not in (None, local.EMBEDDING_DIMS):
            raise ConfigError(
                f"OPTIMUS_EMBEDDING_DIMS={settings.embedding_dims} does not fit OPTIMUS_EMBEDDER=local: the bundled "
                f"{local.MODEL_NAME} produces {local.EMBEDDING_DIMS}-d vectors. Unset OPTIMUS_EMBEDDING_DIMS.")
        config = local.mem0_embedder_config(settings.embedder_backend, cache_dir=settings.model_cache).config
        return EmbedderChoice(local.PROVIDER_NAME, local.MODEL_NAME, local.EMBEDDING_DIMS, dict(config or {}))

    provider, _, model = settings.embedder.partition(":")
    if provider in _REFUSED:
        raise ConfigError(f"OPTIMUS_EMBEDDER={settings.embedder}: the {provider!r} embedder is not supported: "
                          f"{_REFUSED[provider]}.")
    offered = sorted(embedder_providers() - set(_REFUSED) - {local.PROVIDER_NAME})
    if provider not in offered:
        raise ConfigError(f"OPTIMUS_EMBEDDER={settings.embedder}: unknown embedder provider {provider!r}; use 'local' "
                          f"or one of mem0's: {', '.join(offered)} (as '<provider>:<model>').")
    native = KNOWN_DIMS.get(model_key(model))
    dims = settings.embedding_dims or native
    if dims is None:
        raise ConfigError(f"OPTIMUS_EMBEDDER={settings.embedder}: the size of {model!r}'s vectors is not known here; "
                          f"set OPTIMUS_EMBEDDING_DIMS to it (e.g. 768).")
    config: dict[str, Any] = {"model": model}
    if provider in _ALWAYS_SENDS_DIMS or (provider not in _SENDS_DIMS_WHEN_SET) or (
            native is not None and dims != native):
        config["embedding_dims"] = dims
    config.update(_connection(settings, provider, model))
    return EmbedderChoice(provider, model, dims, config)


def _secret(settings: Settings, name: str) -> str | None:
    value = getattr(settings, name, None)
    return (value.get_secret_value() or None) if value is not None else None  # compose passes unset as ""


def _connection(settings: Settings, provider: str, model: str) -> dict[str, Any]:
    """The key and server options of ``provider``'s mem0 config."""
    url = settings.embedder_base_url
    options: dict[str, Any] = {}
    if provider == "openai":
        key = (_secret(settings, "openai_compatible_api_key") if url else None) or _secret(settings, "openai_api_key")
        if key is None and not url:
            raise ConfigError(f"OPTIMUS_EMBEDDER={settings.embedder} needs OPENAI_API_KEY (or "
                              "OPTIMUS_EMBEDDER_BASE_URL for an OpenAI-compatible server).")
        # A server without authentication still needs a non-empty key for the OpenAI client.
        options["api_key"] = key or "unused"
    elif provider == "azure_openai":
        key = _secret(settings, "azure_openai_api_key")
        if key is None:
            raise ConfigError(f"OPTIMUS_EMBEDDER={settings.embedder} needs AZURE_OPENAI_API_KEY.")
        if not url:
            raise ConfigError(f"OPTIMUS_EMBEDDER={settings.embedder} needs OPTIMUS_EMBEDDER_BASE_URL, the resource "
                              "endpoint (https://<resource>.openai.azure.com).")
        options["azure_kwargs"] = {"api_key": key, "azure_deployment": model, "azure_endpoint": url,
                                   "api_version": settings.embedder_api_version or DEFAULT_AZURE_API_VERSION}
        return options
    elif provider in _KEYS:
        field_name, variable = _KEYS[provider]
        key = _secret(settings, field_name)
        if key is None:
            raise ConfigError(f"OPTIMUS_EMBEDDER={settings.embedder} needs {variable}.")
        options["api_key"] = key
    elif provider == "ollama":
        url = url or (settings.ollama_base_url or "").strip() or None
        if url is None:
            raise ConfigError(f"OPTIMUS_EMBEDDER={settings.embedder} needs OPTIMUS_EMBEDDER_BASE_URL (or "
                              "OLLAMA_BASE_URL), e.g. http://localhost:11434.")
        url = url.rstrip("/").removesuffix("/v1")  # OLLAMA_BASE_URL is the OpenAI-compatible /v1 for chat
    elif provider == "lmstudio":
        if not url:
            raise ConfigError(f"OPTIMUS_EMBEDDER={settings.embedder} needs OPTIMUS_EMBEDDER_BASE_URL, e.g. "
                              "http://localhost:1234/v1.")
    elif provider == "huggingface":
        if url:
            options["api_key"] = _secret(settings, "huggingface_api_key") or "unused"
        elif not Path(model).expanduser().is_dir():
            raise ConfigError(f"OPTIMUS_EMBEDDER={settings.embedder} needs OPTIMUS_EMBEDDER_BASE_URL (a "
                              "text-embeddings-inference server) or a model directory on disk: loading a model by "
                              "name would download it at run time.")
    if url and provider in _URL_OPTION:
        options[_URL_OPTION[provider]] = url
    return options


def mem0_config(choice: EmbedderChoice) -> Any:
    """The ``embedder`` entry of a mem0 ``MemoryConfig`` for ``choice``."""
    local.register_embedder()
    return RegisteredEmbedderConfig(provider=choice.provider, config=dict(choice.config))


def missing_package(exc: ImportError, choice: EmbedderChoice) -> ConfigError:
    """A :class:`ConfigError` for a provider whose SDK is not installed."""
    package = exc.name or str(exc)
    return ConfigError(f"OPTIMUS_EMBEDDER={choice.id}: mem0's {choice.provider!r} embedder needs the Python package "
                       f"{package!r}, which this install does not include (pip install it, pinned, in "
                       f"requirements.txt).")
