"""Callbacks from agent machines: /api/runs/{run_id}/spec|heartbeat|logs|complete."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from porter.web.bodies import read_json
from porter.web.services import services

HEARTBEAT_BYTES = 8 * 1024
LOG_BYTES = 256 * 1024
COMPLETE_BYTES = 16 * 1024 * 1024  # a 10 MB changeset, base64-encoded, with room to spare


async def spec(request: Request) -> Response:
    runs = services(request).runtime.runs
    run = await runs.authenticate(request.path_params["run_id"],
                                  request.headers.get("authorization"))
    return JSONResponse(await runs.spec(run), headers={"Cache-Control": "no-store"})


async def heartbeat(request: Request) -> Response:
    runs = services(request).runtime.runs
    run = await runs.authenticate(request.path_params["run_id"],
                                  request.headers.get("authorization"))
    cancel = await runs.heartbeat(run, await read_json(request, HEARTBEAT_BYTES))
    return JSONResponse({"cancel": cancel})


async def logs(request: Request) -> Response:
    runs = services(request).runtime.runs
    run = await runs.authenticate(request.path_params["run_id"],
                                  request.headers.get("authorization"))
    await runs.log(run, await read_json(request, LOG_BYTES))
    return JSONResponse({"ok": True})


async def complete(request: Request) -> Response:
    runs = services(request).runtime.runs
    run = await runs.authenticate(request.path_params["run_id"],
                                  request.headers.get("authorization"), completing=True)
    return JSONResponse(await runs.complete(run, await read_json(request, COMPLETE_BYTES)))
