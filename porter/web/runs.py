"""Callbacks from agent machines: /api/runs/{run_id}/spec|heartbeat|logs|complete."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from porter.log_context import bound
from porter.models import AgentRun
from porter.runs import RunService
from porter.web.bodies import read_json
from porter.web.services import services

HEARTBEAT_BYTES = 8 * 1024
LOG_BYTES = 256 * 1024
COMPLETE_BYTES = 24 * 1024 * 1024  # a 10 MB changeset in base64, a 2 MB diff, 4 MB of JUnit

Callback = Callable[[Request, RunService, AgentRun], Awaitable[Response]]


def _for_run(callback: Callback, *, completing: bool = False) -> Callable[
        [Request], Awaitable[Response]]:
    """The endpoint: the caller proves it is the run, then every line logged while its call is
    handled names the run and its task (the path's run id is bound only once it is proven)."""
    async def endpoint(request: Request) -> Response:
        runs = services(request).runtime.runs
        run = await runs.authenticate(request.path_params["run_id"],
                                      request.headers.get("authorization"), completing=completing)
        with bound(run_id=run.id, task_id=run.task_id):
            return await callback(request, runs, run)

    return endpoint


async def _spec(request: Request, runs: RunService, run: AgentRun) -> Response:
    return JSONResponse(await runs.spec(run), headers={"Cache-Control": "no-store"})


async def _heartbeat(request: Request, runs: RunService, run: AgentRun) -> Response:
    cancel = await runs.heartbeat(run, await read_json(request, HEARTBEAT_BYTES))
    return JSONResponse({"cancel": cancel})


async def _logs(request: Request, runs: RunService, run: AgentRun) -> Response:
    await runs.log(run, await read_json(request, LOG_BYTES))
    return JSONResponse({"ok": True})


async def _complete(request: Request, runs: RunService, run: AgentRun) -> Response:
    return JSONResponse(await runs.complete(run, await read_json(request, COMPLETE_BYTES)))


spec = _for_run(_spec)
heartbeat = _for_run(_heartbeat)
logs = _for_run(_logs)
complete = _for_run(_complete, completing=True)
