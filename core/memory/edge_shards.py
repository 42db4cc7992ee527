"""Qdrant Edge shards of this process: one open shard per directory, shared by every store object
that points at it (mem0 builds several over one configuration), with its lock, its payload
indexes and the translation of open errors (a second process gets ``StoreUnavailable``)."""

from __future__ import annotations

import atexit
import json
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import qdrant_edge as qe

from core.errors import ConfigError, StoreUnavailable
from core.memory.fields import DATETIME_FIELDS, DENSE, INTEGER_FIELDS, KEYWORD_FIELDS, TENANT_FIELD, TEXT_FIELD

if TYPE_CHECKING:
    from core.memory.vector_edge import QdrantEdgeConfig

logger = logging.getLogger(__name__)


def undecodable(exc: BaseException) -> bool:
    """True for Edge's error about a stored payload it cannot decode."""
    text = str(exc)
    return "Failed to decode" in text or "deserialize payload" in text



class Shard:
    """One open Edge shard, shared by every store object of this process that points at its directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.RLock()
        self.edge: qe.EdgeShard | None = None
        self.dims: int | None = None
        self.written_since_optimize = 0
        self.rebuild_problem: str | None = None  # why the last index rebuild failed, until one succeeds
        self.bm25 = qe.Bm25()

    def open(self, config: QdrantEdgeConfig) -> qe.EdgeShard:
        """Load the shard, creating it (with payload indexes) when the directory holds none."""
        if self.edge is not None:
            self._check_dims(config)
            return self.edge
        created = not (self.path / "edge_config.json").exists()
        try:
            if created:
                self.path.mkdir(parents=True, exist_ok=True)
                self.edge = qe.EdgeShard.create(str(self.path), config.edge_config())
            else:
                self.edge = qe.EdgeShard.load(str(self.path))
        except Exception as exc:  # the bindings raise bare Exception with the Rust error text
            raise translate_open_error(self.path, exc) from exc
        self.dims = stored_dims(self.path) if not created else config.embedding_model_dims
        create_payload_indexes(self.edge)
        self._check_dims(config)
        return self.edge

    def _check_dims(self, config: QdrantEdgeConfig) -> None:
        if self.dims is not None and self.dims != config.embedding_model_dims:
            raise ConfigError(
                f"vector store collection {self.path.name!r}: dims mismatch, it holds {self.dims}-d vectors "
                f"but embedding_model_dims is {config.embedding_model_dims}. Use the embedder the collection "
                f"was built with, or re-embed it (`python -m core reembed`)."
            )

    def close(self) -> None:
        if self.edge is not None:
            try:
                self.edge.close()  # flushes
            finally:
                self.edge = None


_registry_lock = threading.Lock()
_shards: dict[Path, Shard] = {}


def shard_for(path: Path) -> Shard:
    key = path.resolve()
    with _registry_lock:
        shard = _shards.get(key)
        if shard is None:
            shard = _shards[key] = Shard(key)
        return shard


@atexit.register
def close_all_shards() -> None:
    """Flush and close every shard this process opened (also run at interpreter exit)."""
    with _registry_lock:
        shards = list(_shards.values())
    for shard in shards:
        with shard.lock:
            try:
                shard.close()
            except Exception:  # at exit there is nobody left to tell
                logger.exception("closing Edge shard %s failed", shard.path)


def translate_open_error(path: Path, exc: Exception) -> Exception:
    text = str(exc)
    if "WouldBlock" in text or "Can't init WAL" in text:
        return StoreUnavailable(
            f"The vector store at {path} is in use by another process. Only one Optimus process may open "
            f"an embedded (Qdrant Edge) store; stop the other one or use the Qdrant server backend.",
            detail={"path": str(path), "error": text},
        )
    return StoreUnavailable(f"The vector store at {path} could not be opened: {text}", detail={"path": str(path)})


def stored_dims(path: Path) -> int | None:
    """Dense vector size recorded in the shard's edge_config.json (None if the layout is unexpected)."""
    try:
        stored = json.loads((path / "edge_config.json").read_text())
        vectors = stored.get("vectors") or stored.get("vector_data") or {}
        params = vectors.get(DENSE, vectors) if isinstance(vectors, dict) else {}
        size = params.get("size")
        return int(size) if size is not None else None
    except (OSError, ValueError, AttributeError):
        return None


def create_payload_indexes(edge: qe.EdgeShard) -> None:
    """Create the payload indexes this version filters on that the shard does not have yet (a new
    shard gets them all; an older one gets those added since, e.g. the expiry index)."""
    existing = set(edge.info().payload_schema)
    wanted: list[tuple[str, Any]] = [(TENANT_FIELD, qe.KeywordIndexParams(is_tenant=True))]
    wanted += [(name, qe.PayloadSchemaType.Keyword) for name in KEYWORD_FIELDS]
    wanted += [(name, qe.PayloadSchemaType.Integer) for name in INTEGER_FIELDS]
    wanted += [(name, qe.PayloadSchemaType.Datetime) for name in DATETIME_FIELDS]
    wanted.append((TEXT_FIELD, qe.TextIndexParams(tokenizer=qe.TokenizerType.Word, lowercase=True)))
    for name, params in wanted:
        if name in existing:
            continue
        try:
            edge.update(qe.UpdateOperation.create_field_index(name, params))
        except BaseException as exc:  # indexing reads every payload; a damaged one must not stop the start
            if not undecodable(exc):
                raise
            logger.warning("Edge shard: could not index %r, a stored payload cannot be decoded", name)
