"""One task as a viewer may reach it: found only when they see its repository, and cancelled or
retried only by those with permission on it. Shared by the pages and the JSON API, so both
refuse the same way.

A task in a repository the viewer does not see is a 404 exactly like a task that does not exist:
the answer must not tell an outsider which task numbers are in use in private repositories.
"""

from __future__ import annotations

import logging
from typing import Literal

from starlette.requests import Request

from porter.authorization import Verdict
from porter.errors import Forbidden, GitHubError, NotFound
from porter.models import Task
from porter.states import CANCELLABLE
from porter.web.params import ascii_int
from porter.web.services import services
from porter.web.viewer import Viewer, client_address

log = logging.getLogger(__name__)

Action = Literal["cancel", "retry"]


async def visible_task(request: Request, viewer: Viewer) -> Task:
    raw = str(request.path_params["task_id"])
    task_id = ascii_int(raw, "task id")
    task = await services(request).store.get_task(task_id) if task_id is not None else None
    if task is None or not viewer.sees(task.repo):
        raise NotFound(f"no task {raw}")
    return task


async def may_control(request: Request, viewer: Viewer, task: Task) -> Verdict:
    """Admins may; a user needs the permission a `@porter cancel` comment would need."""
    if viewer.admin:
        return Verdict(True)
    if viewer.user is None or not viewer.sees(task.repo):
        return Verdict(False, "sign in with GitHub first")
    try:
        return await services(request).runtime.control.may_control(task, viewer.user.login)
    except GitHubError as exc:
        log.warning("could not check @%s's permission on %s: %s", viewer.user.login, task.repo,
                    exc.message)
        return Verdict(False, "GitHub could not confirm your permission just now; try again.")


def offers(task: Task) -> tuple[bool, bool]:
    """Whether cancel and retry apply to the task as it stands."""
    return task.state in CANCELLABLE, task.state.terminal


async def control(request: Request, viewer: Viewer, task: Task, action: Action, *,
                  source: Literal["page", "api"]) -> str:
    """Cancel or retry once the viewer's permission is confirmed; Control audits it."""
    verdict = await may_control(request, viewer, task)
    if not verdict.allowed:
        raise Forbidden(f"You can't {action} this task: {verdict.reason}")
    runtime = services(request).runtime
    who = viewer.user.login if viewer.user is not None else "operator"
    actor_id = viewer.user.id if viewer.user is not None else None
    address = client_address(request)
    if action == "cancel":
        return await runtime.control.cancel(task, by=who, source=source, actor_id=actor_id,
                                            address=address)
    return await runtime.control.retry(task, by=who, source=source, actor_id=actor_id,
                                       address=address)
