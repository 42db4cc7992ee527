"""Builds the one ``mem0.Memory`` of a process and the :class:`MemoryService` around it.

Embedded and ephemeral storage use Qdrant Edge in the data dir ("qdrant_edge" provider);
server storage uses mem0's own "qdrant" provider on a collection we create with binary
quantization. The embedder is the one ``OPTIMUS_EMBEDDER`` names (:mod:`core.memory.embedders`):
the bundled MiniLM ("optimus_local" provider) or any provider of mem0's ``EmbedderFactory``.
mem0's LLM is a "null" provider: Optimus's own two-phase pipeline does the inference, never mem0.

Before mem0 opens the store, the store is checked against the embedder
(:mod:`core.memory.store_embedding`): a store filled by another embedder stops the start with both
sizes and the re-embed command, and so does a re-embed that was interrupted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from core.audit import AuditLog
from core.config import Settings
from core.errors import ConfigError, StoreUnavailable
from core.memory import store_embedding as stores
from core.memory.embedders import EmbedderChoice, choose_embedder, mem0_config, missing_package
from core.memory.history import SqlHistory
from core.memory.service import MemoryService
from core.memory.store_embedding import COLLECTION
from core.storage import Storage

if TYPE_CHECKING:
    from core.memory.reembed import ReembedReport

log = logging.getLogger(__name__)

__all__ = ["COLLECTION", "build_embedder", "build_memory", "build_memory_service", "check_store",
           "qdrant_client_for", "reembed_store"]


def qdrant_client_for(settings: Settings) -> Any:
    """The Qdrant server client of server mode (``":memory:"`` when no URL is set, as in tests)."""
    from core.memory.vector_server import RescoringQdrantClient

    api_key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
    url = settings.qdrant_url or ":memory:"
    return RescoringQdrantClient(location=url) if url == ":memory:" else RescoringQdrantClient(url=url, api_key=api_key)


def _checked_server_collection(client: Any, choice: EmbedderChoice) -> tuple[str | None, bool]:
    """The collection ``memories`` resolves to (None: none yet) and whether it records its embedder;
    :class:`ConfigError` if another embedder filled it or a re-embed is half done."""
    name = stores.resolve_collection(client, COLLECTION)
    if name is None:
        stores.interrupted_server_reembeds(client)
        return None, False
    found = stores.server_embedding(client, name)
    stores.check_embedder(found, choice, where=f"Qdrant collection {name!r}")
    return name, found.recorded


def _server_collection(client: Any, choice: EmbedderChoice) -> str:
    """The checked collection behind ``memories``, prepared for mem0 (created when there is none)."""
    from core.memory.vector_server import ensure_memory_collections

    name, recorded = _checked_server_collection(client, choice)
    if name is None:
        record = {stores.META_KEY: {"embedder": choice.id, "dims": choice.dims}}
        ensure_memory_collections(client, COLLECTION, choice.dims, metadata=record)
        return COLLECTION
    ensure_memory_collections(client, name, choice.dims)
    if not recorded:
        try:
            stores.record_server_embedding(client, name, choice)
        except Exception as exc:  # a server without collection metadata: the size check still guards it
            log.warning("could not record the embedder in Qdrant collection %r: %s", name, type(exc).__name__)
    return name


def _check_edge(vectors: Path, choice: EmbedderChoice) -> None:
    stores.check_no_interrupted_reembed(vectors)
    for name in (COLLECTION, stores.ENTITIES):
        found = stores.edge_embedding(vectors / name)
        if found is not None:
            stores.check_embedder(found, choice, where=f"Qdrant Edge shard {vectors / name}")


def check_store(settings: Settings, storage: Storage, *, qdrant_client: Any | None = None) -> EmbedderChoice:
    """The start check alone: :class:`ConfigError` (both sizes, the re-embed command) unless the store
    was filled by the configured embedder. Loads no model and changes nothing; ``open_runtime`` runs it
    so a mismatch stops the app at start, before the first memory is touched."""
    choice = choose_embedder(settings)
    if storage.mode != "server":
        assert storage.vector_path is not None
        _check_edge(storage.vector_path, choice)
        return choice
    client = qdrant_client if qdrant_client is not None else qdrant_client_for(settings)
    try:
        _checked_server_collection(client, choice)
    except ConfigError:
        raise
    except Exception as exc:
        raise StoreUnavailable(f"Qdrant server: could not read the '{COLLECTION}' collection: {exc}") from exc
    finally:
        if qdrant_client is None:
            client.close()
    return choice


def _vector_store_config(storage: Storage, choice: EmbedderChoice, qdrant_client: Any | None,
                         settings: Settings) -> tuple[dict, Any]:
    dims = choice.dims
    if storage.mode == "server":
        from core.memory.vector_server import mem0_vector_store_config

        client = qdrant_client if qdrant_client is not None else qdrant_client_for(settings)
        try:
            name = _server_collection(client, choice)
        except ConfigError:
            raise
        except Exception as exc:
            raise StoreUnavailable(f"Qdrant server: could not prepare the '{COLLECTION}' collection: {exc}") from exc
        return mem0_vector_store_config(client, name, dims), client
    from core.memory.mem0_adapter import register_vector_stores

    register_vector_stores()
    assert storage.vector_path is not None
    _check_edge(storage.vector_path, choice)
    for name in (COLLECTION, stores.ENTITIES):  # mem0 creates the entity shard later, around its record
        found = stores.edge_embedding(storage.vector_path / name)
        if found is None or not found.recorded:
            stores.record_edge_embedding(storage.vector_path / name, choice)
    return {
        "provider": "qdrant_edge",
        "config": {"collection_name": COLLECTION, "path": str(storage.vector_path), "embedding_model_dims": dims},
    }, None


def build_embedder(settings: Settings) -> tuple[EmbedderChoice, Any]:
    """The configured embedder, built by mem0's ``EmbedderFactory`` (for work outside ``Memory``)."""
    from mem0.utils.factory import EmbedderFactory

    from core.logs import quiet_mem0

    quiet_mem0()
    choice = choose_embedder(settings)
    config = mem0_config(choice)
    try:
        return choice, EmbedderFactory.create(config.provider, config.config, None)
    except ImportError as exc:
        raise missing_package(exc, choice) from exc
    except ConfigError:
        raise
    except Exception as exc:  # e.g. Ollama unreachable while mem0 checks the model is pulled
        raise StoreUnavailable(f"The embedder {choice.id} could not start: {type(exc).__name__}.") from exc


