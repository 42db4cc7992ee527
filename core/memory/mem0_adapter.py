"""Every use of mem0's internals, in one place, checked against the installed mem0.

Optimus is built on ``mem0.Memory`` and its factories. Where mem0 offers no public hook we reach
into it here, and only here: :func:`check_mem0_internals` (run by the test suite) fails loudly,
naming the mem0 version, if an upgrade moved any of them.

- the factory registrations: the "qdrant_edge" vector store, the "null" LLM, our embedders;
- ``Memory.db``: where mem0 writes history (our :class:`~core.memory.history.SqlHistory`);
- mem0's Qdrant store: ``_bm25_encoder`` (Qdrant's own BM25 instead of fastembed's download),
  ``_build_field_condition`` and ``_create_filter`` (the filter dialect's gaps);
- ``mem0.utils.lemmatization.lemmatize_for_bm25`` for the payload mem0's own add would write.

mem0 2.2.1 has ``LlmFactory.register_provider`` but nothing like it for vector stores. Selecting a
vector store by name goes through three tables, all checked against the installed mem0:

1. ``VectorStoreConfig._provider_configs`` (mem0/vector_stores/configs.py): provider name ->
   config class *name*; a pydantic private attribute, so its default dict is where new names go.
2. ``mem0.configs.vector_stores.<provider>``: the module that validator imports the class from.
   We alias it to our module in ``sys.modules`` (and on the parent package) rather than writing
   files into site-packages.
3. ``VectorStoreFactory.provider_to_class`` (mem0/utils/factory.py): provider name -> class path.

All three are mem0's own, public-by-convention tables; we only add keys, never replace mem0's.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from importlib import metadata
from typing import Any

from mem0.configs.llms.base import BaseLlmConfig
from mem0.embeddings.configs import EmbedderConfig
from mem0.llms.base import LLMBase
from mem0.llms.configs import LlmConfig
from mem0.utils.factory import EmbedderFactory, LlmFactory, VectorStoreFactory
from mem0.vector_stores.configs import VectorStoreConfig
from pydantic import field_validator

EDGE_PROVIDER = "qdrant_edge"
NULL_LLM_PROVIDER = "null"

_lock = threading.Lock()


def register_vector_stores() -> None:
    """Make ``"qdrant_edge"`` a mem0 vector store provider. Idempotent and thread-safe."""
    import mem0.configs.vector_stores as config_package

    from core.memory import vector_edge

    with _lock:
        module_name = f"mem0.configs.vector_stores.{EDGE_PROVIDER}"
        sys.modules.setdefault(module_name, vector_edge)
        if getattr(config_package, EDGE_PROVIDER, None) is None:
            setattr(config_package, EDGE_PROVIDER, vector_edge)
        provider_configs = VectorStoreConfig.__private_attributes__["_provider_configs"].default
        provider_configs.setdefault(EDGE_PROVIDER, vector_edge.QdrantEdgeConfig.__name__)
        VectorStoreFactory.provider_to_class.setdefault(
            EDGE_PROVIDER, f"{vector_edge.QdrantEdgeStore.__module__}.{vector_edge.QdrantEdgeStore.__name__}"
        )


class NullLLM(LLMBase):
    """An LLM that must never be called: for mem0 paths that do not infer (``add(..., infer=False)``).

    mem0's ``Memory`` builds an LLM at construction even when nothing will use it; this one needs
    no key and no network, and fails loudly if a code path does reach for it.
    """

    def __init__(self, config: BaseLlmConfig | dict | None = None) -> None:
        super().__init__(config or BaseLlmConfig())

    def generate_response(self, messages: list[dict[str, str]], *args: Any, **kwargs: Any) -> str:
        raise RuntimeError(
            "mem0 called the null LLM: this Memory was configured without a model, so only "
            "add(..., infer=False), search, get, update and delete are available"
        )


def register_null_llm() -> None:
    """Add ``"null"`` (``NullLLM``) to mem0's ``LlmFactory``. Idempotent."""
    with _lock:
        if NULL_LLM_PROVIDER not in LlmFactory.provider_to_class:
            LlmFactory.register_provider(NULL_LLM_PROVIDER, f"{NullLLM.__module__}.{NullLLM.__name__}", BaseLlmConfig)


