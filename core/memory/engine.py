"""Builds the one ``mem0.Memory`` of a process and the :class:`MemoryService` around it.

Embedded and ephemeral storage use Qdrant Edge in the data dir ("qdrant_edge" provider);
server storage uses mem0's own "qdrant" provider on a collection we create with binary
quantization. The embedder is the bundled MiniLM ("optimus_local" provider). mem0's LLM is a
"null" provider: Optimus's own two-phase pipeline does the inference, never mem0.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import Engine

from core.audit import AuditLog
from core.config import Settings
from core.errors import ConfigError, StoreUnavailable
from core.memory.history import SqlHistory
from core.memory.service import MemoryService
from core.storage import Storage

log = logging.getLogger(__name__)

COLLECTION = "memories"


def _vector_store_config(settings: Settings, storage: Storage, dims: int, qdrant_client: Any | None) -> tuple[dict, Any]:
    if storage.mode == "server":
        from core.memory.vector_server import RescoringQdrantClient, ensure_memory_collections, mem0_vector_store_config

        client = qdrant_client
        if client is None:
            api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
            url = settings.qdrant_url or ":memory:"
            client = RescoringQdrantClient(location=url) if url == ":memory:" else RescoringQdrantClient(url=url, api_key=api_key)
        try:
            ensure_memory_collections(client, COLLECTION, dims)
        except ConfigError:
            raise
        except Exception as exc:
            raise StoreUnavailable(f"Qdrant server: could not prepare the '{COLLECTION}' collection: {exc}") from exc
        return mem0_vector_store_config(client, COLLECTION, dims), client
    from core.memory.registry import register_vector_stores

    register_vector_stores()
    assert storage.vector_path is not None
    return {
        "provider": "qdrant_edge",
        "config": {"collection_name": COLLECTION, "path": str(storage.vector_path), "embedding_model_dims": dims},
    }, None


def build_memory(settings: Settings, storage: Storage, *, qdrant_client: Any | None = None) -> Any:
    """One ``mem0.Memory`` wired to our vector store, embedder and a null LLM."""
    from mem0 import Memory
    from mem0.configs.base import MemoryConfig

    from core.logs import quiet_mem0
    from core.memory.embedder import EMBEDDING_DIMS, mem0_embedder_config
    from core.memory.registry import null_llm_config

    quiet_mem0()  # mem0 logs memory text (every update at INFO); nothing it says may reach our logs
    vector_store, client = _vector_store_config(settings, storage, EMBEDDING_DIMS, qdrant_client)
    cache_dir = settings.model_cache
    config = MemoryConfig(
        vector_store=vector_store,
        embedder=mem0_embedder_config(settings.embedder_backend, cache_dir=cache_dir),
        llm=null_llm_config(),
        history_db_path=":memory:",  # replaced by SqlHistory below; nothing touches ~/.mem0
    )
    try:
        memory = Memory(config)
    except (ConfigError, StoreUnavailable):
        raise
    except Exception as exc:
        raise StoreUnavailable(f"Long-term memory could not start: {type(exc).__name__}: {exc}") from exc
    if client is not None:
        from core.memory.vector_server import enable_keyword_search, match_wildcard_as_present

        enable_keyword_search(memory.vector_store)
        match_wildcard_as_present(memory.vector_store)
    return memory


def build_memory_service(settings: Settings, storage: Storage, engine: Engine | None = None, *,
                         qdrant_client: Any | None = None, audit: AuditLog | None = None) -> MemoryService:
    """The memory service; with ``audit``, every memory change is an audit event too."""
    memory = build_memory(settings, storage, qdrant_client=qdrant_client)
    return MemoryService(memory, SqlHistory(engine or storage.engine, audit=audit))
