"""mem0 vector store on Qdrant Edge: the real Qdrant engine running inside this process.

One collection is one Edge shard in its own directory (``<path>/<collection_name>``). Points are
stored with a dense cosine vector (named ``""``, as mem0's own Qdrant store does) and a BM25
sparse vector (named ``"bm25"``, IDF modifier) computed from the payload text, so mem0's hybrid
scoring gets a real keyword leg without fastembed.

Process model
    Edge holds a file lock on the shard's WAL, so a directory can be opened once per process.
    mem0 builds several store objects over the same configuration (the memories collection, its
    ``_entities`` twin, copies of the config), so shards live in a process-wide registry keyed by
    directory and every call takes that shard's lock. The bindings never release the GIL, so the
    lock costs no parallelism. A second *process* gets ``StoreUnavailable``.

Durability
    A write is in the WAL when ``insert``/``update``/``delete`` return, which survives a crash of
    this process (tested with SIGKILL). Surviving power loss needs ``flush()``; ``close()`` flushes.

Damaged payloads
    Edge stores JSON it cannot decode again (nested deeper than ~128). ``MemoryService`` refuses
    such input, but a shard written before that may hold some. So a write is never reported failed
    because the index rebuild after it failed (the write itself is in; :attr:`rebuild_problem`
    says what is wrong, for the health report); listing skips points it cannot decode; and
    ``delete`` removes them anyway.
"""

from __future__ import annotations

import logging
import shutil
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, Literal

import qdrant_edge as qe
from mem0.vector_stores.base import VectorStoreBase
from pydantic import BaseModel, ConfigDict, Field

from core.errors import ConfigError, StoreUnavailable, ValidationError
from core.memory.edge_filters import build_filter, with_live
from core.memory.edge_reads import EdgeEngineReads, VectorHit, hit
from core.memory.edge_shards import shard_for, undecodable
from core.memory.fields import (
    DENSE,
    SPARSE,
)

logger = logging.getLogger(__name__)

Quantization = Literal["none", "1bit", "1.5bit", "2bit"]
QueryEncoding = Literal["default", "binary", "scalar4bits", "scalar8bits"]



_ENCODINGS = {
    "1bit": qe.BinaryQuantizationEncoding.OneBit,
    "1.5bit": qe.BinaryQuantizationEncoding.OneAndHalfBits,
    "2bit": qe.BinaryQuantizationEncoding.TwoBits,
}
_QUERY_ENCODINGS = {
    "default": qe.BinaryQuantizationQueryEncoding.Default,
    "binary": qe.BinaryQuantizationQueryEncoding.Binary,
    "scalar4bits": qe.BinaryQuantizationQueryEncoding.Scalar4Bits,
    "scalar8bits": qe.BinaryQuantizationQueryEncoding.Scalar8Bits,
}

# Chosen by bench/bq_encoding.py (figures in bench/RESULTS.md): among quantized configurations the
# fastest with recall@10 >= 0.95 (0.999) for memory-like queries on 384-d MiniLM, tenant-filtered, at
# 10k and 100k points; 1 and 1.5 bits never reach it at 384-d, and oversampling 8 costs no more
# latency than 4 here while lifting recall (0.989 -> 0.999; at 1M, 0.78 -> 0.89).
DEFAULT_QUANTIZATION: Quantization = "2bit"
DEFAULT_QUERY_ENCODING: QueryEncoding = "scalar8bits"
DEFAULT_OVERSAMPLING = 8.0