def null_llm_config() -> LlmConfig:
    """The ``llm`` entry for ``Memory.from_config`` selecting ``NullLLM``.

    mem0's ``LlmConfig`` validator accepts only a hard-coded tuple of provider names, so a
    registered provider cannot pass through a plain dict; an already-built ``LlmConfig`` is taken
    as is by ``MemoryConfig`` (pydantic does not revalidate instances).
    """
    register_null_llm()
    return LlmConfig.model_construct(provider=NULL_LLM_PROVIDER, config={})


# ---------------------------------------------------------------------------------- embedders
def register_embedder(name: str, class_path: str) -> None:
    """Add an embedder provider to mem0's ``EmbedderFactory`` (idempotent)."""
    with _lock:
        EmbedderFactory.provider_to_class[name] = class_path


def embedder_providers() -> set[str]:
    """The embedder providers mem0's factory knows (its own and the ones registered here)."""
    return set(EmbedderFactory.provider_to_class)


class RegisteredEmbedderConfig(EmbedderConfig):
    """mem0's ``EmbedderConfig``, also accepting providers registered in ``EmbedderFactory``."""

    @field_validator("config")
    def validate_config(cls, v, values):  # noqa: N805 - same name replaces mem0's validator
        provider = values.data.get("provider")
        if provider in EmbedderFactory.provider_to_class:
            return v
        raise ValueError(f"Unsupported embedding provider: {provider}")


# ---------------------------------------------------------------------------------- Memory and its stores
def attach_history(memory: Any, history: Any) -> None:
    """Make ``memory`` write its history through ``history`` (mem0 writes through ``memory.db``)."""
    memory.db = history


def set_keyword_encoder(store: Any, encoder: Any) -> Any:
    """Give mem0's Qdrant store a BM25 encoder (it would lazily load fastembed's). Returns ``store``."""
    store._bm25_encoder = encoder
    return store


def wrap_filters(store: Any, field_condition: Callable[[Callable[..., Any]], Callable[..., Any]],
                 create_filter: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Any:
    """Wrap mem0's Qdrant store's filter builders: each wrapper gets mem0's function and returns
    the replacement. Returns ``store``."""
    store._build_field_condition = field_condition(store._build_field_condition)
    store._create_filter = create_filter(store._create_filter)
    return store


def server_filter(store: Any, filters: dict | None) -> Any:
    """mem0's Qdrant filter for ``filters`` (its dialect, with our wrappers), or None."""
    return store._create_filter(filters) if filters else None


def has_server_filter(store: Any) -> bool:
    return getattr(store, "client", None) is not None and hasattr(store, "_create_filter")


def lemmatize_for_bm25(text: str) -> str:
    """The ``text_lemmatized`` payload field mem0's own add writes."""
    from mem0.utils.lemmatization import lemmatize_for_bm25 as lemmatize

    return lemmatize(text)


# ---------------------------------------------------------------------------------- the check
def check_mem0_internals() -> None:
    """Raise ``RuntimeError`` naming the installed mem0 version if any internal used above moved."""
    import inspect

    from mem0 import Memory
    from mem0.utils import lemmatization
    from mem0.vector_stores.qdrant import Qdrant

    problems = []
    if "_provider_configs" not in getattr(VectorStoreConfig, "__private_attributes__", {}):
        problems.append("VectorStoreConfig._provider_configs")
    for factory in (VectorStoreFactory, LlmFactory, EmbedderFactory):
        if not isinstance(getattr(factory, "provider_to_class", None), dict):
            problems.append(f"{factory.__name__}.provider_to_class")
    if not hasattr(LlmFactory, "register_provider"):
        problems.append("LlmFactory.register_provider")
    if "config" not in getattr(EmbedderConfig, "model_fields", {}):
        problems.append("EmbedderConfig.config")
    for name in ("_build_field_condition", "_create_filter"):
        if not callable(getattr(Qdrant, name, None)):
            problems.append(f"mem0.vector_stores.qdrant.Qdrant.{name}")
    if "self._bm25_encoder" not in inspect.getsource(Qdrant):
        problems.append("mem0.vector_stores.qdrant.Qdrant._bm25_encoder")
    if "self.db" not in inspect.getsource(Memory):
        problems.append("mem0.Memory.db (history writes)")
    if not callable(getattr(lemmatization, "lemmatize_for_bm25", None)):
        problems.append("mem0.utils.lemmatization.lemmatize_for_bm25")
    if problems:
        raise RuntimeError(f"mem0 {metadata.version('mem0ai')} moved internals Optimus relies on: "
                           f"{', '.join(problems)}. Update core/memory/mem0_adapter.py for this version.")
