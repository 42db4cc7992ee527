"""mem0-compatible entity routes: the end-users, agents and runs that hold memories in an account."""

from __future__ import annotations

from collections import defaultdict
from typing import Literal

from fastapi import APIRouter

from core.api.context import Caller, Ctx
from core.api.schemas import CountMessage, EntityOut, EntityPage
from core.errors import ValidationError
from core.memory.service import LIST_CAP
from core.metrics import METRICS

router = APIRouter(tags=["entities (mem0-compatible)"])


@router.get("/v1/entities/", response_model=EntityPage, summary="Users, agents and runs (mem0 client: users)")
def list_entities(caller: Caller, ctx: Ctx) -> EntityPage:
    records = ctx.memory.get_all(caller.owner_id, limit=LIST_CAP, include_expired=True)
    seen: dict[tuple[str, str], list[str | None]] = defaultdict(list)
    for r in records:
        for kind, name in (("user", r.user_id), ("agent", r.agent_id), ("run", r.run_id)):
            if name:
                seen[(kind, name)].append(r.created_at)
    results = []
    for (kind, name), created in sorted(seen.items()):
        stamps = sorted(c for c in created if c)
        results.append(EntityOut(id=name, name=name, type=kind, total_memories=len(created),
                                 created_at=stamps[0] if stamps else None, updated_at=stamps[-1] if stamps else None))
    return EntityPage(count=len(results), results=results)


@router.delete("/v2/entities/{entity_type}/{entity_id}/", response_model=CountMessage,
               summary="Delete an entity's memories (mem0 client: delete_users)")
def delete_entity(entity_type: Literal["user", "agent", "run", "app"], entity_id: str, caller: Caller,
                  ctx: Ctx) -> CountMessage:
    if entity_type == "app":
        raise ValidationError("app entities are not supported; use user, agent or run.", field="entity_type")
    # No 404 for an entity without memories: mem0's delete_users() walks users() and deletes each
    # entity in turn, and deleting a user may already have emptied an agent listed after it.
    deleted = ctx.memory.delete_all(caller.owner_id, source="api", **{f"{entity_type}_id": entity_id})
    METRICS.memory_events.labels("DELETE", "api").inc(deleted)
    return CountMessage(message="Entity deleted successfully!", deleted=deleted)
