"""The Qdrant server backend: mem0's own "qdrant" vector store over a qdrant-client we prepare.

mem0's store (mem0/vector_stores/qdrant.py) does all data operations. It creates a collection it
finds missing with an unnamed cosine dense vector and a ``"bm25"`` sparse vector (IDF), no
quantization and keyword indexes on four fields; so we create ours first, with the same vector
layout plus binary quantization and every payload index we filter on, and mem0 adopts it.

Three gaps in mem0's store are closed at its boundaries, without copying its code:

* it never passes ``search_params``, so a quantized collection would be searched at Qdrant's
  default oversampling of 1: ``RescoringQdrantClient`` adds rescoring and oversampling to dense
  queries that do not set their own;
* its BM25 leg needs fastembed (not installed, and it downloads ``Qdrant/bm25`` at first use):
  ``enable_keyword_search`` hands it ``Bm25SparseEncoder``, Qdrant's own BM25 from qdrant_edge,
  computed in-process;
* its ``<collection>_entities`` twin would be created unquantized: ``ensure_memory_collections``
  prepares both;
* its ``{"field": "*"}`` matches every point, also those without the field, while Qdrant Edge
  and the REST API mean "has a value": ``match_wildcard_as_present`` gives it that meaning, so a
  wildcard never widens a delete.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import qdrant_edge as qe
from qdrant_client import QdrantClient, models
from qdrant_client.local.qdrant_local import QdrantLocal

from core.errors import ConfigError
from core.memory.edge_filters import live_day
from core.memory.fields import CREATED_AT, DATETIME_FIELDS, INTEGER_FIELDS, KEYWORD_FIELDS, TENANT_FIELD, TEXT_FIELD
from core.memory.mem0_adapter import server_filter, set_keyword_encoder, wrap_filters
from core.memory.paging import EXPIRES, LIVE_ON
from core.memory.vector_edge import (
    DEFAULT_OVERSAMPLING,
    DEFAULT_QUANTIZATION,
    DEFAULT_QUERY_ENCODING,
    SPARSE,
    Quantization,
    QueryEncoding,
)

log = logging.getLogger(__name__)

_ENCODINGS = {
    "1bit": models.BinaryQuantizationEncoding.ONE_BIT,
    "1.5bit": models.BinaryQuantizationEncoding.ONE_AND_HALF_BITS,
    "2bit": models.BinaryQuantizationEncoding.TWO_BITS,
}
_QUERY_ENCODINGS = {
    "default": models.BinaryQuantizationQueryEncoding.DEFAULT,
    "binary": models.BinaryQuantizationQueryEncoding.BINARY,
    "scalar4bits": models.BinaryQuantizationQueryEncoding.SCALAR4BITS,
    "scalar8bits": models.BinaryQuantizationQueryEncoding.SCALAR8BITS,
}


def quantization_config(
    quantization: Quantization = DEFAULT_QUANTIZATION, query_encoding: QueryEncoding = DEFAULT_QUERY_ENCODING
) -> models.BinaryQuantization | None:
    if quantization == "none":
        return None
    return models.BinaryQuantization(
        binary=models.BinaryQuantizationConfig(
            always_ram=True, encoding=_ENCODINGS[quantization], query_encoding=_QUERY_ENCODINGS[query_encoding]
        )
    )


def search_params(*, oversampling: float = DEFAULT_OVERSAMPLING, hnsw_ef: int = 128) -> models.SearchParams:
    """Dense search parameters: rescoring keeps scores true cosine (mem0 thresholds on them)."""
    return models.SearchParams(
        hnsw_ef=hnsw_ef, quantization=models.QuantizationSearchParams(rescore=True, oversampling=oversampling)
    )


def payload_indexes() -> dict[str, Any]:
    """Field name -> index schema; the same fields and types as the Edge store indexes."""
    indexes: dict[str, Any] = {
        TENANT_FIELD: models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True)
    }
    indexes.update({name: models.PayloadSchemaType.KEYWORD for name in KEYWORD_FIELDS})
    indexes.update({name: models.PayloadSchemaType.INTEGER for name in INTEGER_FIELDS})
    indexes.update({name: models.PayloadSchemaType.DATETIME for name in DATETIME_FIELDS})
    indexes[TEXT_FIELD] = models.TextIndexParams(
        type=models.TextIndexType.TEXT, tokenizer=models.TokenizerType.WORD, lowercase=True
    )
    return indexes


def ensure_collection(
    client: QdrantClient,
    name: str,
    dims: int,
    *,
    quantization: Quantization = DEFAULT_QUANTIZATION,
    query_encoding: QueryEncoding = DEFAULT_QUERY_ENCODING,
    hnsw_m: int = 16,
    hnsw_ef_construct: int = 100,
    full_scan_threshold: int = 10_000,
    on_disk: bool = False,
    metadata: dict[str, Any] | None = None,
) -> bool:
    """Create ``name`` in the layout mem0's qdrant store expects, before mem0 touches it.

    Returns True if it was created (with ``metadata``). An existing collection is kept (its payload
    indexes are completed); one holding vectors of another size raises ``ConfigError``.
    """
    if client.collection_exists(name):
        existing = dense_size(client.get_collection(name))
        if existing is not None and existing != dims:
            raise ConfigError(
                f"Qdrant collection {name!r}: dims mismatch, it holds {existing}-d vectors but the embedder "
                f"produces {dims}-d. Use the embedder it was built with, or run `python -m core reembed`."
            )
        created = False
    else:
        client.create_collection(
            collection_name=name,
            vectors_config=models.VectorParams(size=dims, distance=models.Distance.COSINE, on_disk=on_disk),
            sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            hnsw_config=models.HnswConfigDiff(
                m=hnsw_m, ef_construct=hnsw_ef_construct, full_scan_threshold=full_scan_threshold
            ),
            quantization_config=quantization_config(quantization, query_encoding),
            metadata=metadata,
        )
        created = True
    for field_name, schema in payload_indexes().items():
        client.create_payload_index(collection_name=name, field_name=field_name, field_schema=schema)
    return created


def ensure_memory_collections(client: QdrantClient, name: str, dims: int, **options: Any) -> None:
    """Prepare ``name`` and mem0's ``<name>_entities`` twin with the same settings."""
    ensure_collection(client, name, dims, **options)
    ensure_collection(client, f"{name}_entities", dims, **options)


