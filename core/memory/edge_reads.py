"""Reads that page, count and group in the Qdrant Edge engine (:class:`core.memory.paging.EngineReads`),
as part of :class:`core.memory.vector_edge.QdrantEdgeStore` (they use its shard and lock)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import qdrant_edge as qe

from core.memory.edge_filters import build_filter, with_live
from core.memory.edge_shards import undecodable
from core.memory.fields import CREATED_AT

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VectorHit:
    """One stored point as mem0 reads it: ``id`` (uuid string), ``score`` (higher = more similar), ``payload``."""

    id: str
    score: float | None
    payload: dict[str, Any] = field(default_factory=dict)


def hit(point: Any) -> VectorHit:
    score = getattr(point, "score", None)
    return VectorHit(id=str(point.id), score=score, payload=dict(point.payload or {}))


class EdgeEngineReads:
    """Part of :class:`~core.memory.vector_edge.QdrantEdgeStore` (uses its ``_locked`` shard)."""


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
        flt = with_live(build_filter(filters), live_on)
        count = max(1, int(limit))
        with self._locked() as edge:
            try:
                records, _ = edge.scroll(qe.ScrollRequest(limit=count, filter=flt, with_payload=True,
                                                          with_vector=False, order_by=order))
            except BaseException as exc:
                if not undecodable(exc):
                    raise
                ids, _ = edge.scroll(qe.ScrollRequest(limit=count, filter=flt, with_payload=False, with_vector=False,
                                                      order_by=order))
                records = []
                for record in ids:  # keep the order, leave out what cannot be decoded
                    try:
                        records.extend(edge.retrieve([record.id], with_payload=True, with_vector=False))
                    except BaseException as inner:
                        if not undecodable(inner):
                            raise
                        logger.warning("skipped Edge point %s: its payload cannot be decoded", record.id)
        return [hit(r) for r in records]

    def facet(self, key: str, filters: dict | None = None, *, live_on: date | None = None,
              limit: int = 10) -> list[tuple[Any, int]]:
        """The most common values of a keyword-indexed field among matching points, with counts."""
        request = qe.FacetRequest(key, limit=max(1, int(limit)), exact=True,
                                  filter=with_live(build_filter(filters), live_on))
        with self._locked() as edge:
            response = edge.facet(request)
        return [(hit.value, int(hit.count)) for hit in response.hits]
