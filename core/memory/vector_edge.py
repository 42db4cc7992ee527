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

import atexit
import json
import logging
import math
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import qdrant_edge as qe
from mem0.vector_stores.base import VectorStoreBase
from pydantic import BaseModel, ConfigDict, Field

from core.errors import ConfigError, StoreUnavailable, ValidationError
from core.memory.paging import EXPIRES, LIVE_ON

logger = logging.getLogger(__name__)

Quantization = Literal["none", "1bit", "1.5bit", "2bit"]
QueryEncoding = Literal["default", "binary", "scalar4bits", "scalar8bits"]

DENSE = ""
SPARSE = "bm25"

# Payload fields mem0 and Optimus filter on. ``owner_id`` is the tenant key: a tenant index keeps
# each owner's points together on disk and lets the planner search one owner's subgraph.
KEYWORD_FIELDS = ("user_id", "agent_id", "run_id", "actor_id", "type", "tags", "people", "hash")
TENANT_FIELD = "owner_id"
INTEGER_FIELDS = ("importance",)
DATETIME_FIELDS = ("created_at", "updated_at", "expires_at", "expiration_date")  # ISO-8601 strings (mem0)
TEXT_FIELD = "data"  # lowercase word index: backs ``icontains`` on the memory text

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


@dataclass(frozen=True)
class VectorHit:
    """One stored point as mem0 reads it: ``id`` (uuid string), ``score`` (higher = more similar), ``payload``."""

    id: str
    score: float | None
    payload: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Process-wide shard registry


class _Shard:
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
            raise _translate_open_error(self.path, exc) from exc
        self.dims = stored_dims(self.path) if not created else config.embedding_model_dims
        _create_payload_indexes(self.edge)
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
_shards: dict[Path, _Shard] = {}


def _shard_for(path: Path) -> _Shard:
    key = path.resolve()
    with _registry_lock:
        shard = _shards.get(key)
        if shard is None:
            shard = _shards[key] = _Shard(key)
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


def _translate_open_error(path: Path, exc: Exception) -> Exception:
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


def _create_payload_indexes(edge: qe.EdgeShard) -> None:
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
            if not _undecodable(exc):
                raise
            logger.warning("Edge shard: could not index %r, a stored payload cannot be decoded", name)


# ---------------------------------------------------------------------------------------------
# mem0 filter dialect -> Edge filter


def build_filter(filters: dict[str, Any] | None) -> qe.Filter | None:
    """Translate mem0's filter dialect to an Edge ``Filter``; unknown operators raise ``ValidationError``.

    Dialect (mem0/memory/main.py ``search``/``get_all`` docs and mem0's qdrant store):
    ``{"f": v}`` equality (a list means "any of"), ``{"f": "*"}`` field present,
    ``{"f": {"eq"|"ne"|"in"|"nin"|"gt"|"gte"|"lt"|"lte"|"contains"|"icontains": v}}`` (several operators
    on one field are AND-ed), ranges on numbers or ISO-8601 dates, and ``AND``/``OR``/``NOT`` (or mem0's
    ``$and``/``$or``/``$not``) over lists of filters.
    """
    if not filters:
        return None
    if not isinstance(filters, dict):
        raise ValidationError(f"filters must be a dict, got {type(filters).__name__}", field="filters")
    logical = {"AND": "AND", "$and": "AND", "OR": "OR", "$or": "OR", "NOT": "NOT", "$not": "NOT"}
    must: list[Any] = []
    should: list[Any] = []
    must_not: list[Any] = []
    seen_logical: set[str] = set()
    for key, value in filters.items():
        op = logical.get(key)
        if key == LIVE_ON:  # not expired on that day: in the engine, so expired memories take no slot
            must.append(_live_condition(live_day(value)))
            continue
        if op is None:
            must.extend(_field_conditions(key, value))
            continue
        # mem0 rewrites OR -> $or but keeps the original key too; evaluate each group once.
        if op in seen_logical:
            continue
        seen_logical.add(op)
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise ValidationError(f"{key} takes a list of filter dicts", field=key)
        subs = [sub for sub in (build_filter(item) for item in value) if sub is not None]
        if op == "AND":
            must.extend(subs)
        elif op == "OR":
            if not subs and value:
                continue  # every alternative is "match all"
            if not subs:
                raise ValidationError("OR needs at least one condition", field=key)
            must.append(qe.Filter(should=subs))
        else:
            must_not.extend(subs)
    if not (must or should or must_not):
        return None
    return qe.Filter(must=must or None, should=should or None, must_not=must_not or None)


