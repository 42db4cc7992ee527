"""Reads that page, count and group memories in the vector engine, never in Python.

Listing, statistics and the entity overview used to fetch every memory of an owner and sort and
count them here (4 ms at a hundred memories, 437 ms at ten thousand). Both engines can do it
themselves: Qdrant orders a scroll by a datetime index, counts exactly and computes facets over
keyword indexes. :class:`EngineReads` is that interface; Qdrant Edge's store implements it
directly (``core.memory.vector_edge``), mem0's Qdrant store gets it from
:class:`core.memory.vector_server.ServerReads`.

Filters are in mem0's dialect, as everywhere in the memory engine; ``live_on`` narrows to memories
not expired on that day (no expiry, or an expiry on or after it). Both stores also understand the
filter key :data:`LIVE_ON` with the same meaning, so searches leave expired memories out in the
engine too.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Protocol

from core.errors import ConfigError

CREATED_AT = "created_at"
EXPIRES = "expiration_date"  # where mem0 keeps a memory's expiry (YYYY-MM-DD)
LIVE_ON = "$live_on"
"""Filter key meaning "not expired on this day (an ISO date)": no expiry, or one on or after it."""


class EngineReads(Protocol):
    def count(self, filters: dict | None = None, *, live_on: date | None = None) -> int:
        """Exact number of matching points."""

    def ids(self, filters: dict | None = None, *, limit: int = 100_000) -> list[str]:
        """Ids of matching points, without reading payloads (so also of points whose payload is damaged)."""

    def newest(self, filters: dict | None = None, *, live_on: date | None = None, limit: int = 100,
               oldest_first: bool = False) -> list[Any]:
        """Up to ``limit`` matching points (``.id``, ``.payload``) by ``created_at``, newest first
        unless ``oldest_first``; points with equal ``created_at`` come in no particular order, and
        points whose payload cannot be decoded are left out."""

    def facet(self, key: str, filters: dict | None = None, *, live_on: date | None = None,
              limit: int = 10) -> list[tuple[Any, int]]:
        """The ``limit`` most common values of a keyword field among matching points, with their counts,
        most common first."""


def engine_reads(store: Any) -> EngineReads:
    """The :class:`EngineReads` of a mem0 vector store we configured."""
    if all(callable(getattr(store, name, None)) for name in ("count", "ids", "newest", "facet")):
        return store
    from core.memory.mem0_adapter import has_server_filter

    if has_server_filter(store):
        from core.memory.vector_server import ServerReads

        return ServerReads(store)
    raise ConfigError(f"the vector store {type(store).__name__} cannot page, count or group memories")


def page_newest(reads: EngineReads, filters: dict | None, *, live_on: date | None, offset: int,
                limit: int) -> list[Any]:
    """Matching points ``offset`` … ``offset + limit`` in the order (``created_at``, id), newest first.

    The engine orders by ``created_at`` only; a batch import gives many memories one timestamp.
    So the window is completed with every point sharing the last timestamp in it and ordered by id
    here: the same page always holds the same memories.
    """
    want = offset + limit
    if limit <= 0:
        return []
    rows = reads.newest(filters, live_on=live_on, limit=want)
    if len(rows) == want:
        boundary = (rows[-1].payload or {}).get(CREATED_AT)
        if boundary:
            same = {CREATED_AT: {"gte": boundary, "lte": boundary}}
            tied = reads.newest({"AND": [filters, same]} if filters else same, live_on=live_on, limit=100_000)
            seen = {str(r.id) for r in rows}
            rows.extend(r for r in tied if str(r.id) not in seen)
    rows.sort(key=lambda r: ((r.payload or {}).get(CREATED_AT) or "", str(r.id)), reverse=True)
    return rows[offset:want]
