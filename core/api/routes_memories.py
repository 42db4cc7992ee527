"""mem0-compatible memory routes: the paths, bodies and answers of the official ``mem0ai`` client.

Every call acts inside the key owner's account; ``user_id`` (and ``agent_id``, ``run_id``)
are scopes inside it. An id of another account's memory is 404, exactly like a missing one.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from core.api.context import ApiContext, Caller, Ctx, scope_for
from core.api.filters import ENTITY_KEYS, MAX_FILTER_DEPTH, parse_filters
from core.api.schemas import (
    EventStatusOut,
    AddEventOut,
    AddIn,
    AddOut,
    BatchDeleteIn,
    BatchUpdateIn,
    CountMessage,
    HistoryOut,
    ListIn,
    MemoryList,
    MemoryOut,
    Notice,
    Page,
    SearchIn,
    UpdateIn,
)
from core.apikeys import KeyOwner
from core.errors import NotFound, ValidationError
from core.memory.limits import check_metadata, check_text
from core.memory.service import MAX_MEMORY_CHARS, MemoryFilters
from core.memory.types import NewMemory
from core.metrics import METRICS

router = APIRouter(tags=["memories (mem0-compatible)"])


def entity_ids(filters: dict[str, Any] | None, **top: str | None) -> tuple[str | None, str | None, str | None]:
    """(user_id, agent_id, run_id) from a write's ``filters`` and top-level fields."""
    extra = sorted(set(filters or {}) - set(ENTITY_KEYS))
    if extra:
        raise ValidationError(f"Filters of a write may only name user_id, agent_id or run_id, not {extra[0]!r}.",
                              field=f"filters.{extra[0]}")
    flt = parse_filters(filters, **top)
    return flt.user_id, flt.agent_id, flt.run_id


def with_extras(flt: MemoryFilters, *, metadata: dict[str, Any] | None = None, categories: list[str] | None = None,
                start_date: str | None = None, end_date: str | None = None) -> MemoryFilters:
    """Fold mem0's top-level search/list options into the parsed filters."""
    extra: dict[str, Any] = {}
    if metadata:
        extra["metadata"] = metadata
    if categories:
        extra["categories"] = categories
    created = {op: v for op, v in (("gte", start_date), ("lte", end_date)) if v is not None}
    if created:
        extra["created_at"] = created
    if not extra:
        return flt
    more = parse_filters(extra)
    return dataclasses.replace(
        flt, metadata={**flt.metadata, **more.metadata}, tags=flt.tags + more.tags,
        created_after=more.created_after or flt.created_after,
        created_before=more.created_before or flt.created_before,
    )


@router.post("/v3/memories/add/", response_model=AddOut, responses={202: {"model": AddOut}},
             summary="Add memories (mem0 client: add)")
def add_memories(body: AddIn, caller: Caller, ctx: Ctx, response: Response) -> AddOut:
    """``infer=False`` stores each non-system message verbatim. ``infer=True`` (the default) learns
    facts with the two-phase pipeline; if the model fails the messages are queued and the answer is
    202 with ``status: PENDING``."""
    added = add(body, caller, ctx, source="api")
    if added.status == "PENDING":
        response.status_code = 202
    return added


def add(body: AddIn, caller: KeyOwner, ctx: ApiContext, *, source: str) -> AddOut:
    """Store verbatim (``infer=False``) or learn (the REST route and the MCP tools share this);
    ``source`` ("api", "mcp") is recorded in the history and the metrics."""
    user_id, agent_id, run_id = entity_ids(body.filters, user_id=body.user_id, agent_id=body.agent_id,
                                           run_id=body.run_id)
    scope = scope_for(caller, user_id, agent_id, run_id)
    if not body.infer:
        texts = [m.content for m in body.messages if m.role != "system"]
        if not texts:
            raise ValidationError("There is nothing to store: every message is a system message.", field="messages")
        items = [NewMemory(text=text, type=body.type, importance=body.importance, tags=body.tags or [],
                           people=body.people or [], entities=body.entities or [],
                           expires_at=body.expiration_date, metadata=body.metadata or {}) for text in texts]
        records = ctx.memory.add_many(scope, items, source=source)
        METRICS.memory_events.labels("ADD", source).inc(len(records))
        return AddOut(results=[AddEventOut(id=r.id, memory=r.text, event="ADD") for r in records])
    for name in ("metadata", "expiration_date", "tags", "people", "entities"):
        if getattr(body, name):
            raise ValidationError(f"{name} is stored only with infer=False; inferred memories get theirs from "
                                  "the model.", field=name)
    learned = ctx.learner.learn(scope, [m.model_dump() for m in body.messages], wait=ctx.learn_wait, source=source)
    if learned.pending:
        return AddOut(results=[], status="PENDING", event_id=str(learned.job_id),
                      message="Learning from these messages takes longer; it goes on in the background. "
                              f"GET /v1/events/{learned.job_id}/ tells when it is done.")
    return AddOut(results=[AddEventOut.of(e) for e in learned.events if e.applied and e.event != "NONE"],
                  event_id=str(learned.job_id))