_RANGE_OPS = ("gt", "gte", "lt", "lte")
_OPERATORS = {"eq", "ne", "in", "nin", "contains", "icontains", *_RANGE_OPS}


def _field_conditions(key: str, value: Any) -> list[Any]:
    if not isinstance(key, str) or not key:
        raise ValidationError(f"filter field names must be non-empty strings, got {key!r}", field="filters")
    if not isinstance(value, dict):
        return [_equals(key, value)]
    unknown = set(value) - _OPERATORS
    if unknown:
        raise ValidationError(
            f"unsupported filter operator(s) {sorted(unknown)} on {key!r}; supported: {sorted(_OPERATORS)}",
            field=key,
        )
    if not value:
        raise ValidationError(f"empty operator dict for {key!r}", field=key)
    conditions: list[Any] = []
    ranges = {op: value[op] for op in _RANGE_OPS if op in value}
    if ranges:
        conditions.append(qe.FieldCondition(key=key, range=_range(key, ranges)))
    for op, operand in value.items():
        if op in _RANGE_OPS:
            continue
        if op == "eq":
            conditions.append(_equals(key, operand))
        elif op == "ne":
            # "not equal" also keeps points without the field, as SQL's IS DISTINCT FROM would.
            conditions.append(qe.Filter(must_not=[_equals(key, operand)]))
        elif op in ("in", "nin"):
            if not isinstance(operand, (list, tuple, set)) or not operand:
                raise ValidationError(f"{op!r} on {key!r} takes a non-empty list", field=key)
            match = qe.FieldCondition(key=key, match=qe.MatchAny(_match_list(key, operand)))
            conditions.append(match if op == "in" else qe.Filter(must_not=[match]))
        elif op == "contains":
            if not isinstance(operand, str) or not operand:
                raise ValidationError(f"'contains' on {key!r} takes a non-empty string", field=key)
            conditions.append(qe.FieldCondition(key=key, match=qe.MatchSubstring(operand)))
        elif op == "icontains":
            if not isinstance(operand, str) or not operand:
                raise ValidationError(f"'icontains' on {key!r} takes a non-empty string", field=key)
            if key != TEXT_FIELD:
                # Qdrant matches case-insensitively only through a lowercase full-text index, which
                # exists for the memory text alone; a case-sensitive match here would be a silent lie.
                raise ValidationError(
                    f"'icontains' is supported on {TEXT_FIELD!r} only (word match, case-insensitive); "
                    f"use 'contains' (case-sensitive substring) on {key!r}",
                    field=key,
                )
            conditions.append(qe.FieldCondition(key=key, match=qe.MatchText(operand)))
    return conditions


def _equals(key: str, value: Any) -> Any:
    if value == "*":
        return qe.Filter(must_not=[qe.IsEmptyCondition(key)])
    if value is None:
        return qe.IsNullCondition(key)
    if isinstance(value, (list, tuple, set)):
        if not value:
            raise ValidationError(f"list filter on {key!r} is empty", field=key)
        return qe.FieldCondition(key=key, match=qe.MatchAny(_match_list(key, value)))
    if isinstance(value, bool) or isinstance(value, (int, str)):
        return qe.FieldCondition(key=key, match=qe.MatchValue(value))
    if isinstance(value, uuid.UUID):
        return qe.FieldCondition(key=key, match=qe.MatchValue(str(value)))
    if isinstance(value, float):
        if value.is_integer():
            return qe.FieldCondition(key=key, match=qe.MatchValue(int(value)))
        return qe.FieldCondition(key=key, range=qe.RangeFloat(gte=value, lte=value))
    raise ValidationError(f"cannot filter {key!r} on a {type(value).__name__}", field=key)


