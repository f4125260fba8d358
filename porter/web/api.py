"""The JSON API over tasks, for operators (admin bearer token)."""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from porter.errors import BadRequest, NotFound, Unauthorized
from porter.models import Task, TaskFilter
from porter.states import TaskState
from porter.web.params import ascii_int
from porter.web.services import services

MAX_PAGE = 200


def require_admin(request: Request) -> None:
    token = services(request).settings.admin_token
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if token is None:
        raise Unauthorized("the API is off: PORTER_ADMIN_TOKEN is not set")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.get().encode()
    ):
        raise Unauthorized("missing or wrong bearer token")


async def list_tasks(request: Request) -> Response:
    require_admin(request)
    query = request.query_params
    state = query.get("state")
    if state is not None and state not in {s.value for s in TaskState}:
        raise BadRequest(f"state must be one of {', '.join(s.value for s in TaskState)}")
    where = TaskFilter(
        repo=query.get("repo"), state=state, agent=query.get("agent"),
        requester=query.get("requester"), issue=ascii_int(query.get("issue"), "issue"),
    )
    limit = ascii_int(query.get("limit"), "limit")
    limit = 50 if limit is None else limit
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be from 1 to {MAX_PAGE}")
    before = ascii_int(query.get("cursor"), "cursor")
    tasks = await services(request).store.list_tasks(where, before=before, limit=limit + 1)
    page = tasks[:limit]
    more = len(tasks) > limit
    return JSONResponse({
        "tasks": [task.to_json() for task in page],
        "next_cursor": str(page[-1].id) if more and page else None,
    })


async def get_task(request: Request) -> Response:
    require_admin(request)
    task = await _task_or_404(request)
    events = await services(request).store.task_events(task.id)
    return JSONResponse({**task.to_json(), "events": [e.to_json() for e in events]})


async def cancel_task(request: Request) -> Response:
    require_admin(request)
    svc = services(request)
    task = await _task_or_404(request)
    message = await svc.runtime.control.cancel(task, by="operator")
    task = await _task_or_404(request)
    return JSONResponse({"message": message, "task": task.to_json()})


async def retry_task(request: Request) -> Response:
    require_admin(request)
    svc = services(request)
    task = await _task_or_404(request)
    message = await svc.runtime.control.retry(task)
    task = await _task_or_404(request)
    return JSONResponse({"message": message, "task": task.to_json()})


async def _task_or_404(request: Request) -> Task:
    task_id = ascii_int(request.path_params["task_id"], "task id")
    task = await services(request).store.get_task(task_id) if task_id is not None else None
    if task is None:
        raise NotFound(f"no task {request.path_params['task_id']}")
    return task


async def task_logs(request: Request) -> Response:
    """The current attempt's log, already redacted when it was stored."""
    require_admin(request)
    task = await _task_or_404(request)
    store = services(request).store
    run = await store.current_run(task.id)
    chunks = await store.run_logs(run.id) if run else []
    return JSONResponse({"task_id": task.id, "run_id": run.id if run else None,
                         "attempt": task.attempt, "text": "".join(text for _, text in chunks)})
