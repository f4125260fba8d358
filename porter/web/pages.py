"""The feed (`/`) and the task page (`/tasks/{id}`), and the task page's cancel and retry forms.

Both pages render everything server-side and work without JavaScript; porter.js then follows
their live streams (porter/web/live.py). What a viewer sees is decided by porter/web/viewer.py
and porter/web/task_access.py: a task outside the viewer's repositories is a 404.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from porter.errors import Unauthorized
from porter.models import TaskFilter
from porter.states import TaskState
from porter.web.render import redirect, render
from porter.web.services import services
from porter.web.task_access import Action, control, visible_task
from porter.web.task_view import page_context
from porter.web.viewer import Viewer, form_with_csrf, identify

FEED_ROWS = 50
# Rows changed this long before the page was read are sent again by the live stream: a change
# stamped just before the read but committed just after it is then not lost.
OVERLAP = 2.0
# What the page says after a cancel or retry, keyed by an outcome code in the redirect (never
# free text in a URL, which anyone could craft a link to).
NOTICES = {
    "cancelled": ("good", "Cancelled."),
    "not-cancelled": ("bad", "The task could not be cancelled in its current state."),
    "retried": ("good", "Retrying: a new attempt is queued."),
    "not-retried": ("bad", "The task could not be retried in its current state."),
}


async def feed(request: Request) -> Response:
    viewer = await identify(request)
    if not viewer.signed_in:
        return render(request, viewer, "signin.html", next="/")
    svc = services(request)
    since = svc.clock() - OVERLAP
    tasks = await svc.store.list_tasks(TaskFilter(repos=viewer.visible()), limit=FEED_ROWS)
    return render(request, viewer, "feed.html", tasks=tasks, since=f"{since:.6f}",
                  limit=FEED_ROWS, github_url=svc.settings.github_url)


async def task_page(request: Request) -> Response:
    viewer = await signed_in_viewer(request)
    task = await visible_task(request, viewer)
    context = await page_context(request, viewer, task)
    notice = NOTICES.get(request.query_params.get("done", ""))
    return render(request, viewer, "task.html", notice=notice, **context)


async def cancel(request: Request) -> Response:
    return await _control(request, "cancel")


async def retry(request: Request) -> Response:
    return await _control(request, "retry")


async def _control(request: Request, action: Action) -> Response:
    viewer = await signed_in_viewer(request)
    await form_with_csrf(request, viewer)
    task = await visible_task(request, viewer)
    await control(request, viewer, task, action, source="page")
    after = await visible_task(request, viewer)
    if action == "cancel":
        done = "cancelled" if after.state is TaskState.CANCELLED \
            and task.state is not TaskState.CANCELLED else "not-cancelled"
    else:
        done = "retried" if after.attempt > task.attempt else "not-retried"
    return redirect(request, f"/tasks/{task.id}?done={done}")


async def signed_in_viewer(request: Request) -> Viewer:
    viewer = await identify(request)
    if not viewer.signed_in:
        raise Unauthorized("Sign in with GitHub to see this task.")
    return viewer


routes: list[BaseRoute] = [
    Route("/", feed, methods=["GET"]),
    Route("/tasks/{task_id}", task_page, methods=["GET"]),
    Route("/tasks/{task_id}/cancel", cancel, methods=["POST"]),
    Route("/tasks/{task_id}/retry", retry, methods=["POST"]),
]