def _match_list(key: str, values: Iterable[Any]) -> list[Any]:
    items = [str(v) if isinstance(v, uuid.UUID) else v for v in values]
    if all(isinstance(v, str) for v in items):
        return items
    if all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        return items
    raise ValidationError(f"list filter on {key!r} must hold only strings or only integers", field=key)


def _range(key: str, bounds: dict[str, Any]) -> Any:
    values = list(bounds.values())
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        if any(isinstance(v, float) and math.isnan(v) for v in values):
            raise ValidationError(f"NaN in range filter on {key!r}", field=key)
        return qe.RangeFloat(**{op: float(v) for op, v in bounds.items()})
    iso = {}
    for op, v in bounds.items():
        if isinstance(v, (datetime, date)):
            iso[op] = v.isoformat()
        elif isinstance(v, str):
            try:
                datetime.fromisoformat(v.replace("Z", "+00:00"))
            except ValueError:
                raise ValidationError(
                    f"range filter on {key!r}: {v!r} is neither a number nor an ISO-8601 date", field=key
                ) from None
            iso[op] = v
        else:
            raise ValidationError(f"range filter on {key!r}: cannot compare with {type(v).__name__}", field=key)
    return qe.RangeDateTime(**iso)


# ---------------------------------------------------------------------------------------------
# The store


CREATED_AT = "created_at"


def live_day(value: Any) -> date:
    try:
        return value if isinstance(value, date) else date.fromisoformat(str(value))
    except ValueError:
        raise ValidationError(f"{LIVE_ON} takes an ISO date, got {value!r}", field="filters") from None


def _live_condition(live_on: date) -> Any:
    return qe.Filter(should=[qe.IsEmptyCondition(EXPIRES),
                             qe.FieldCondition(key=EXPIRES, range=qe.RangeDateTime(gte=live_on.isoformat()))])


def _with_live(flt: Any, live_on: date | None) -> Any:
    """``flt`` narrowed to points not expired on ``live_on`` (no expiry, or one on or after that day)."""
    if live_on is None:
        return flt
    live = _live_condition(live_on)
    return live if flt is None else qe.Filter(must=[flt, live])


class EnginePanic(RuntimeError):
    """The Edge engine panicked (pyo3's ``PanicException`` is a BaseException; this is an error)."""


def _undecodable(exc: BaseException) -> bool:
    """True for Edge's error about a stored payload it cannot decode."""
    text = str(exc)
    return "Failed to decode" in text or "deserialize payload" in text


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


def _hit(point: Any) -> VectorHit:
    score = getattr(point, "score", None)
    return VectorHit(id=str(point.id), score=score, payload=dict(point.payload or {}))


def _dense(vector: Any, dims: int) -> list[float]:
    values = vector.tolist() if hasattr(vector, "tolist") else list(vector)
    if len(values) != dims:
        raise ValidationError(f"vector has {len(values)} dimensions, the collection expects {dims}", field="vector")
    return values


