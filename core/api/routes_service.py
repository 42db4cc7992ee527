"""Service routes: the key check mem0's client makes at start, health and Prometheus metrics.

``/health`` and ``/metrics`` need no key (load balancers and scrapers); they carry no memory
content and no user ids — keep the port off the public internet or filter these two paths in
the reverse proxy if the counts and paths they show are sensitive for you.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from core.api.context import Caller, Ctx
from core.api.schemas import PingOut
from core.metrics import METRICS

router = APIRouter(tags=["service"])


@router.get("/v1/ping/", response_model=PingOut, summary="Check a key (mem0 client: MemoryClient())")
def ping(caller: Caller) -> PingOut:
    return PingOut(project_id=caller.owner_id, owner_id=caller.owner_id, username=caller.username,
                   user_email=caller.email, key_id=caller.key_id, key_name=caller.key_name)


@router.get("/health", summary="Health report: storage mode, components, counts (503 when down)")
def health(ctx: Ctx) -> JSONResponse:
    report = ctx.runtime.health()
    return JSONResponse(report.as_dict(), status_code=503 if report.status == "down" else 200)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(ctx: Ctx) -> Response:
    return Response(ctx.runtime.metrics_text(), media_type=METRICS.content_type)