def build_memory(settings: Settings, storage: Storage, *, qdrant_client: Any | None = None) -> Any:
    """One ``mem0.Memory`` wired to our vector store, the configured embedder and a null LLM."""
    from mem0 import Memory
    from mem0.configs.base import MemoryConfig

    from core.logs import quiet_mem0
    from core.memory.mem0_adapter import null_llm_config

    quiet_mem0()  # mem0 logs memory text (every update at INFO); nothing it says may reach our logs
    choice = choose_embedder(settings)
    vector_store, client = _vector_store_config(storage, choice, qdrant_client, settings)
    config = MemoryConfig(
        vector_store=vector_store,
        embedder=mem0_config(choice),
        llm=null_llm_config(),
        history_db_path=":memory:",  # replaced by SqlHistory below; nothing touches ~/.mem0
    )
    try:
        memory = Memory(config)
    except ImportError as exc:
        raise missing_package(exc, choice) from exc
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


def reembed_store(settings: Settings, storage: Storage, *, qdrant_client: Any | None = None, batch_size: int = 100,
                  progress: Callable[[str], None] = print) -> ReembedReport:
    """Move the memory store to the configured embedder (``python -m core reembed``; the app stopped)."""
    from core.memory.reembed import EdgeReembed, ServerReembed

    choice, embedder = build_embedder(settings)
    if storage.mode == "server":
        client = qdrant_client if qdrant_client is not None else qdrant_client_for(settings)
        job: Any = ServerReembed(client, choice, embedder, batch_size=batch_size, progress=progress)
    else:
        assert storage.vector_path is not None
        job = EdgeReembed(storage.vector_path, choice, embedder, batch_size=batch_size, progress=progress)
    return job.run()
