"""Optimus providers added to mem0's factories: the "qdrant_edge" vector store and a "null" LLM.

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
from typing import Any

from mem0.configs.llms.base import BaseLlmConfig
from mem0.llms.base import LLMBase
from mem0.llms.configs import LlmConfig
from mem0.utils.factory import LlmFactory, VectorStoreFactory
from mem0.vector_stores.configs import VectorStoreConfig

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
