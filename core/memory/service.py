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
"""

from __future__ import annotations

import contextlib

import hashlib
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from core.errors import NotFound, StoreUnavailable, ValidationError
from core.memory.history import HistoryEntry, SqlHistory, attribution, deleting
from core.memory.limits import check_id, check_metadata, check_plain, check_text, clean_labels
from core.memory.paging import EXPIRES, LIVE_ON, EngineReads, engine_reads, page_newest
from core.memory.types import MEMORY_TYPES, CandidateMemory, MemoryEvent, MemoryRecord, NewMemory, Scope

log = logging.getLogger(__name__)

MAX_MEMORY_CHARS = 2000
STORE_FAILED = "The memory store is not available right now; nothing was changed. Try again in a moment."
LIST_CAP = 100_000
# Cosine similarity of the bundled MiniLM between a query and a memory. Unrelated pairs measure
# 0.05-0.19 ("zzqx nothing" against anything), loosely related ones 0.23-0.35 ("music" ~ "Plays the
# cello"), clear matches above that ("Rita" ~ "My sister is called Rita Moreno": 0.68).
RELEVANCE_FLOOR = 0.21
STRONG_MATCH = 0.35
RRF_K = 60
_ID_RE = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")
_OURS = {"owner_id", "type", "importance", "confidence", "entities", "people", "tags", "expires_at", "source"}
_MEM0 = {"data", "hash", "created_at", "updated_at", "text_lemmatized", "user_id", "agent_id", "run_id",
         "actor_id", "role", "expiration_date", "attributed_to"}


@dataclass(frozen=True, slots=True)
class MemoryFilters:
    """Optional narrowing for search and listing. Lists match if any value matches."""

    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    types: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    people: tuple[str, ...] = ()
    min_importance: int | None = None
    max_importance: int | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EntityStats:
    kind: str  # "user", "agent" or "run"
    name: str
    total: int
    first_created: str | None
    last_created: str | None


@dataclass(frozen=True, slots=True)
class RankedResults:
    """A search split by relevance: clear matches first, then weak ones worth a look; anything
    below the relevance floor is left out, so a query can find nothing."""

    matches: list[MemoryRecord]
    weak: list[MemoryRecord]

    def __bool__(self) -> bool:
        return bool(self.matches or self.weak)


@dataclass(frozen=True, slots=True)
class DeletedMemory:
    """A memory whose latest history event is its deletion; it can be restored under its own id."""

    memory_id: str
    text: str
    deleted_at: datetime
    source: str | None
    user_id: str | None
    exact: bool  # the deletion kept the memory's fields, so a restore brings back type, tags and people too


@dataclass(frozen=True, slots=True)
class MemoryStats:
    total: int
    by_type: dict[str, int]
    top_tags: list[tuple[str, int]]
    top_people: list[tuple[str, int]]
    oldest: str | None
    newest: str | None
    user_ids: list[str]
    tags: list[tuple[str, int]] = field(default_factory=list)  # every tag in use, most used first
    people: list[tuple[str, int]] = field(default_factory=list)  # every person named, most named first


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat()


def _as_tuple(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def _record(mem_id: Any, payload: dict[str, Any], score: float | None = None) -> MemoryRecord:
    expires = payload.get("expiration_date")
    try:
        expires_at = date.fromisoformat(str(expires)) if expires else None
    except ValueError:
        expires_at = None
    extra = {k: v for k, v in payload.items() if k not in _OURS and k not in _MEM0}
    return MemoryRecord(
        id=str(mem_id),
        text=payload.get("data", ""),
        owner_id=payload.get("owner_id", ""),
        user_id=payload.get("user_id"),
        agent_id=payload.get("agent_id"),
        run_id=payload.get("run_id"),
        type=payload.get("type") or "note",
        importance=int(payload.get("importance") or 3),
        confidence=float(payload.get("confidence") if payload.get("confidence") is not None else 1.0),
        entities=_as_tuple(payload.get("entities")),
        people=_as_tuple(payload.get("people")),
        tags=_as_tuple(payload.get("tags")),
        expires_at=expires_at,
        created_at=payload.get("created_at"),
        updated_at=payload.get("updated_at"),
        hash=payload.get("hash"),
        score=score,
        metadata=extra,
    )


def _most_common(pairs: list[tuple[str, int]]) -> list[tuple[str, int]]:
    return sorted(pairs, key=lambda pair: (-pair[1], pair[0]))  # ties by name, so the order is stable


def _rows(listed: Any) -> list[Any]:
    """mem0 stores' ``list()`` returns ``[rows]`` (or rows); normalise to rows."""
    if isinstance(listed, tuple):
        listed = listed[0]
    if listed and isinstance(listed, list) and listed and isinstance(listed[0], list):
        return listed[0]
    return list(listed or [])