@router.get("/v1/events/{event_id}/", response_model=EventStatusOut, summary="Status of an inferred add")
def event_status(event_id: str, caller: Caller, ctx: Ctx) -> EventStatusOut:
    """Whether the learning job an inferred add answered with (``event_id``) is done, and what it learned."""
    if not event_id.isdigit() or len(event_id) > 18:
        raise NotFound("No such event.")
    job = ctx.learner.queue.get_for_owner(caller.owner_id, int(event_id))
    status = {"pending": "PENDING", "running": "RUNNING", "done": "SUCCEEDED", "failed": "FAILED"}[job.status]
    results = [AddEventOut.of(e) for e in job.events or [] if e.applied and e.event != "NONE"]
    return EventStatusOut(id=event_id, status=status, results=results, attempts=job.attempts)


@router.post("/v3/memories/", response_model=Page, summary="List memories (mem0 client: get_all)")
def list_memories(
    request: Request, caller: Caller, ctx: Ctx, body: ListIn | None = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1, page_size: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Page:
    total, chunk = list_page(body or ListIn(), caller, ctx, page=page, page_size=page_size)
    more = page * page_size < total
    return Page(
        count=total,
        next=str(request.url.include_query_params(page=page + 1, page_size=page_size)) if more else None,
        previous=str(request.url.include_query_params(page=page - 1, page_size=page_size)) if page > 1 else None,
        results=chunk,
    )


def list_page(body: ListIn, caller: KeyOwner, ctx: ApiContext, *, page: int,
              page_size: int) -> tuple[int, list[MemoryOut]]:
    """(how many match, the memories on page ``page``, counted from 1)."""
    flt = with_extras(parse_filters(body.filters), categories=body.categories, start_date=body.start_date,
                      end_date=body.end_date)
    start = (page - 1) * page_size
    total = ctx.memory.count_matching(caller.owner_id, flt, include_expired=body.show_expired)
    chunk = ctx.memory.get_all(caller.owner_id, flt, limit=page_size, offset=start,
                               include_expired=body.show_expired) if start < total else []
    return total, [MemoryOut.of(r) for r in chunk]


@router.post("/v3/memories/search/", response_model=MemoryList, summary="Search memories (mem0 client: search)")
def search_memories(body: SearchIn, caller: Caller, ctx: Ctx) -> MemoryList:
    """Hybrid search (dense cosine + BM25, fused by rank). ``score`` is the cosine similarity."""
    flt = with_extras(parse_filters(body.filters), metadata=body.metadata, categories=body.categories)
    started = time.perf_counter()
    records = ctx.memory.search(caller.owner_id, body.query, flt, top_k=body.top_k, threshold=body.threshold,
                                mode=body.mode)
    METRICS.memory_search_latency.labels(body.mode).observe(time.perf_counter() - started)
    return MemoryList(results=[MemoryOut.of(r) for r in records])


@router.get("/v1/memories/{memory_id}/", response_model=MemoryOut, summary="Get one memory (mem0 client: get)")
def get_memory(memory_id: str, caller: Caller, ctx: Ctx) -> MemoryOut:
    return MemoryOut.of(ctx.memory.get(caller.owner_id, memory_id))


@router.put("/v1/memories/{memory_id}/", response_model=MemoryOut, summary="Update a memory (mem0 client: update)")
def update_memory(memory_id: str, body: UpdateIn, caller: Caller, ctx: Ctx) -> MemoryOut:
    return update(memory_id, body, caller, ctx, source="api")


def update(memory_id: str, body: UpdateIn, caller: KeyOwner, ctx: ApiContext, *, source: str) -> MemoryOut:
    given = body.model_fields_set
    if not given:
        raise ValidationError("Nothing to update: send text, metadata, expiration_date or another field.")
    record = ctx.memory.update(
        caller.owner_id, memory_id, text=body.text, metadata=body.metadata, type=body.type,
        importance=body.importance, confidence=body.confidence, entities=body.entities, people=body.people,
        tags=body.tags, expires_at=body.expiration_date if "expiration_date" in given else ..., source=source,
    )
    METRICS.memory_event("UPDATE", source)
    return MemoryOut.of(record)


@router.delete("/v1/memories/{memory_id}/", response_model=Notice, summary="Delete a memory (mem0 client: delete)")
def delete_memory(
    memory_id: str, caller: Caller, ctx: Ctx,
    delete_linked: Annotated[bool, Query(description="Accepted for mem0 compatibility; no linked chains here.")]
    = False,
) -> Notice:
    return delete(memory_id, caller, ctx, source="api")


def delete(memory_id: str, caller: KeyOwner, ctx: ApiContext, *, source: str) -> Notice:
    ctx.memory.delete(caller.owner_id, memory_id, source=source)
    METRICS.memory_event("DELETE", source)
    return Notice(message="Memory deleted successfully!")


MAX_QUERY_FILTERS_CHARS = 4096


def _query_filters(raw: str | None) -> dict[str, Any]:
    """mem0's client puts ``filters`` in the query string as JSON or as a Python dict's repr."""
    if not raw:
        return {}
    refused = ValidationError("filters must be a JSON object such as {\"user_id\": \"alice\"}.", field="filters")
    # Both parsers recurse: a short string of 4,000 brackets exhausts the stack. Bound it first.
    if len(raw) > MAX_QUERY_FILTERS_CHARS or sum(raw.count(c) for c in "[{(") > 4 * MAX_FILTER_DEPTH:
        raise refused
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        try:
            value = ast.literal_eval(raw)  # literals only: never evaluates code
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            value = None
    if not isinstance(value, dict):
        raise refused
    return value


@router.delete("/v1/memories/", response_model=CountMessage, summary="Delete many memories (mem0 client: delete_all)")
def delete_all_memories(
    caller: Caller, ctx: Ctx,
    user_id: Annotated[str | None, Query(max_length=200)] = None,
    agent_id: Annotated[str | None, Query(max_length=200)] = None,
    run_id: Annotated[str | None, Query(max_length=200)] = None,
    filters: Annotated[str | None, Query(description="JSON object with user_id / agent_id / run_id.")] = None,
) -> CountMessage:
    """Needs at least one of user_id, agent_id, run_id; ``user_id=*`` deletes every memory of the account."""
    raw = _query_filters(filters)
    if not (user_id or agent_id or run_id or any(raw.get(k) for k in ENTITY_KEYS)):
        raise ValidationError("Say what to delete: user_id, agent_id or run_id (user_id=* deletes everything).",
                              field="user_id")
    u, a, r = entity_ids(raw, user_id=user_id, agent_id=agent_id, run_id=run_id)
    deleted = ctx.memory.delete_all(caller.owner_id, user_id=u, agent_id=a, run_id=r, source="api")
    METRICS.memory_events.labels("DELETE", "api").inc(deleted)
    return CountMessage(message="Memories deleted successfully!", deleted=deleted)


@router.get("/v1/memories/{memory_id}/history/", response_model=list[HistoryOut],
            summary="A memory's history (mem0 client: history)")
def memory_history(memory_id: str, caller: Caller, ctx: Ctx) -> list[HistoryOut]:
    return [HistoryOut.of(e) for e in ctx.memory.history(caller.owner_id, memory_id)]


@router.put("/v1/batch/", response_model=Notice, summary="Update up to 1000 memories (mem0 client: batch_update)")
def batch_update(body: BatchUpdateIn, caller: Caller, ctx: Ctx) -> Notice:
    """Every id, text and metadata is checked before anything changes: one unknown id is 404 and one bad
    item 422, and neither updates anything."""
    for index, item in enumerate(body.memories):
        if item.text is None and item.metadata is None:
            raise ValidationError(f"Item #{index} has neither text nor metadata.", field=f"memories.{index}")
        if item.text is not None:
            check_text(item.text, limit=MAX_MEMORY_CHARS, field=f"memories.{index}.text", what="The memory")
        try:
            current = ctx.memory.get(caller.owner_id, item.memory_id)
        except NotFound:
            raise NotFound(f"No such memory (item #{index}).") from None
        if item.metadata is not None:
            check_metadata({**current.metadata, **item.metadata}, field=f"memories.{index}.metadata")
    for item in body.memories:
        ctx.memory.update(caller.owner_id, item.memory_id, text=item.text, metadata=item.metadata, source="api")
    METRICS.memory_events.labels("UPDATE", "api").inc(len(body.memories))
    return Notice(message=f"Successfully updated {len(body.memories)} memories")


@router.delete("/v1/batch/", response_model=Notice, summary="Delete up to 1000 memories (mem0 client: batch_delete)")
def batch_delete(body: BatchDeleteIn, caller: Caller, ctx: Ctx) -> Notice:
    """Every id is checked first: one unknown id is 404 and deletes nothing."""
    for index, item in enumerate(body.memories):
        try:
            ctx.memory.get(caller.owner_id, item.memory_id)
        except NotFound:
            raise NotFound(f"No such memory (item #{index}).") from None
    ids = list(dict.fromkeys(item.memory_id for item in body.memories))
    for memory_id in ids:
        ctx.memory.delete(caller.owner_id, memory_id, source="api")
    METRICS.memory_events.labels("DELETE", "api").inc(len(ids))
    return Notice(message=f"Successfully deleted {len(ids)} memories")
