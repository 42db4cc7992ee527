"""mem0-compatible entity routes: the end-users, agents and runs that hold memories in an account."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter

from core.api.context import Caller, Ctx
from core.api.schemas import CountMessage, EntityOut, EntityPage
from core.errors import ValidationError
from core.metrics import METRICS

router = APIRouter(tags=["entities (mem0-compatible)"])


@router.get("/v1/entities/", response_model=EntityPage, summary="Users, agents and runs (mem0 client: users)")
def list_entities(caller: Caller, ctx: Ctx) -> EntityPage:
    results = [EntityOut(id=e.name, name=e.name, type=e.kind, total_memories=e.total, created_at=e.first_created,
                         updated_at=e.last_created) for e in ctx.memory.entities(caller.owner_id)]
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
