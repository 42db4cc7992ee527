"""MemoryService: the one typed interface to long-term memory (UI, agent tools, API).

Built on one ``mem0.Memory`` per process. Writes go through mem0's public API
(``add(infer=False, metadata=...)``, ``update``, ``delete``) so its history — kept in our
database by :class:`~core.memory.history.SqlHistory` — records every event. Reads use mem0's
vector store and embedder directly: that keeps search on one query embedding, lets us add
owner scoping to every call, and gives real hybrid retrieval (dense + BM25, fused with
reciprocal ranks) instead of re-ranking the dense list only.

Scoping: every memory carries ``owner_id`` (the account) in its payload, and every read,
write, search and delete filters on it. An id that belongs to another owner is
:class:`NotFound`, exactly like an id that does not exist.

The class is assembled from one module per concern: writes and reads here, undo/revert/restore in
:mod:`core.memory.recovery`, search and statistics in :mod:`core.memory.retrieval`, expiry cleanup,
consolidation and erasure in :mod:`core.memory.upkeep`; the typed values are in
:mod:`core.memory.records`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from typing import Any

from core.errors import NotFound, StoreUnavailable, ValidationError
from core.memory.history import SqlHistory, attribution, deleting
from core.memory.limits import check_id, check_metadata, check_plain, clean_labels
from core.memory.mem0_adapter import attach_history, lemmatize_for_bm25
from core.memory.paging import EngineReads, engine_reads, page_newest
from core.memory.records import (
    ID_RE,
    LIST_CAP,
    MAX_MEMORY_CHARS,
    MEM0_FIELDS,
    OUR_FIELDS,
    STORE_FAILED,
    DeletedMemory,
    EntityStats,
    MemoryFilters,
    MemoryStats,
    RankedResults,
    check_scope,
    iso,
    memory_text,
    record_from_payload,
)
from core.memory.types import MEMORY_TYPES, CandidateMemory, MemoryRecord, NewMemory, Scope

log = logging.getLogger(__name__)
from core.memory.recovery import MemoryRecovery
from core.memory.retrieval import MemoryRetrieval, parse_period
from core.memory.upkeep import MemoryUpkeep

__all__ = [
    "LIST_CAP", "MAX_MEMORY_CHARS", "DeletedMemory", "EntityStats", "MemoryFilters", "MemoryService", "MemoryStats",
    "RankedResults", "parse_period",
]


class MemoryService(MemoryRecovery, MemoryRetrieval, MemoryUpkeep):
    """Owner-scoped operations on long-term memory. Thread-safe."""

    def __init__(self, memory: Any, history: SqlHistory, *, clock: Callable[[], datetime] | None = None) -> None:
        self._m = memory
        self.history_store = history
        attach_history(memory, history)  # mem0 writes its history to our database
        self._clock = clock or (lambda: datetime.now(UTC))
        self._write_lock = threading.RLock()

    @contextlib.contextmanager
    def writes_paused(self) -> Iterator[None]:
        """No memory or history row changes inside this block (a backup copies both meanwhile)."""
        with self._write_lock:
            yield

    # ------------------------------------------------------------------ plumbing
    @property
    def store(self) -> Any:
        return self._m.vector_store

    @property
    def _reads(self) -> EngineReads:
        return engine_reads(self.store)

    def _embed(self, text: str, action: str = "search") -> list[float]:
        return self._m.embedding_model.embed(text, action)

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a store call; a failing engine becomes StoreUnavailable, our own errors pass through."""
        try:
            return fn(*args, **kwargs)
        except (ValidationError, NotFound, StoreUnavailable):
            raise
        except (ValueError, TypeError) as exc:
            raise ValidationError(str(exc)) from exc
        except Exception as exc:  # the engine failed: say so, keep the caller's data
            # The engine's own message may quote the statement and the memory text: never pass it on.
            log.warning("memory store call %s failed: %s", getattr(fn, "__name__", "?"), type(exc).__name__)
            raise StoreUnavailable(STORE_FAILED) from exc

    def _scope_filter(self, owner_id: str, flt: MemoryFilters | None = None) -> dict[str, Any]:
        if not owner_id:
            raise ValidationError("An owner is required.", field="owner_id")
        out: dict[str, Any] = {"owner_id": owner_id}
        if flt is None:
            return out
        for key in ("user_id", "agent_id", "run_id"):
            value = getattr(flt, key)
            if value:
                out[key] = check_id(value, field=key, wildcard=True)
        if flt.types:
            bad = [t for t in flt.types if t not in MEMORY_TYPES]
            if bad:
                raise ValidationError(f"Unknown memory type {bad[0]!r}.", field="types")
            out["type"] = {"in": list(flt.types)}
        if flt.tags:
            out["tags"] = {"in": clean_labels(flt.tags, field="tags")}
        if flt.people:
            out["people"] = {"in": clean_labels(flt.people, field="people")}
        rng: dict[str, Any] = {}
        for op, bound in (("gte", flt.min_importance), ("lte", flt.max_importance)):
            if bound is None:
                continue
            if isinstance(bound, bool) or not isinstance(bound, int) or not 0 <= bound <= 6:
                raise ValidationError("Importance filters are whole numbers from 1 to 5.", field="importance")
            rng[op] = bound
        if rng:
            out["importance"] = rng
        dates: dict[str, Any] = {}
        if flt.created_after is not None:
            dates["gte"] = iso(flt.created_after)
        if flt.created_before is not None:
            dates["lte"] = iso(flt.created_before)
        if dates:
            out["created_at"] = dates
        for key, value in check_metadata(flt.metadata).items():
            if key in OUR_FIELDS or key in MEM0_FIELDS:
                raise ValidationError(f"'{key}' is not a metadata field; use the dedicated filter.", field="metadata")
            out[key] = check_plain(value, field=f"metadata.{key}")
        return out

    # A write is the vector change plus its history row. When mem0 fails between the two (the history
    # database went away), the vector change is taken back, so nothing is half done. Callers hold
    # the write lock, so what is taken back is exactly what the failed call did.
    def _take_back_add(self, owner_id: str, text: str, *, since: datetime) -> None:
        flt = {"owner_id": owner_id, "hash": hashlib.md5(text.encode()).hexdigest(), "created_at": {"gte": iso(since)}}
        try:
            for memory_id in self._reads.ids(flt, limit=100):
                try:
                    recorded = bool(self.history_store.for_memory(memory_id))
                except Exception:  # noqa: BLE001 - the history store is what failed: nothing was recorded
                    recorded = False
                if not recorded:
                    self.store.delete(vector_id=memory_id)
        except Exception as exc:  # noqa: BLE001 - best effort; the original error is raised
            log.error("could not take back a half-written memory: %s", type(exc).__name__)

    def _put_back(self, point: Any) -> None:
        """Make a memory exactly what it was before a write that failed half-way (best effort)."""
        if point is None:
            return
        payload = dict(point.payload or {})
        try:
            vector = self._embed(str(payload.get("data", "")), "update")
            self.store.insert(vectors=[vector], ids=[str(point.id)], payloads=[payload])
        except Exception as exc:  # noqa: BLE001 - best effort; the original error is raised
            log.error("could not restore memory %s after a failed write: %s", point.id, type(exc).__name__)

    def _owned(self, owner_id: str, memory_id: str) -> MemoryRecord:
        if not isinstance(memory_id, str) or not ID_RE.match(memory_id):
            raise NotFound("No such memory.")
        point = self._call(self.store.get, vector_id=str(uuid.UUID(memory_id)))
        if point is None or (point.payload or {}).get("owner_id") != owner_id:
            raise NotFound("No such memory.")
        return record_from_payload(point.id, point.payload or {})

    def _metadata(
        self,
        *,
        owner_id: str,
        type: str,
        importance: int,
        confidence: float,
        entities: Iterable[str] | None,
        people: Iterable[str] | None,
        tags: Iterable[str] | None,
        source: str,
        extra: dict[str, Any] | None,
    ) -> dict[str, Any]:
        if type not in MEMORY_TYPES:
            raise ValidationError(f"Unknown memory type {type!r}; use one of {', '.join(MEMORY_TYPES)}.", field="type")
        if isinstance(importance, bool) or not isinstance(importance, int) or not 1 <= importance <= 5:
            raise ValidationError("Importance is a whole number from 1 to 5.", field="importance")
        if not isinstance(confidence, int | float) or not 0 <= confidence <= 1:
            raise ValidationError("Confidence is a number from 0 to 1.", field="confidence")
        meta = {k: v for k, v in check_metadata(extra).items() if k not in OUR_FIELDS and k not in MEM0_FIELDS}
        meta.update(
            owner_id=owner_id,
            type=type,
            importance=importance,
            confidence=float(confidence),
            entities=clean_labels(entities, field="entities"),
            people=clean_labels(people, field="people"),
            tags=clean_labels(tags, field="tags"),
            source=source,
        )
        return meta

    # ------------------------------------------------------------------ writes
    def add(
        self,
        scope: Scope,
        text: str,
        *,
        type: str = "note",
        importance: int = 3,
        confidence: float = 1.0,
        entities: Iterable[str] | None = None,
        people: Iterable[str] | None = None,
        tags: Iterable[str] | None = None,
        expires_at: date | datetime | str | None = None,
        metadata: dict[str, Any] | None = None,
        source: str = "ui",
    ) -> MemoryRecord:
        """Store ``text`` as one memory, verbatim (no model involved)."""
        check_scope(scope)
        text = memory_text(text)
        meta = self._metadata(
            owner_id=scope.owner_id, type=type, importance=importance, confidence=confidence,
            entities=entities, people=people, tags=tags, source=source, extra=metadata,
        )
        started = datetime.now(UTC)  # mem0 stamps created_at with the wall clock
        with self._write_lock, attribution(scope, source):
            try:
                result = self._call(
                    self._m.add,
                    text,
                    user_id=scope.user_id,
                    agent_id=scope.agent_id,
                    run_id=scope.run_id,
                    metadata=meta,
                    infer=False,
                    expiration_date=expires_at,
                )
            except StoreUnavailable:
                self._take_back_add(scope.owner_id, text, since=started)
                raise
        rows = result.get("results", [])
        if not rows:
            raise StoreUnavailable("The memory store accepted nothing; the memory was not saved.")
        return self._owned(scope.owner_id, rows[0]["id"])

    def add_many(
        self,
        scope: Scope,
        items: Sequence[str | NewMemory | dict[str, Any]],
        *,
        source: str = "import",
        batch_size: int = 256,
    ) -> list[MemoryRecord]:
        """Store many memories verbatim (imports, the API's batch add), several times faster than
        calling :meth:`add` in a loop.

        Each batch is embedded in one model call, written to the vector store in one call, and
        its ADD events go to history in one transaction, with the same payload and history rows
        ``mem0.Memory.add(infer=False)`` writes. Everything is validated before anything is
        stored: one bad item raises :class:`ValidationError` naming its index and stores none.
        If the store fails, the batch being written is taken back out (earlier batches stay;
        the :class:`StoreUnavailable` says how many memories were saved before the failure).
        """
        if isinstance(items, str | bytes) or not isinstance(items, Sequence):
            raise ValidationError("add_many takes a list of memories.", field="items")
        if not 1 <= batch_size <= 4096:
            raise ValidationError("batch_size must be between 1 and 4096.", field="batch_size")
        check_scope(scope)
        prepared: list[tuple[str, dict[str, Any], date | None]] = []
        for index, item in enumerate(items):
            try:
                if isinstance(item, str):
                    item = NewMemory(text=item)
                elif isinstance(item, dict):
                    item = NewMemory.model_validate(item)
                elif not isinstance(item, NewMemory):
                    raise ValidationError("each memory is text, a NewMemory or a dict of its fields.")
                text = memory_text(item.text)
                meta = self._metadata(
                    owner_id=scope.owner_id, type=item.type, importance=item.importance,
                    confidence=item.confidence, entities=item.entities, people=item.people,
                    tags=item.tags, source=source, extra=item.metadata,
                )
            except ValidationError as exc:
                raise ValidationError(f"Memory #{index}: {exc}", field=exc.field) from exc
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                raise ValidationError(f"Memory #{index}: {exc}") from exc
            prepared.append((text, meta, item.expires_at))

        saved: list[MemoryRecord] = []
        for start in range(0, len(prepared), batch_size):
            try:
                saved.extend(self._insert(scope, prepared[start:start + batch_size], source=source))
            except StoreUnavailable as exc:
                raise StoreUnavailable(
                    f"{exc.message} {len(saved)} of {len(prepared)} memories were saved before it, the rest were not."
                ) from exc
        return saved

    def _insert(
        self,
        scope: Scope,
        items: Sequence[tuple[str, dict[str, Any], date | str | None]],
        *,
        source: str,
        ids: Sequence[str] | None = None,
        created_at: str | None = None,
    ) -> list[MemoryRecord]:
        """Write memories straight to the vector store with their ADD history rows, exactly as
        ``mem0.Memory.add(infer=False)`` would, but in one embedding call and one insert. All or
        nothing: if the store or history fails, the points are taken back out."""
        texts = [text for text, _, _ in items]
        vectors = self._call(self._m.embedding_model.embed_batch, texts, "add")
        if len(vectors) != len(texts):
            raise StoreUnavailable("The embedder returned the wrong number of vectors; nothing was saved.")
        now = iso(self._clock())
        ids = list(ids) if ids is not None else [str(uuid.uuid4()) for _ in items]
        payloads = []
        for text, meta, expires in items:
            payload = dict(meta)
            for key in ("user_id", "agent_id", "run_id"):
                value = getattr(scope, key)
                if value:
                    payload[key] = value
            payload["role"] = "user"
            if expires:
                payload["expiration_date"] = expires.isoformat() if isinstance(expires, date) else str(expires)
            payload.update(
                data=text,
                hash=hashlib.md5(text.encode()).hexdigest(),
                created_at=created_at or now,
                updated_at=now,
                text_lemmatized=lemmatize_for_bm25(text),
            )
            payloads.append(payload)
        history = [
            {"memory_id": mem_id, "old_memory": None, "new_memory": p["data"], "event": "ADD",
             "created_at": p["created_at"], "updated_at": now, "role": "user"}
            for mem_id, p in zip(ids, payloads, strict=True)
        ]
        with self._write_lock, attribution(scope, source):
            try:
                self.store.insert(vectors=vectors, ids=ids, payloads=payloads)
                self.history_store.batch_add_history(history)
            except Exception as exc:
                # Keep store and history in step: take the points back out.
                for mem_id in ids:
                    try:
                        self.store.delete(vector_id=mem_id)
                    except Exception:  # noqa: BLE001 - best effort; the original error is raised
                        pass
                log.warning("memory insert failed: %s", type(exc).__name__)
                raise StoreUnavailable("The memory store failed; nothing of this batch was saved. "
                                       "Try again in a moment.") from exc
        return [record_from_payload(mem_id, p) for mem_id, p in zip(ids, payloads, strict=True)]

    def add_candidate(self, scope: Scope, candidate: CandidateMemory, *, source: str = "pipeline") -> MemoryRecord:
        return self.add(
            scope, candidate.text, type=candidate.type, importance=candidate.importance,
            confidence=candidate.confidence, entities=candidate.entities, people=candidate.people,
            tags=candidate.tags, expires_at=candidate.expires_at, source=source,
        )

    def update(
        self,
        owner_id: str,
        memory_id: str,
        *,
        text: str | None = None,
        type: str | None = None,
        importance: int | None = None,
        confidence: float | None = None,
        entities: Iterable[str] | None = None,
        people: Iterable[str] | None = None,
        tags: Iterable[str] | None = None,
        expires_at: date | datetime | str | None | object = ...,
        metadata: dict[str, Any] | None = None,
        source: str = "ui",
    ) -> MemoryRecord:
        """Change text and/or fields; unchanged fields keep their values. mem0 records an UPDATE."""
        current = self._owned(owner_id, memory_id)
        if text is not None:
            text = memory_text(text)
        meta = self._metadata(
            owner_id=owner_id,
            type=type if type is not None else current.type,
            importance=importance if importance is not None else current.importance,
            confidence=confidence if confidence is not None else current.confidence,
            entities=entities if entities is not None else current.entities,
            people=people if people is not None else current.people,
            tags=tags if tags is not None else current.tags,
            source=source,
            extra={**current.metadata, **(metadata or {})},
        )
        kwargs: dict[str, Any] = {"text": text, "metadata": meta}
        if expires_at is not ...:
            kwargs["expiration_date"] = expires_at
        with self._write_lock, attribution(current.scope, source):
            before = self._call(self.store.get, vector_id=current.id)
            try:
                self._call(self._m.update, current.id, **kwargs)
            except StoreUnavailable:
                self._put_back(before)
                raise
        return self._owned(owner_id, current.id)

    def replace_with_candidate(self, scope: Scope, memory_id: str, candidate: CandidateMemory, *,
                               source: str = "pipeline") -> MemoryRecord:
        """The memory now says what the candidate says, with the candidate's fields only: nothing
        of the old memory (its tags, people, expiry) is carried into the new fact."""
        self._owned(scope.owner_id, memory_id)
        return self.update(
            scope.owner_id, memory_id, text=candidate.text, type=candidate.type, importance=candidate.importance,
            confidence=candidate.confidence, entities=candidate.entities, people=candidate.people,
            tags=candidate.tags, expires_at=candidate.expires_at, source=source,
        )

    def delete(self, scope_or_owner: Scope | str, memory_id: str, *, source: str = "ui") -> None:
        owner_id = scope_or_owner.owner_id if isinstance(scope_or_owner, Scope) else scope_or_owner
        current = self._owned(owner_id, memory_id)
        with self._write_lock, attribution(current.scope, source), deleting(current.as_dict()):
            before = self._call(self.store.get, vector_id=current.id)
            try:
                self._call(self._m.delete, current.id)
            except StoreUnavailable:
                self._put_back(before)
                raise

    def delete_all(self, owner_id: str, *, user_id: str | None = None, agent_id: str | None = None,
                   run_id: str | None = None, source: str = "ui") -> int:
        """Delete every memory of the owner (optionally of one end-user/agent/run). Returns the count."""
        flt = self._scope_filter(owner_id, MemoryFilters(user_id=user_id, agent_id=agent_id, run_id=run_id))
        ids = self._call(self._reads.ids, flt, limit=LIST_CAP)
        for mem_id in ids:
            self.delete(owner_id, mem_id, source=source)
        return len(ids)

    # ------------------------------------------------------------------ reads
    def get(self, owner_id: str, memory_id: str) -> MemoryRecord:
        return self._owned(owner_id, memory_id)

    def get_all(
        self,
        owner_id: str,
        filters: MemoryFilters | None = None,
        *,
        limit: int = 100,
        offset: int = 0,
        include_expired: bool = False,
    ) -> list[MemoryRecord]:
        """The owner's memories, newest first."""
        flt = self._scope_filter(owner_id, filters)
        offset = max(0, int(offset))
        limit = max(0, min(int(limit), LIST_CAP - min(offset, LIST_CAP)))
        live_on = None if include_expired else self._clock().date()
        rows = self._call(page_newest, self._reads, flt, live_on=live_on, offset=offset, limit=limit)
        return [record_from_payload(r.id, r.payload or {}) for r in rows]

    def count_matching(self, owner_id: str, filters: MemoryFilters | None = None, *,
                       include_expired: bool = False) -> int:
        """How many memories :meth:`get_all` would list with no limit, counted by the engine."""
        live_on = None if include_expired else self._clock().date()
        return int(self._call(self._reads.count, self._scope_filter(owner_id, filters), live_on=live_on))

    def count(self, owner_id: str | None = None, *, type: str | None = None) -> int:
        """Exact number of memories (of one owner, of one type), counted by the engine."""
        flt: dict[str, Any] = {}
        if owner_id:
            flt["owner_id"] = owner_id
        if type:
            flt["type"] = type
        return self._count(flt or None)

    def _count(self, flt: dict[str, Any] | None) -> int:
        return int(self._call(self._reads.count, flt))

    def count_by_type(self) -> dict[str, int]:
        """Memories per type across the install (admin analytics)."""
        return {t: n for t in MEMORY_TYPES if (n := self.count(type=t))}
