"""mem0-compatible exports, answered with our GDPR export: every field of every memory (expired
ones too) and the full change history; for the whole account also the profile, conversations,
model usage and audit events (``core.gdpr``). Every fetch is recorded in the audit log.

mem0 creates an export, then fetches it by id. Here the id *is* the request — its filters,
encoded — so any replica can answer it, nothing is stored, and the export is always current.
It is only ever evaluated inside the caller's own account, so an id is worthless to anyone else.
An unfiltered export also carries the history of memories that were deleted.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter

from core.api.context import Caller, Ctx
from core.api.filters import parse_filters
from core.api.schemas import AccountOut, ExportCreatedOut, ExportGetIn, ExportIn, ExportOut, HistoryOut, MemoryOut
from core.errors import NotFound
from core.memory.service import LIST_CAP

router = APIRouter(tags=["exports (mem0-compatible)"])
ID_PREFIX = "exp_"
MAX_ID_CHARS = 8192


def _request_of(filters: dict[str, Any] | None, **entities: str | None) -> dict[str, Any]:
    request = {"filters": filters or {}, **{k: v for k, v in entities.items() if v}}
    parse_filters(request["filters"], **entities)  # refuse a bad filter now, not at fetch time
    return request


def export_id(request: dict[str, Any]) -> str:
    raw = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return ID_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def request_of_id(value: str) -> dict[str, Any]:
    if not value.startswith(ID_PREFIX) or len(value) > MAX_ID_CHARS:
        raise NotFound("No such export.")
    data = value[len(ID_PREFIX):]
    try:
        request = json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    except (binascii.Error, ValueError):
        raise NotFound("No such export.") from None
    if not isinstance(request, dict) or not isinstance(request.get("filters"), dict):
        raise NotFound("No such export.")
    return request


@router.post("/v1/exports/", response_model=ExportCreatedOut, summary="Start an export (mem0: create_memory_export)")
def create_export(body: ExportIn, caller: Caller) -> ExportCreatedOut:
    request = _request_of(body.filters, user_id=body.user_id, agent_id=body.agent_id, run_id=body.run_id)
    if body.schema_ is not None:
        request["schema"] = body.schema_
    return ExportCreatedOut(id=export_id(request), message="Memory export is ready; fetch it with its id.")


@router.post("/v1/exports/get/", response_model=ExportOut, summary="Fetch an export (mem0: get_memory_export)")
def get_export(body: ExportGetIn, caller: Caller, ctx: Ctx) -> ExportOut:
    if body.memory_export_id:
        request = request_of_id(body.memory_export_id)
    else:
        request = _request_of(body.filters, user_id=body.user_id, agent_id=body.agent_id, run_id=body.run_id)
    entities = {k: request.get(k) for k in ("user_id", "agent_id", "run_id")}
    flt = parse_filters(request["filters"], **entities)
    records = ctx.memory.get_all(caller.owner_id, flt, limit=LIST_CAP, include_expired=True)
    history = ctx.memory.history_store.for_owner(caller.owner_id)
    everything = not request["filters"] and not any(entities.values())
    personal: dict[str, Any] = {}
    if everything:
        collected = ctx.runtime.gdpr.collect(caller.owner_id)
        personal = {k: collected[k] for k in ("profile", "conversations", "usage", "audit")}
    else:
        ids = {r.id for r in records}
        history = [e for e in history if e.memory_id in ids]
    ctx.runtime.audit.record("export", actor_id=caller.owner_id, subject_id=caller.owner_id,
                             detail={"via": "api", "key_id": caller.key_id, "memories": len(records),
                                     "whole_account": everything})
    return ExportOut(
        id=body.memory_export_id or export_id(request),
        exported_at=datetime.now(UTC),
        account=AccountOut(id=caller.owner_id, username=caller.username, email=caller.email),
        filters={**request["filters"], **{k: v for k, v in entities.items() if v}},
        schema=request.get("schema"),
        count=len(records),
        memories=[MemoryOut.of(r) for r in records],
        history=[HistoryOut.of(e) for e in history],
        **personal,
    )
