"""The audit log, for admins: `/audit` in the browser, `/api/audit` as JSON."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from porter.errors import BadRequest
from porter.models import AuditEntry
from porter.web.params import ascii_int
from porter.web.render import render
from porter.web.services import services
from porter.web.viewer import identify

PAGE = 100


async def _entries(request: Request) -> tuple[list[AuditEntry], int | None]:
    viewer = await identify(request)
    viewer.require_admin()
    query = request.query_params
    limit = ascii_int(query.get("limit"), "limit") or PAGE
    if not 1 <= limit <= 500:
        raise BadRequest("limit must be from 1 to 500")
    found = await services(request).store.audit_entries(
        actor=query.get("actor") or None, action=query.get("action") or None,
        before=ascii_int(query.get("cursor"), "cursor"), limit=limit + 1)
    page = found[:limit]
    return page, (page[-1].id if len(found) > limit and page else None)


async def audit_page(request: Request) -> Response:
    entries, cursor = await _entries(request)
    return render(request, await identify(request), "audit.html", entries=entries,
                  cursor=cursor, actor=request.query_params.get("actor", ""),
                  action=request.query_params.get("action", ""))


async def audit_api(request: Request) -> Response:
    entries, cursor = await _entries(request)
    return JSONResponse({"entries": [entry.to_json() for entry in entries],
                         "next_cursor": str(cursor) if cursor is not None else None})


routes: list[BaseRoute] = [
    Route("/audit", audit_page, methods=["GET"]),
    Route("/api/audit", audit_api, methods=["GET"]),
]