class QdrantEdgeStore(VectorStoreBase):
    """mem0 ``VectorStoreBase`` on an in-process Qdrant Edge shard (one shard per collection).

    Scores are true cosine similarities (higher = more similar) even with binary quantization,
    because every quantized search is rescored with the original vectors.
    """

    def __init__(self, **config: Any) -> None:
        self.config = QdrantEdgeConfig(**config)
        self.collection_name = self.config.collection_name
        self.embedding_model_dims = self.config.embedding_model_dims
        self._search_params = self.config.search_params()
        self._shard = _shard_for(self.config.shard_path)
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
        with self._locked() as edge:
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
        with self._locked() as edge:
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
                if not _undecodable(exc):
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
            if not isinstance(exc, Exception) and not _undecodable(exc):
                raise
            if _undecodable(exc):
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
                if not _undecodable(exc):
                    raise
                for record in ids:
                    try:
                        edge.retrieve([record.id], with_payload=True, with_vector=False)
                    except BaseException as inner:
                        if not _undecodable(inner):
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
            return [_hit(p) for p in edge.query(request)]

    def search_batch(self, queries: list, vectors_list: list, top_k: int = 1, filters: dict | None = None):
        if not vectors_list:
            return []
        requests = [self._dense_request(v, top_k, filters) for v in vectors_list]
        with self._locked() as edge:
            return [[_hit(p) for p in hits] for hits in edge.query_batch(qe.QueryBatchRequest(requests))]

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
            return [_hit(p) for p in edge.query(request)]

    def get(self, vector_id: Any) -> VectorHit | None:
        try:
            point_id = _point_id(vector_id)
        except ValidationError:
            return None  # no such memory; a malformed id is not an existing one
        with self._locked() as edge:
            records = edge.retrieve([point_id], with_payload=True, with_vector=False)
        return _hit(records[0]) if records else None

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
                    if not _undecodable(exc):
                        raise
                    records, next_offset = self._decodable_page(edge, offset, page, flt)
                offset = next_offset
                rows.extend(_hit(r) for r in records)
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
                if not _undecodable(exc):
                    raise
                logger.warning("skipped Edge point %s: its payload cannot be decoded", record.id)
        return records, next_offset

    def count(self, filters: dict | None = None, *, live_on: date | None = None) -> int:
        """Points matching ``filters`` (and, with ``live_on``, not expired on that day), counted exactly."""
        with self._locked() as edge:
            return edge.count(qe.CountRequest(exact=True, filter=_with_live(build_filter(filters), live_on)))

    # -- reads that page and group in the engine (core.memory.paging.EngineReads) ---------------------

    def ids(self, filters: dict | None = None, *, limit: int = 100_000) -> list[str]:
        """Ids of the points matching ``filters``, without reading (or decoding) a payload."""
        flt = build_filter(filters)
        out: list[str] = []
        offset = None
        with self._locked() as edge:
            while len(out) < limit:
                records, offset = edge.scroll(qe.ScrollRequest(
                    offset=offset, limit=min(1_000, limit - len(out)), filter=flt, with_payload=False,
                    with_vector=False))
                out.extend(str(r.id) for r in records)
                if offset is None or not records:
                    break
        return out

    def newest(self, filters: dict | None = None, *, live_on: date | None = None, limit: int = 100,
               oldest_first: bool = False) -> list[VectorHit]:
        """Up to ``limit`` points by ``created_at``, newest first (or oldest first); ties in any order."""
        order = qe.OrderBy(CREATED_AT, qe.Direction.Asc if oldest_first else qe.Direction.Desc)
        flt = _with_live(build_filter(filters), live_on)
        count = max(1, int(limit))
        with self._locked() as edge:
            try:
                records, _ = edge.scroll(qe.ScrollRequest(limit=count, filter=flt, with_payload=True,
                                                          with_vector=False, order_by=order))
            except BaseException as exc:
                if not _undecodable(exc):
                    raise
                ids, _ = edge.scroll(qe.ScrollRequest(limit=count, filter=flt, with_payload=False, with_vector=False,
                                                      order_by=order))
                records = []
                for record in ids:  # keep the order, leave out what cannot be decoded
                    try:
                        records.extend(edge.retrieve([record.id], with_payload=True, with_vector=False))
                    except BaseException as inner:
                        if not _undecodable(inner):
                            raise
                        logger.warning("skipped Edge point %s: its payload cannot be decoded", record.id)
        return [_hit(r) for r in records]

    def facet(self, key: str, filters: dict | None = None, *, live_on: date | None = None,
              limit: int = 10) -> list[tuple[Any, int]]:
        """The most common values of a keyword-indexed field among matching points, with counts."""
        request = qe.FacetRequest(key, limit=max(1, int(limit)), exact=True,
                                  filter=_with_live(build_filter(filters), live_on))
        with self._locked() as edge:
            response = edge.facet(request)
        return [(hit.value, int(hit.count)) for hit in response.hits]