def _memory_text(text: Any, field: str = "text") -> str:
    return check_text(text, field=field, limit=MAX_MEMORY_CHARS, what="The memory" if field == "text" else "The query")


def _check_scope(scope: Scope) -> None:
    """A scope a memory may be written to: an owner, a visible user id, optional agent and run ids."""
    if not isinstance(scope, Scope) or not isinstance(scope.owner_id, str) or not scope.owner_id:
        raise ValidationError("An owner is required.", field="owner_id")
    check_id(scope.user_id, field="user_id")
    for key in ("agent_id", "run_id"):
        value = getattr(scope, key)
        if value is not None:
            check_id(value, field=key)


class MemoryService:
    """Owner-scoped operations on long-term memory. Thread-safe."""

    def __init__(self, memory: Any, history: SqlHistory, *, clock: Callable[[], datetime] | None = None) -> None:
        self._m = memory
        self.history_store = history
        memory.db = history  # mem0 writes its history through .db
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
            dates["gte"] = _iso(flt.created_after)
        if flt.created_before is not None:
            dates["lte"] = _iso(flt.created_before)
        if dates:
            out["created_at"] = dates
        for key, value in check_metadata(flt.metadata).items():
            if key in _OURS or key in _MEM0:
                raise ValidationError(f"'{key}' is not a metadata field; use the dedicated filter.", field="metadata")
            out[key] = check_plain(value, field=f"metadata.{key}")
        return out

    # A write is the vector change plus its history row. When mem0 fails between the two (the history
    # database went away), the vector change is taken back, so nothing is half done. Callers hold
    # the write lock, so what is taken back is exactly what the failed call did.
    def _take_back_add(self, owner_id: str, text: str, *, since: datetime) -> None:
        flt = {"owner_id": owner_id, "hash": hashlib.md5(text.encode()).hexdigest(), "created_at": {"gte": _iso(since)}}
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
        if not isinstance(memory_id, str) or not _ID_RE.match(memory_id):
            raise NotFound("No such memory.")
        point = self._call(self.store.get, vector_id=str(uuid.UUID(memory_id)))
        if point is None or (point.payload or {}).get("owner_id") != owner_id:
            raise NotFound("No such memory.")
        return _record(point.id, point.payload or {})

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
        meta = {k: v for k, v in check_metadata(extra).items() if k not in _OURS and k not in _MEM0}
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
        _check_scope(scope)
        text = _memory_text(text)
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
        _check_scope(scope)
        prepared: list[tuple[str, dict[str, Any], date | None]] = []
        for index, item in enumerate(items):
            try:
                if isinstance(item, str):
                    item = NewMemory(text=item)
                elif isinstance(item, dict):
                    item = NewMemory.model_validate(item)
                elif not isinstance(item, NewMemory):
                    raise ValidationError("each memory is text, a NewMemory or a dict of its fields.")
                text = _memory_text(item.text)
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
        from mem0.utils.lemmatization import lemmatize_for_bm25

        texts = [text for text, _, _ in items]
        vectors = self._call(self._m.embedding_model.embed_batch, texts, "add")
        if len(vectors) != len(texts):
            raise StoreUnavailable("The embedder returned the wrong number of vectors; nothing was saved.")
        now = _iso(self._clock())
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
        return [_record(mem_id, p) for mem_id, p in zip(ids, payloads, strict=True)]

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
            text = _memory_text(text)
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
        return [_record(r.id, r.payload or {}) for r in rows]

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

    def history(self, owner_id: str, memory_id: str) -> list[HistoryEntry]:
        """Every recorded change of a memory, oldest first (also for deleted memories of this owner)."""
        entries = self.history_store.for_memory(memory_id) if _ID_RE.match(memory_id or "") else []
        if not entries or any(e.owner_id not in (None, owner_id) for e in entries):
            raise NotFound("No such memory.")
        if all(e.owner_id is None for e in entries):
            self._owned(owner_id, memory_id)  # history written before attribution: check via the store
        return entries

    def revert(self, owner_id: str, memory_id: str, history_id: str, *, source: str = "ui") -> MemoryRecord:
        """Bring back the text a memory had after (or before a DELETE) the given history entry."""
        entries = self.history(owner_id, memory_id)
        entry = next((e for e in entries if e.id == history_id), None)
        if entry is None:
            raise NotFound("No such history entry.")
        text = entry.new_memory if entry.event != "DELETE" else entry.old_memory
        if not text:
            raise ValidationError("That history entry has no text to go back to.")
        try:
            self._owned(owner_id, memory_id)
        except NotFound:  # deleted: re-create it in the scope it had (mem0 gives it a new id; the
            # REST API promises that). "Recently deleted" restores under the own id: restore_deleted.
            scope = next((e.scope for e in reversed(entries) if e.scope), None) or Scope.personal(owner_id)
            return self.add(scope, text, source=source, metadata={"restored_from": memory_id})
        return self.update(owner_id, memory_id, text=text, source=source)

    @staticmethod
    def _snapshot_from_history(entries: list[HistoryEntry]) -> dict[str, Any]:
        """What a deleted memory was: the snapshot its DELETE kept, or (for deletions recorded before
        snapshots existed) its last text, scope and creation time as history knows them."""
        last = entries[-1]
        if last.event == "DELETE" and last.snapshot:
            return dict(last.snapshot)
        scope = next((e.scope for e in reversed(entries) if e.scope), None)
        text = next((e.old_memory if e.event == "DELETE" else e.new_memory for e in reversed(entries)
                     if (e.old_memory if e.event == "DELETE" else e.new_memory)), None)
        return {"id": last.memory_id, "memory": text or "", "user_id": scope.user_id if scope else None,
                "agent_id": scope.agent_id if scope else None, "run_id": scope.run_id if scope else None,
                "created_at": next((e.created_at for e in entries if e.event == "ADD"), None)}

    def recently_deleted(self, owner_id: str, *, limit: int = 50) -> list[DeletedMemory]:
        """The owner's deleted memories (from history), most recently deleted first."""
        if not owner_id:
            raise ValidationError("An owner is required.", field="owner_id")
        out = []
        for entry in self.history_store.deleted_for_owner(owner_id, limit=limit):
            text = (entry.snapshot or {}).get("memory") or entry.old_memory
            if text:
                out.append(DeletedMemory(entry.memory_id, text, entry.recorded_at, entry.source,
                                         entry.scope.user_id if entry.scope else None, bool(entry.snapshot)))
        return out

    def restore_deleted(self, owner_id: str, memory_id: str, *, source: str = "ui") -> MemoryRecord:
        """Bring a deleted memory back under its own id, as it was when it was deleted (text only
        for deletions recorded before history kept whole memories). NotFound for another owner's."""
        entries = self.history(owner_id, memory_id)
        if entries[-1].event != "DELETE":
            raise ValidationError("This memory is not deleted.")
        return self.restore(owner_id, self._snapshot_from_history(entries), source=source)

    def undo(self, owner_id: str, event: MemoryEvent, *, source: str = "ui") -> MemoryRecord | None:
        """Take back one applied event exactly: an ADD is deleted, an UPDATE gets its previous text
        and fields back, a DELETE is restored under its own id with everything it had. Returns the
        memory as it is afterwards (None after undoing an ADD).

        Refused (:class:`ValidationError`) when the memory changed since the event, so an undo
        never throws away a later edit.
        """
        if not event.undoable:
            raise ValidationError("There is nothing to undo for this event.")
        if event.event == "ADD":
            current = self._owned(owner_id, event.memory_id)
            if current.text != event.text:
                raise ValidationError("This memory was edited since it was learned; delete it on the Memories page.")
            self.delete(owner_id, current.id, source=source)
            return None
        before = event.before
        if event.event == "UPDATE":
            current = self._owned(owner_id, event.memory_id)
            if current.text != event.text:
                raise ValidationError("This change can no longer be undone (the memory changed since).")
            if before is None:  # an event recorded before snapshots existed: text only
                if not event.previous_text:
                    raise ValidationError("This change can no longer be undone.")
                return self.update(owner_id, current.id, text=event.previous_text, source=source)
            return self.update(
                owner_id, current.id, text=before["memory"], type=before["type"], importance=before["importance"],
                confidence=before["confidence"], entities=before["entities"], people=before["people"],
                tags=before["tags"], expires_at=before.get("expires_at"), metadata=before.get("metadata") or {},
                source=source,
            )
        # DELETE
        try:
            self._owned(owner_id, event.memory_id)
        except NotFound:
            pass
        else:
            raise ValidationError("This memory is already back.")
        if before is None:  # an event recorded before events kept snapshots: what history kept
            return self.restore_deleted(owner_id, event.memory_id, source=source)
        return self.restore(owner_id, before, source=source)

    def restore(self, owner_id: str, snapshot: dict[str, Any], *, source: str = "ui") -> MemoryRecord:
        """Bring a deleted memory back under its own id, with the text and fields of ``snapshot``
        (a ``MemoryRecord.as_dict()``); history records it as an ADD."""
        memory_id = str(snapshot.get("id") or "")
        if not _ID_RE.match(memory_id):
            raise ValidationError("That memory cannot be restored (no id).")
        history = self.history_store.for_memory(memory_id)
        if any(e.owner_id not in (None, owner_id) for e in history):
            raise NotFound("No such memory.")
        scope = Scope(owner_id, snapshot.get("user_id") or owner_id, snapshot.get("agent_id"), snapshot.get("run_id"))
        _check_scope(scope)
        text = " ".join(_memory_text(snapshot.get("memory") or "").split())
        meta = self._metadata(
            owner_id=owner_id, type=snapshot.get("type") or "note", importance=int(snapshot.get("importance") or 3),
            confidence=float(snapshot.get("confidence") if snapshot.get("confidence") is not None else 1.0),
            entities=snapshot.get("entities"), people=snapshot.get("people"), tags=snapshot.get("tags"),
            source=source, extra=snapshot.get("metadata") or {},
        )
        expires = snapshot.get("expires_at")
        record = self._insert(scope, [(text, meta, expires)], source=source, ids=[memory_id],
                              created_at=snapshot.get("created_at"))[0]
        return record

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
            out.append([_record(h.id, h.payload or {}, h.score) for h in hits])
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
        query = _memory_text(query, field="query")
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
            results.append(_record(key, payload, score))
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

        all_tags, all_people = _most_common(facet("tags", 1000)), _most_common(facet("people", 1000))
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

    # ------------------------------------------------------------------ maintenance
    def cleanup_expired(self, owner_id: str | None = None) -> int:
        """Delete memories whose expiry date has passed (they are already hidden). Returns the count."""
        flt: dict[str, Any] = {EXPIRES: {"lt": self._clock().date().isoformat()}}  # found by the engine
        if owner_id:
            flt["owner_id"] = owner_id
        removed = 0
        for mem_id in self._call(self._reads.ids, flt, limit=LIST_CAP):
            point = self._call(self.store.get, vector_id=mem_id)
            if point is None:
                continue
            record = _record(point.id, point.payload or {})
            with self._write_lock, attribution(record.scope, "cleanup"), deleting(record.as_dict()):
                self._call(self._m.delete, str(point.id))
            removed += 1
        return removed

    def consolidate(self, scope: Scope, *, threshold: float = 0.95) -> list[MemoryEvent]:
        """Merge near-duplicates in one scope: keep the most important (then newest), fold the
        others' people/tags into it (UPDATE) and delete them (DELETE)."""
        records = self.get_all(scope.owner_id, MemoryFilters(user_id=scope.user_id, agent_id=scope.agent_id,
                                                             run_id=scope.run_id), limit=LIST_CAP)
        gone: set[str] = set()
        events: list[MemoryEvent] = []
        for rec in sorted(records, key=lambda r: (r.importance, r.updated_at or ""), reverse=True):
            if rec.id in gone:
                continue
            neighbours = [n for n in self.similar_batch(scope, [rec.text], k=10)[0]
                          if n.id != rec.id and n.id not in gone and (n.score or 0) >= threshold]
            if not neighbours:
                continue
            people = [*rec.people, *(p for n in neighbours for p in n.people)]
            tags = [*rec.tags, *(t for n in neighbours for t in n.tags)]
            if set(people) != set(rec.people) or set(tags) != set(rec.tags):
                kept = self.update(scope.owner_id, rec.id, people=people, tags=tags, source="consolidation")
                events.append(MemoryEvent("UPDATE", kept.id, kept.text, rec.text, reason="merged near-duplicates"))
            for n in neighbours:
                self.delete(scope.owner_id, n.id, source="consolidation")
                gone.add(n.id)
                events.append(MemoryEvent("DELETE", n.id, None, n.text, reason=f"near-duplicate of {rec.id}"))
        return events

    def erase_owner(self, owner_id: str) -> int:
        """GDPR erase: every vector and every history row of the owner."""
        if not owner_id:
            raise ValidationError("An owner is required.", field="owner_id")
        erased = 0
        with self._write_lock:
            while True:  # in pages, so any number of memories goes
                # Ids only: a payload the engine cannot decode must not keep a person's data alive.
                ids = self._call(self._reads.ids, {"owner_id": owner_id}, limit=5_000)
                if not ids:
                    break
                for memory_id in ids:
                    self._call(self.store.delete, vector_id=memory_id)
                erased += len(ids)
            self.history_store.erase_owner(owner_id)
        return erased


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