class QdrantEdgeConfig(BaseModel):
    """Settings of one Edge-backed collection; the mem0 ``vector_store.config`` for "qdrant_edge"."""

    model_config = ConfigDict(extra="forbid")

    collection_name: str = Field("mem0", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    path: str = Field(..., description="Root directory; the shard lives in path/collection_name")
    embedding_model_dims: int = Field(384, gt=0)
    quantization: Quantization = DEFAULT_QUANTIZATION
    query_encoding: QueryEncoding = DEFAULT_QUERY_ENCODING
    oversampling: float = Field(DEFAULT_OVERSAMPLING, ge=1.0)
    hnsw_m: int = Field(16, gt=0)
    hnsw_ef_construct: int = Field(100, gt=0)
    full_scan_threshold: int = Field(10_000, ge=0, description="KB of vectors below which a filtered search scans")
    hnsw_ef: int = Field(128, gt=0)
    optimize_after: int = Field(
        1_000, ge=0, description="Run optimize() once this many points were written since the last run; 0 = never"
    )

    @property
    def shard_path(self) -> Path:
        return Path(self.path) / self.collection_name

    def edge_config(self) -> qe.EdgeConfig:
        quantization = None
        if self.quantization != "none":
            quantization = qe.BinaryQuantizationConfig(
                encoding=_ENCODINGS[self.quantization],
                query_encoding=_QUERY_ENCODINGS[self.query_encoding],
                memory=qe.Memory.Pinned,  # the codes are what HNSW walks; originals are only read to rescore
            )
        return qe.EdgeConfig(
            vectors=qe.EdgeVectorParams(
                size=self.embedding_model_dims, distance=qe.Distance.Cosine, quantization_config=quantization
            ),
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            hnsw_config=qe.HnswIndexConfig(
                m=self.hnsw_m, ef_construct=self.hnsw_ef_construct, full_scan_threshold=self.full_scan_threshold
            ),
        )

    def search_params(self) -> qe.SearchParams:
        if self.quantization == "none":
            return qe.SearchParams(hnsw_ef=self.hnsw_ef)
        # Rescoring is not optional: without it BQ returns code distances (e.g. -214), and mem0 compares
        # scores with cosine thresholds (dedup at 0.95, search threshold 0.1).
        return qe.SearchParams(
            hnsw_ef=self.hnsw_ef,
            quantization=qe.QuantizationSearchParams(rescore=True, oversampling=self.oversampling),
        )


class EnginePanic(RuntimeError):
    """The Edge engine panicked (pyo3's ``PanicException`` is a BaseException; this is an error)."""


def _point_id(vector_id: Any) -> uuid.UUID | int:
    if isinstance(vector_id, uuid.UUID):
        return vector_id
    if isinstance(vector_id, int) and not isinstance(vector_id, bool) and vector_id >= 0:
        return vector_id
    if isinstance(vector_id, str):
        try:
            return uuid.UUID(vector_id)
        except ValueError:
            pass
    raise ValidationError(f"vector ids must be UUIDs or non-negative integers, got {vector_id!r}", field="id")


def _dense(vector: Any, dims: int) -> list[float]:
    values = vector.tolist() if hasattr(vector, "tolist") else list(vector)
    if len(values) != dims:
        raise ValidationError(f"vector has {len(values)} dimensions, the collection expects {dims}", field="vector")
    return values


class QdrantEdgeStore(EdgeEngineReads, VectorStoreBase):
    """mem0 ``VectorStoreBase`` on an in-process Qdrant Edge shard (one shard per collection).

    Scores are true cosine similarities (higher = more similar) even with binary quantization,
    because every quantized search is rescored with the original vectors.
    """

    def __init__(self, **config: Any) -> None:
        self.config = QdrantEdgeConfig(**config)
        self.collection_name = self.config.collection_name
        self.embedding_model_dims = self.config.embedding_model_dims
        self._search_params = self.config.search_params()
        self._shard = shard_for(self.config.shard_path)
        with self._locked():
            pass  # open (or create) now, so a locked or mismatched shard fails at construction

    @contextmanager
    def _locked(self) -> Iterator[qe.EdgeShard]:
        with self._shard.lock:
            try:
                yield self._shard.open(self.config)
            except BaseException as exc:
                # A Rust panic surfaces as pyo3's PanicException, a BaseException: make it an error.
                if type(exc).__name__ == "PanicException":
                    raise EnginePanic(str(exc)) from exc
                raise

    # -- collection lifecycle ------------------------------------------------------------------

    def create_col(self, name: str | None = None, vector_size: int | None = None, distance: Any = None) -> None:
        """Open or create this store's shard (mem0 calls this; the name/size come from the config)."""
        if vector_size is not None and vector_size != self.embedding_model_dims:
            raise ConfigError(
                f"create_col({name!r}, {vector_size}): dims mismatch with embedding_model_dims "
                f"{self.embedding_model_dims}"
            )
        with self._locked():
            pass

    def delete_col(self) -> None:
        """Close the shard and delete its directory. The next call on any store object recreates it empty."""
        with self._shard.lock:
            self._shard.close()
            self._shard.dims = None
            self._shard.written_since_optimize = 0
            shutil.rmtree(self._shard.path, ignore_errors=True)

    def reset(self) -> None:
        logger.warning("resetting vector store collection %s", self.collection_name)
        self.delete_col()
        self.create_col()

    def list_cols(self) -> list[str]:
        root = Path(self.config.path)
        if not root.is_dir():
            return []
        return sorted(p.name for p in root.iterdir() if (p / "edge_config.json").exists())

    def col_info(self) -> dict[str, Any]:
        with self._locked() as edge:
            info = edge.info()
            return {
                "name": self.collection_name,
                "path": str(self._shard.path),
                "dims": self.embedding_model_dims,
                "quantization": self.config.quantization,
                "query_encoding": self.config.query_encoding,
                "points_count": info.points_count,
                "indexed_vectors_count": info.indexed_vectors_count,
                "segments_count": info.segments_count,
                "payload_schema": sorted(info.payload_schema),
                "written_since_optimize": self._shard.written_since_optimize,
            }

    # -- writes --------------------------------------------------------------------------------

    def insert(self, vectors: Sequence[Any], payloads: Sequence[dict] | None = None, ids: Sequence[Any] | None = None):
        """Upsert points; when this returns they are in the WAL and survive a crash of the process."""
        vectors = list(vectors)
        if payloads is not None and len(payloads) != len(vectors):
            raise ValidationError("insert: payloads and vectors differ in length", field="payloads")
        if ids is not None and len(ids) != len(vectors):
            raise ValidationError("insert: ids and vectors differ in length", field="ids")
        if ids is None:
            ids = [str(uuid.uuid4()) for _ in vectors]
        with self._locked():
            points = []
            for index, vector in enumerate(vectors):
                payload = dict(payloads[index]) if payloads else {}
                points.append(qe.Point(_point_id(ids[index]), self._named_vectors(vector, payload), payload))
            if points:
                self._write(qe.UpdateOperation.upsert_points(points))
                self._after_write(len(points))

    def update(self, vector_id: Any, vector: Any = None, payload: dict | None = None) -> None:
        """mem0 semantics: vector+payload replaces the point; payload alone is merged; vector alone is replaced."""
        point_id = _point_id(vector_id)
        with self._locked():
            if vector is not None and payload is not None:
                payload = dict(payload)
                point = qe.Point(point_id, self._named_vectors(vector, payload), payload)
                self._write(qe.UpdateOperation.upsert_points([point]))
            elif payload is not None:
                self._write(qe.UpdateOperation.set_payload([point_id], dict(payload)))
                text = self._bm25_text(payload)
                if text is not None:  # keep the keyword leg in step with the new text
                    self._write(
                        qe.UpdateOperation.update_vectors(
                            [qe.PointVectors(point_id, {SPARSE: self._shard.bm25.embed_document(text)})]
                        )
                    )
            elif vector is not None:
                self._write(
                    qe.UpdateOperation.update_vectors(
                        [qe.PointVectors(point_id, {DENSE: _dense(vector, self.embedding_model_dims)})]
                    )
                )
            else:
                return
            self._after_write(1)

    def delete(self, vector_id: Any) -> None:
        """Remove a point, also one whose payload cannot be decoded: deleting reads the payload to
        update the indexes, so an undecodable one is overwritten with an empty payload first."""
        point_id = _point_id(vector_id)
        with self._locked() as edge:
            try:
                edge.retrieve([point_id], with_payload=True, with_vector=False)
            except BaseException as exc:  # bare Exception with the Rust error text, or a panic
                if not undecodable(exc):
                    raise
                self._write(qe.UpdateOperation.overwrite_payload([point_id], {}))
                logger.warning("deleting Edge point %s whose payload could not be decoded", point_id)
            self._write(qe.UpdateOperation.delete_points([point_id]))

    def _write(self, operation: Any) -> None:
        """Apply one update to the shard.

        After an update fails, Edge refuses every later one ("Not recovered from previous error")
        until the shard is reopened; one account's bad write would block everybody's. So reopen it
        and try once more.
        """
        try:
            self._shard.edge.update(operation)
        except BaseException as exc:
            if "Not recovered from previous error" not in str(exc):
                raise
            logger.warning("Edge shard %s refused writes after an earlier failure; reopening it", self._shard.path)
            self._shard.close()
            self._shard.open(self.config).update(operation)

    def _named_vectors(self, vector: Any, payload: dict) -> dict[str, Any]:
        named: dict[str, Any] = {DENSE: _dense(vector, self.embedding_model_dims)}
        text = self._bm25_text(payload)
        if text:
            sparse = self._shard.bm25.embed_document(text)
            if sparse.indices:
                named[SPARSE] = sparse
        return named

    @staticmethod
    def _bm25_text(payload: dict) -> str | None:
        # mem0 stores a lemmatized copy when spaCy is available and queries with lemmatized text.
        if "text_lemmatized" in payload or "data" in payload:
            return str(payload.get("text_lemmatized") or payload.get("data") or "")
        return None

    # Index policy. Edge never indexes on its own: new points sit in an appendable segment that is
    # searched exhaustively (exact; 0.3-1.2 ms per query up to 20k points at 384-d), and
    # ``optimize()`` synchronously turns a segment that outgrew the indexing threshold (~10 MB of
    # vectors, about 6.5k points at 384-d) into HNSW + quantized codes. Measured: optimize() is a
    # no-op costing < 0.1 ms while nothing qualifies and ~2 s when a 10k-point segment does. So we
    # call it after every ``optimize_after`` written points, inline in the write that crosses the
    # mark: almost always free, one ~2 s build per ~6.5k memories, paid on a write (memories are
    # stored after the reply is streamed) rather than by searches degrading to full scans. A
    # background thread would not help: the bindings hold the GIL, so it would stall the app alike.
    #
    # The write that triggers a rebuild is already in the WAL. A rebuild that fails (a damaged
    # payload) must not turn it into an error: the caller would see a failure for a change that
    # was made, and mem0 would skip writing its history. It is recorded in ``rebuild_problem``
    # instead, and tried again after another ``optimize_after`` writes.
    def _after_write(self, count: int) -> None:
        self._shard.written_since_optimize += count
        threshold = self.config.optimize_after
        if threshold and self._shard.written_since_optimize >= threshold:
            try:
                self._optimize(self._shard.edge)
            except StoreUnavailable:
                pass  # recorded in rebuild_problem and logged; the write itself succeeded

    def _optimize(self, edge: qe.EdgeShard) -> bool:
        started = time.perf_counter()
        self._shard.written_since_optimize = 0
        try:
            changed = edge.optimize()
        except BaseException as exc:  # bare Exception with the Rust error text, or a panic
            if not isinstance(exc, Exception) and not undecodable(exc):
                raise
            if undecodable(exc):
                damaged = self._damaged_ids(edge)
                reason = f"{len(damaged) or 'a'} stored payload(s) cannot be decoded"
                logger.warning("Edge shard %s: points whose payload cannot be decoded: %s", self._shard.path,
                               ", ".join(damaged[:100]) or "none found by a scan")
            else:
                reason = type(exc).__name__
            self._shard.rebuild_problem = f"the index rebuild fails: {reason}"
            logger.warning("optimizing Edge shard %s failed: %s", self._shard.path, reason)
            raise StoreUnavailable(f"The vector index could not be rebuilt: {reason}.") from exc
        self._shard.rebuild_problem = None
        logger.info(
            "optimized Edge shard %s in %.2fs (changed=%s)", self._shard.path, time.perf_counter() - started, changed
        )
        return changed

    def optimize(self) -> bool:
        """Build pending HNSW/quantization indexes now (blocking). True if any segment changed.
        Raises :class:`StoreUnavailable` if the rebuild fails (see :attr:`rebuild_problem`)."""
        with self._locked() as edge:
            return self._optimize(edge)

    @staticmethod
    def _damaged_ids(edge: qe.EdgeShard) -> list[str]:
        """Ids of the points whose payload cannot be decoded (a full scan, a page at a time)."""
        damaged: list[str] = []
        offset = None
        while True:
            ids, offset = edge.scroll(qe.ScrollRequest(offset=offset, limit=1_000, with_payload=False,
                                                       with_vector=False))
            try:
                edge.retrieve([r.id for r in ids], with_payload=True, with_vector=False)
            except BaseException as exc:
                if not undecodable(exc):
                    raise
                for record in ids:
                    try:
                        edge.retrieve([record.id], with_payload=True, with_vector=False)
                    except BaseException as inner:
                        if not undecodable(inner):
                            raise
                        damaged.append(str(record.id))
            if offset is None or not ids:
                return damaged

    @property
    def rebuild_problem(self) -> str | None:
        """Why the last index rebuild of this shard failed, or None (health reports it)."""
        return self._shard.rebuild_problem

    def flush(self) -> None:
        """Force the shard to disk (power-loss durability; process crashes are covered by the WAL)."""
        with self._locked() as edge:
            edge.flush()

    def copy_shard_to(self, target: Path) -> None:
        """A consistent copy of the shard's files in ``target`` (Qdrant Edge cannot create snapshots):
        flushed, then copied while the shard's lock keeps every search and write out."""
        with self._locked() as edge:
            edge.flush()
            shutil.copytree(self.config.shard_path, target)

    def close(self) -> None:
        """Flush and release the shard for every store object of this process using it."""
        with self._shard.lock:
            self._shard.close()

    # -- reads ---------------------------------------------------------------------------------

    def search(self, query: str, vectors: Any, top_k: int = 5, filters: dict | None = None) -> list[VectorHit]:
        """Nearest points by cosine similarity, best first; ``score`` is the exact cosine."""
        request = self._dense_request(vectors, top_k, filters)
        with self._locked() as edge:
            return [hit(p) for p in edge.query(request)]

    def search_batch(self, queries: list, vectors_list: list, top_k: int = 1, filters: dict | None = None):
        if not vectors_list:
            return []
        requests = [self._dense_request(v, top_k, filters) for v in vectors_list]
        with self._locked() as edge:
            return [[hit(p) for p in hits] for hits in edge.query_batch(qe.QueryBatchRequest(requests))]

    def _dense_request(self, vector: Any, top_k: int, filters: dict | None) -> qe.QueryRequest:
        return qe.QueryRequest(
            limit=max(int(top_k), 1),
            query=qe.Query.Nearest(_dense(vector, self.embedding_model_dims), using=DENSE),
            filter=build_filter(filters),
            with_payload=True,
            params=self._search_params,
        )

    def keyword_search(self, query: str, top_k: int = 5, filters: dict | None = None) -> list[VectorHit]:
        """BM25 (IDF) matches of the query words in the payload text; raw BM25 scores, higher = better."""
        sparse = self._shard.bm25.embed_query(query or "")
        if not sparse.indices:
            return []
        request = qe.QueryRequest(
            limit=max(int(top_k), 1),
            query=qe.Query.Nearest(sparse, using=SPARSE),
            filter=build_filter(filters),
            with_payload=True,
        )
        with self._locked() as edge:
            return [hit(p) for p in edge.query(request)]

    def get(self, vector_id: Any) -> VectorHit | None:
        try:
            point_id = _point_id(vector_id)
        except ValidationError:
            return None  # no such memory; a malformed id is not an existing one
        with self._locked() as edge:
            records = edge.retrieve([point_id], with_payload=True, with_vector=False)
        return hit(records[0]) if records else None

    def list(self, filters: dict | None = None, top_k: int | None = 100) -> list[list[VectorHit]]:
        """Up to ``top_k`` points matching ``filters``, wrapped as ``[rows]`` like mem0's qdrant store.
        Points whose payload cannot be decoded are left out (and logged by id)."""
        limit = 100 if top_k is None else max(int(top_k), 0)
        flt = build_filter(filters)
        rows: list[VectorHit] = []
        offset = None
        with self._locked() as edge:
            while len(rows) < limit:
                page = min(limit - len(rows), 1_000)
                request = qe.ScrollRequest(offset=offset, limit=page, filter=flt, with_payload=True, with_vector=False)
                try:
                    records, next_offset = edge.scroll(request)
                except BaseException as exc:
                    if not undecodable(exc):
                        raise
                    records, next_offset = self._decodable_page(edge, offset, page, flt)
                offset = next_offset
                rows.extend(hit(r) for r in records)
                if offset is None or not records:
                    break
        return [rows]

    def _decodable_page(self, edge: qe.EdgeShard, offset: Any, limit: int, flt: Any) -> tuple[list[Any], Any]:
        """The page a scroll would return, without the points whose payload cannot be decoded."""
        ids, next_offset = edge.scroll(
            qe.ScrollRequest(offset=offset, limit=limit, filter=flt, with_payload=False, with_vector=False))
        records = []
        for record in ids:
            try:
                records.extend(edge.retrieve([record.id], with_payload=True, with_vector=False))
            except BaseException as exc:
                if not undecodable(exc):
                    raise
                logger.warning("skipped Edge point %s: its payload cannot be decoded", record.id)
        return records, next_offset

    def count(self, filters: dict | None = None, *, live_on: date | None = None) -> int:
        """Points matching ``filters`` (and, with ``live_on``, not expired on that day), counted exactly."""
        with self._locked() as edge:
            return edge.count(qe.CountRequest(exact=True, filter=with_live(build_filter(filters), live_on)))