def dense_size(info: models.CollectionInfo) -> int | None:
    vectors = info.config.params.vectors
    if isinstance(vectors, models.VectorParams):
        return vectors.size
    if isinstance(vectors, dict) and "" in vectors:
        return vectors[""].size
    return None


def mem0_vector_store_config(client: QdrantClient, collection_name: str, dims: int) -> dict[str, Any]:
    """The ``vector_store`` entry of a mem0 config for the server path (provider "qdrant")."""
    # QdrantConfig insists on a location even when a client is given, and mem0 ignores it then;
    # ":memory:" keeps mem0 from defaulting to /tmp/qdrant should that ever change.
    return {
        "provider": "qdrant",
        "config": {
            "collection_name": collection_name,
            "embedding_model_dims": dims,
            "client": client,
            "path": ":memory:",
        },
    }


class RescoringQdrantClient(QdrantClient):
    """A QdrantClient whose dense queries default to rescored, oversampled quantized search.

    mem0's store calls ``query_points``/``query_batch_points`` without ``search_params``; with
    binary quantization Qdrant would then rescore only ``limit`` candidates (oversampling 1).
    Queries that pass their own parameters, and sparse (``using="bm25"``) queries, are untouched.

    In local mode (``":memory:"`` or a path) every call is also serialised: qdrant-client's local
    engine resizes numpy arrays in place, and a search racing an upsert from another thread fails
    with ``IndexError`` in its payload filter. A remote client is thread-safe and is left alone.
    """

    def __init__(self, *args: Any, oversampling: float = DEFAULT_OVERSAMPLING, hnsw_ef: int = 128, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.default_search_params = search_params(oversampling=oversampling, hnsw_ef=hnsw_ef)
        if isinstance(self._client, QdrantLocal):
            self._client = _Serialised(self._client)

    def query_points(self, collection_name: str, *args: Any, **kwargs: Any) -> models.QueryResponse:
        if kwargs.get("search_params") is None and not kwargs.get("using") and not args:
            kwargs["search_params"] = self.default_search_params
        return super().query_points(collection_name, *args, **kwargs)

    def query_batch_points(
        self, collection_name: str, requests: Iterable[models.QueryRequest], *args: Any, **kwargs: Any
    ) -> list[models.QueryResponse]:
        requests = [
            r.model_copy(update={"params": self.default_search_params})
            if isinstance(r, models.QueryRequest) and r.params is None and not r.using
            else r
            for r in requests
        ]
        return super().query_batch_points(collection_name, requests, *args, **kwargs)


class _Serialised:
    """Proxy running every method of the wrapped object under one lock."""

    def __init__(self, target: Any) -> None:
        self._target = target
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return value

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return value(*args, **kwargs)

        return locked


@dataclass(frozen=True)
class _Sparse:
    indices: np.ndarray
    values: np.ndarray


class Bm25SparseEncoder:
    """fastembed ``SparseTextEmbedding``-shaped BM25 encoder backed by ``qdrant_edge.Bm25``.

    Same tokenizer, stemmer and term weighting Qdrant uses server-side; the collection's IDF
    modifier supplies the corpus statistics. mem0 calls ``embed`` for documents and queries alike.
    """

    def __init__(self) -> None:
        self._bm25 = qe.Bm25()

    def embed(self, texts: Iterable[str]) -> Iterator[_Sparse]:
        for text in texts:
            sparse = self._bm25.embed_document(text or "")
            yield _Sparse(np.asarray(sparse.indices, dtype=np.int64), np.asarray(sparse.values, dtype=np.float32))


def enable_keyword_search(store: Any) -> Any:
    """Give mem0's Qdrant store the in-process BM25 encoder (replaces its lazy fastembed load).

    Call before the first insert, so every point carries its sparse vector. Returns ``store``.
    """
    return set_keyword_encoder(store, Bm25SparseEncoder())


def match_wildcard_as_present(store: Any) -> Any:
    """Make ``{"field": "*"}`` in mem0's Qdrant store match points where the field has a value (mem0
    skips the condition, matching points without the field too), and teach it :data:`LIVE_ON`
    ("not expired on this day", evaluated by Qdrant). Returns ``store``."""

    def field_condition(build: Any) -> Any:
        def condition(key: str, value: Any) -> Any:
            if isinstance(value, str) and value == "*":
                return models.Filter(must_not=[models.IsEmptyCondition(is_empty=models.PayloadField(key=key))])
            return build(key, value)

        return condition

    def create_filter(create: Any) -> Any:
        def build_filter(filters: dict | None) -> Any:
            if not filters or LIVE_ON not in filters:
                return create(filters)
            rest = {k: v for k, v in filters.items() if k != LIVE_ON}
            live = live_filter(live_day(filters[LIVE_ON]))
            flt = create(rest) if rest else None
            return live if flt is None else models.Filter(must=[flt, live])

        return build_filter

    return wrap_filters(store, field_condition, create_filter)


def live_filter(live_on: date) -> models.Filter:
    """Points not expired on ``live_on``: no expiry, or one on or after that day."""
    return models.Filter(should=[
        models.IsEmptyCondition(is_empty=models.PayloadField(key=EXPIRES)),
        models.FieldCondition(key=EXPIRES, range=models.DatetimeRange(gte=live_on.isoformat())),
    ])


class ServerReads:
    """:class:`core.memory.paging.EngineReads` for mem0's Qdrant store: scrolls ordered by the
    ``created_at`` index, exact counts and facets, on the store's own client and filter dialect.

    qdrant-client decodes payloads recursively in Python; a payload stored nested hundreds of
    levels deep (before ``core.memory.limits`` existed) raises ``RecursionError``. Such points are
    left out of listings one by one instead of failing the whole page.
    """

    def __init__(self, store: Any) -> None:
        self._store = store
        self._client: QdrantClient = store.client
        self._collection = store.collection_name

    def _filter(self, filters: dict | None, live_on: date | None) -> models.Filter | None:
        flt = server_filter(self._store, filters)
        if live_on is None:
            return flt
        live = live_filter(live_on)
        return live if flt is None else models.Filter(must=[flt, live])

    def count(self, filters: dict | None = None, *, live_on: date | None = None) -> int:
        return int(self._client.count(self._collection, count_filter=self._filter(filters, live_on), exact=True).count)

    def ids(self, filters: dict | None = None, *, limit: int = 100_000) -> list[str]:
        flt = self._filter(filters, None)
        out: list[str] = []
        offset = None
        while len(out) < limit:
            records, offset = self._client.scroll(self._collection, scroll_filter=flt,
                                                  limit=min(1_000, limit - len(out)), offset=offset,
                                                  with_payload=False, with_vectors=False)
            out.extend(str(r.id) for r in records)
            if offset is None or not records:
                break
        return out

    def newest(self, filters: dict | None = None, *, live_on: date | None = None, limit: int = 100,
               oldest_first: bool = False) -> list[Any]:
        direction = models.Direction.ASC if oldest_first else models.Direction.DESC
        order = models.OrderBy(key=CREATED_AT, direction=direction)
        flt = self._filter(filters, live_on)
        try:
            records, _ = self._client.scroll(self._collection, scroll_filter=flt, limit=max(1, int(limit)),
                                             order_by=order, with_payload=True, with_vectors=False)
            return records
        except RecursionError:
            pass
        ids, _ = self._client.scroll(self._collection, scroll_filter=flt, limit=max(1, int(limit)), order_by=order,
                                     with_payload=False, with_vectors=False)
        records = []
        for record in ids:
            try:
                records.extend(self._client.retrieve(self._collection, [record.id], with_payload=True))
            except RecursionError:
                log.warning("skipped Qdrant point %s: its payload is nested too deeply to decode", record.id)
        return records

    def facet(self, key: str, filters: dict | None = None, *, live_on: date | None = None,
              limit: int = 10) -> list[tuple[Any, int]]:
        response = self._client.facet(self._collection, key=key, facet_filter=self._filter(filters, live_on),
                                      limit=max(1, int(limit)), exact=True)
        return [(hit.value, int(hit.count)) for hit in response.hits]
