"""The JSON API over tasks: for operators (the admin bearer token) and for signed-in users.

A user's calls see only the tasks of the repositories they reach (porter/web/viewer.py); a task
elsewhere is a 404, as if it did not exist. Cancel and retry need the permission a comment would
need, and, from a browser session, the page's CSRF token in the X-CSRF-Token header: the session
cookie rides along on any site's request, the header cannot.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from porter.errors import BadRequest, Unauthorized
from porter.models import TaskFilter
from porter.states import TaskState
from porter.web.artifacts_page import artifact_rows
from porter.web.params import ascii_int
from porter.web.services import services
from porter.web.task_access import Action, control, visible_task
from porter.web.viewer import Viewer, check_csrf, identify

MAX_PAGE = 200


async def api_viewer(request: Request) -> Viewer:
    viewer = await identify(request)
    if not viewer.signed_in:
        raise Unauthorized("missing or wrong bearer token, and no session: sign in or send "
                           "Authorization: Bearer <PORTER_ADMIN_TOKEN>")
    return viewer


async def list_tasks(request: Request) -> Response:
    viewer = await api_viewer(request)
    query = request.query_params
    state = query.get("state")
    if state is not None and state not in {s.value for s in TaskState}:
        raise BadRequest(f"state must be one of {', '.join(s.value for s in TaskState)}")
    where = TaskFilter(
        repo=query.get("repo"), state=state, agent=query.get("agent"),
        requester=query.get("requester"), issue=ascii_int(query.get("issue"), "issue"),
        repos=viewer.visible(),
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
    viewer = await api_viewer(request)
    task = await visible_task(request, viewer)
    svc = services(request)
    events = await svc.store.task_events(task.id)
    artifacts = await artifact_rows(svc, task)
    return JSONResponse({**task.to_json(), "events": [e.to_json() for e in events],
                         "artifacts": [a.to_json() for a in artifacts]})


async def cancel_task(request: Request) -> Response:
    return await _control(request, "cancel")


async def retry_task(request: Request) -> Response:
    return await _control(request, "retry")


async def _control(request: Request, action: Action) -> Response:
    viewer = await api_viewer(request)
    check_csrf(viewer, request.headers.get("x-csrf-token"))
    task = await visible_task(request, viewer)
    message = await control(request, viewer, task, action, source="api")
    task = await visible_task(request, viewer)
    return JSONResponse({"message": message, "task": task.to_json()})


async def task_logs(request: Request) -> Response:
    """The current attempt's log, already redacted when it was stored."""
    viewer = await api_viewer(request)
    task = await visible_task(request, viewer)
    store = services(request).store
    run = await store.current_run(task.id)
    chunks = await store.run_logs(run.id) if run else []
    return JSONResponse({"task_id": task.id, "run_id": run.id if run else None,
                         "attempt": task.attempt, "text": "".join(text for _, text in chunks)})
