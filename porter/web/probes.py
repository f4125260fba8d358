"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from porter.web.services import services


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    svc = services(request)
    database = await svc.store.ping()
    pending = [m.version for m in await svc.store.pending_migrations()] if database else []
    missing = {cap: names for cap, names in svc.settings.missing().items() if names}
    ready = database and not pending
    body = {
        "ready": ready,
        "database": database,
        "pending_migrations": pending,
        "missing_settings": missing,
    }
    return JSONResponse(body, 200 if ready else 503)


async def metrics(request: Request) -> Response:
    found = services(request).metrics
    await found.refresh()  # the store's totals (tasks, live machines, cost), read now
    return Response(generate_latest(found.registry), media_type=CONTENT_TYPE_LATEST)
