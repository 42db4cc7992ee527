"""Service routes: the key check mem0's client makes at start, health and Prometheus metrics.

``/health`` and ``/metrics`` need no key (load balancers and scrapers). Without a key ``/health``
says only ``ok``, ``degraded`` or ``down`` (503); the full report — components, file paths, the
database, counts — is for admins' keys. ``/metrics`` carries no memory content and no user ids;
filter it in the reverse proxy if its counts are sensitive for you.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response, Security
from fastapi.responses import JSONResponse

from core.api.context import Caller, Ctx, key_header, current_caller
from core.api.schemas import PingOut
from core.metrics import METRICS

router = APIRouter(tags=["service"])


@router.get("/v1/ping/", response_model=PingOut, summary="Check a key (mem0 client: MemoryClient())")
def ping(caller: Caller) -> PingOut:
    return PingOut(project_id=caller.owner_id, owner_id=caller.owner_id, username=caller.username,
                   user_email=caller.email, key_id=caller.key_id, key_name=caller.key_name)


@router.get("/health", summary="Liveness (503 when down); the full report with an admin's key")
def health(request: Request, ctx: Ctx,
           authorization: Annotated[str | None, Security(key_header)] = None) -> JSONResponse:
    full = False
    if authorization:  # a key was sent: it must be a valid one, and only an admin's sees everything
        full = current_caller(request, ctx, authorization).role == "admin"
    report = ctx.runtime.health()
    body = report.as_dict() if full else {"status": report.status}
    return JSONResponse(body, status_code=503 if report.status == "down" else 200)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(ctx: Ctx) -> Response:
    return Response(ctx.runtime.metrics_text(), media_type=METRICS.content_type)
