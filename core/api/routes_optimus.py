"""Optimus extensions: typed adds, bulk import, revert, temporal / tag / people search and stats.

``core.client.RemoteMemory`` uses these together with the mem0-compatible routes, so it can offer
the same interface as the local ``MemoryService``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from core.api.context import Caller, Ctx, scope_for
from core.api.filters import parse_filters
from core.api.schemas import (
    MemoryList,
    MemoryOut,
    NewMemoriesIn,
    NewMemoryIn,
    PeopleIn,
    RevertIn,
    StatsOut,
    TagsIn,
    TemporalIn,
)
from core.metrics import METRICS

router = APIRouter(prefix="/v1/optimus", tags=["Optimus extensions"])


@router.post("/memories/", response_model=MemoryOut, status_code=201, summary="Add one memory, verbatim")
def add_memory(body: NewMemoryIn, caller: Caller, ctx: Ctx) -> MemoryOut:
    record = ctx.memory.add(
        scope_for(caller, body.user_id, body.agent_id, body.run_id), body.text, type=body.type,
        importance=body.importance, confidence=body.confidence, entities=body.entities, people=body.people,
        tags=body.tags, expires_at=body.expires_at, metadata=body.metadata, source="api",
    )
    METRICS.memory_event("ADD", "api")
    return MemoryOut.of(record)


@router.post("/memories/batch/", response_model=MemoryList, status_code=201,
             summary="Add up to 1000 memories verbatim (all or nothing)")
def add_memories(body: NewMemoriesIn, caller: Caller, ctx: Ctx) -> MemoryList:
    records = ctx.memory.add_many(scope_for(caller, body.user_id, body.agent_id, body.run_id), body.items,
                                  source="api")
    METRICS.memory_events.labels("ADD", "api").inc(len(records))
    return MemoryList(results=[MemoryOut.of(r) for r in records])


@router.post("/memories/{memory_id}/revert/", response_model=MemoryOut,
             summary="Bring back a memory's text from one of its history entries")
def revert_memory(memory_id: str, body: RevertIn, caller: Caller, ctx: Ctx) -> MemoryOut:
    """A deleted memory comes back under a new id (mem0 never reuses ids)."""
    record = ctx.memory.revert(caller.owner_id, memory_id, body.history_id, source="api")
    METRICS.memory_event("UPDATE" if record.id == memory_id else "ADD", "api")
    return MemoryOut.of(record)


@router.post("/search/temporal/", response_model=MemoryList,
             summary="Memories from a period, optionally matching a query")
def temporal_search(body: TemporalIn, caller: Caller, ctx: Ctx) -> MemoryList:
    when = body.when if isinstance(body.when, str) else (body.when.start, body.when.end)
    records = ctx.memory.temporal_search(caller.owner_id, when, body.query or None, parse_filters(body.filters),
                                         top_k=body.top_k)
    return MemoryList(results=[MemoryOut.of(r) for r in records])


@router.post("/search/tags/", response_model=MemoryList, summary="Memories with any of these tags")
def tag_search(body: TagsIn, caller: Caller, ctx: Ctx) -> MemoryList:
    records = ctx.memory.by_tags(caller.owner_id, body.tags, user_id=body.user_id, limit=body.limit)
    return MemoryList(results=[MemoryOut.of(r) for r in records])


@router.post("/search/people/", response_model=MemoryList, summary="Memories about any of these people")
def people_search(body: PeopleIn, caller: Caller, ctx: Ctx) -> MemoryList:
    records = ctx.memory.by_people(caller.owner_id, body.people, user_id=body.user_id, limit=body.limit)
    return MemoryList(results=[MemoryOut.of(r) for r in records])


@router.get("/stats/", response_model=StatsOut, summary="Counts by type, top tags and people, date range")
def stats(caller: Caller, ctx: Ctx, user_id: Annotated[str | None, Query(max_length=200)] = None) -> StatsOut:
    return StatsOut.of(ctx.memory.stats(caller.owner_id, user_id=user_id))
