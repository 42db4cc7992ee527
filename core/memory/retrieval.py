"""Finding memories: similar-memory lookups, hybrid search, periods, tags and people, statistics."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from core.errors import ValidationError
from core.memory.paging import LIVE_ON
from core.memory.records import (
    LIST_CAP,
    RELEVANCE_FLOOR,
    RRF_K,
    STRONG_MATCH,
    EntityStats,
    MemoryFilters,
    MemoryStats,
    RankedResults,
    memory_text,
    most_common,
    record_from_payload,
)
from core.memory.types import MEMORY_TYPES, MemoryRecord, Scope

log = logging.getLogger(__name__)


class MemoryRetrieval:
    """Part of :class:`~core.memory.service.MemoryService` (its methods use the service's own)."""

    # ------------------------------------------------------------------ search
    def similar_batch(self, scope: Scope, texts: Sequence[str], *, k: int) -> list[list[MemoryRecord]]:
        """For each text, the ``k`` most similar live memories in exactly ``scope`` (cosine scores)."""
        flt = self._scope_filter(scope.owner_id, MemoryFilters(user_id=scope.user_id, agent_id=scope.agent_id,
                                                              run_id=scope.run_id))
        flt[LIVE_ON] = self._clock().date().isoformat()  # the engine leaves expired memories out
        out = []
        for text in texts:
            vec = self._embed(text)
            hits = self._call(self.store.search, query=text, vectors=vec, top_k=k, filters=flt)
            out.append([record_from_payload(h.id, h.payload or {}, h.score) for h in hits])
        return out

    def search(
        self,
        owner_id: str,
        query: str,
        filters: MemoryFilters | None = None,
        *,
        top_k: int = 10,
        threshold: float | None = None,
        mode: str = "hybrid",
    ) -> list[MemoryRecord]:
        """Hybrid search: dense (cosine) and BM25 lists fused by reciprocal rank.

        ``threshold`` drops results whose cosine similarity to the query is below it. The
        returned ``score`` is the cosine similarity; order is the fused rank. ``mode`` may be
        ``dense`` or ``keyword`` for comparison.
        """
        query = memory_text(query, field="query")
        if not 1 <= int(top_k) <= 1000:
            raise ValidationError("top_k must be between 1 and 1000.", field="top_k")
        if mode not in ("hybrid", "dense", "keyword"):
            raise ValidationError("mode must be hybrid, dense or keyword.", field="mode")
        flt = self._scope_filter(owner_id, filters)
        flt[LIVE_ON] = self._clock().date().isoformat()  # in the engine: expired memories take no slot
        pool = max(top_k * 4, 40)
        vec = self._embed(query)
        dense = [] if mode == "keyword" else self._call(self.store.search, query=query, vectors=vec, top_k=pool, filters=flt)
        keyword = [] if mode == "dense" else (self._call(self.store.keyword_search, query=query, top_k=pool, filters=flt) or [])
        cosine: dict[str, float] = {}
        payloads: dict[str, dict] = {}
        fused: dict[str, float] = {}
        for rank, hit in enumerate(dense):
            key = str(hit.id)
            cosine[key] = float(hit.score)
            payloads[key] = hit.payload or {}
            fused[key] = fused.get(key, 0.0) + 1.0 / (RRF_K + rank + 1)
        for rank, hit in enumerate(keyword):
            key = str(hit.id)
            payloads.setdefault(key, hit.payload or {})
            fused[key] = fused.get(key, 0.0) + 1.0 / (RRF_K + rank + 1)
        missing = [k for k in fused if k not in cosine]
        if missing and threshold is not None:
            # keyword-only hits: compute their cosine so the threshold means the same for all
            import numpy as np

            q = np.asarray(vec, dtype=np.float32)
            for key in missing:
                point = self._call(self.store.get, vector_id=key)
                vector = getattr(point, "vector", None) if point is not None else None
                if vector is not None:
                    v = np.asarray(vector, dtype=np.float32)
                    cosine[key] = float(q @ v / ((np.linalg.norm(q) * np.linalg.norm(v)) or 1.0))
        ranked = sorted(fused.items(), key=lambda kv: kv[1], reverse=True)
        results: list[MemoryRecord] = []
        for key, _ in ranked:
            payload = payloads[key]
            score = cosine.get(key)
            if threshold is not None and (score is None or score < threshold):
                continue
            results.append(record_from_payload(key, payload, score))
            if len(results) >= top_k:
                break
        return results

    def search_relevant(
        self,
        owner_id: str,
        query: str,
        filters: MemoryFilters | None = None,
        *,
        top_k: int = 100,
        floor: float = RELEVANCE_FLOOR,
        strong: float = STRONG_MATCH,
    ) -> RankedResults:
        """Hybrid search for people browsing their memories: results below ``floor`` (cosine) are
        dropped, so nonsense finds nothing; those below ``strong`` come back as weak matches."""
        hits = self.search(owner_id, query, filters, top_k=top_k, threshold=floor)
        return RankedResults([h for h in hits if (h.score or 0) >= strong], [h for h in hits if (h.score or 0) < strong])

    def temporal_search(
        self,
        owner_id: str,
        when: str | tuple[datetime | None, datetime | None],
        query: str | None = None,
        filters: MemoryFilters | None = None,
        *,
        top_k: int = 20,
    ) -> list[MemoryRecord]:
        """Memories created in a period: "today", "yesterday", "this week", "last week",
        "this month", "last month", "last N days", or an explicit ``(start, end)`` range."""
        start, end = parse_period(when, now=self._clock()) if isinstance(when, str) else when
        base = filters or MemoryFilters()
        ranged = MemoryFilters(**{**{f: getattr(base, f) for f in base.__dataclass_fields__},
                                  "created_after": start, "created_before": end})
        if query:
            return self.search(owner_id, query, ranged, top_k=top_k)
        return self.get_all(owner_id, ranged, limit=top_k)

    def by_tags(self, owner_id: str, tags: Sequence[str], *, user_id: str | None = None, limit: int = 100) -> list[MemoryRecord]:
        return self.get_all(owner_id, MemoryFilters(user_id=user_id, tags=tuple(tags)), limit=limit)

    def by_people(self, owner_id: str, people: Sequence[str], *, user_id: str | None = None, limit: int = 100) -> list[MemoryRecord]:
        return self.get_all(owner_id, MemoryFilters(user_id=user_id, people=tuple(people)), limit=limit)

    def stats(self, owner_id: str, *, user_id: str | None = None) -> MemoryStats:
        """Counts of the owner's live memories, computed by the engine (counts and facets)."""
        flt = self._scope_filter(owner_id, MemoryFilters(user_id=user_id))
        live_on, reads = self._clock().date(), self._reads

        def facet(key: str, limit: int) -> list[tuple[str, int]]:
            return [(str(v), n) for v, n in self._call(reads.facet, key, flt, live_on=live_on, limit=limit)]

        def created(oldest_first: bool) -> str | None:
            rows = self._call(reads.newest, flt, live_on=live_on, limit=1, oldest_first=oldest_first)
            return (rows[0].payload or {}).get("created_at") if rows else None

        all_tags, all_people = most_common(facet("tags", 1000)), most_common(facet("people", 1000))
        return MemoryStats(
            total=int(self._call(reads.count, flt, live_on=live_on)),
            by_type=dict(facet("type", len(MEMORY_TYPES))),
            top_tags=all_tags[:10],
            top_people=all_people[:10],
            oldest=created(True),
            newest=created(False),
            user_ids=sorted(v for v, _ in facet("user_id", LIST_CAP)),
            tags=all_tags,
            people=all_people,
        )

    def entities(self, owner_id: str) -> list[EntityStats]:
        """Every end-user, agent and run holding memories of the owner (expired ones too), by kind and
        name, with how many memories each holds and when the first and the last were created."""
        base, reads = self._scope_filter(owner_id), self._reads
        out: list[EntityStats] = []
        for kind in ("user", "agent", "run"):
            key = f"{kind}_id"
            for name, total in sorted(self._call(reads.facet, key, base, limit=LIST_CAP)):
                flt = {**base, key: name}
                stamps = [self._call(reads.newest, flt, limit=1, oldest_first=oldest) for oldest in (True, False)]
                first, last = ((rows[0].payload or {}).get("created_at") if rows else None for rows in stamps)
                out.append(EntityStats(kind, str(name), total, first, last))
        return out



_PERIOD = re.compile(r"^last\s+(\d{1,4})\s+days?$")


def parse_period(text: str, *, now: datetime) -> tuple[datetime, datetime]:
    """Turn "last week" and friends into a UTC ``(start, end)`` range."""
    phrase = " ".join(text.lower().split())
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    week_start = today - timedelta(days=today.weekday())
    month_start = today.replace(day=1)
    if phrase == "today":
        return today, now
    if phrase == "yesterday":
        return today - timedelta(days=1), today
    if phrase == "this week":
        return week_start, now
    if phrase == "last week":
        return week_start - timedelta(days=7), week_start
    if phrase == "this month":
        return month_start, now
    if phrase == "last month":
        prev = (month_start - timedelta(days=1)).replace(day=1)
        return prev, month_start
    if phrase == "this year":
        return today.replace(month=1, day=1), now
    if m := _PERIOD.match(phrase):
        return now - timedelta(days=int(m.group(1))), now
    raise ValidationError(
        f"I don't understand the period {text!r}. Try today, yesterday, this week, last week, "
        "this month, last month, this year, or 'last N days'.",
        field="when",
    )
