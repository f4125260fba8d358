"""The history: `/tasks`, every task a viewer may see, filtered, a page at a time; and
`/history/suggest`, the type-ahead for its repository and branch fields.

Pages are keyset pages (`before`/`after` an id), so the hundredth page costs what the first
does. A viewer sees, and is offered as suggestions, only the repositories they reach
(`Viewer.visible()`); the store applies that restriction in the same query as the filters.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from porter.errors import BadRequest
from porter.models import Task
from porter.web.history_params import PAGE, STATES, HistoryQuery, parse
from porter.web.render import render
from porter.web.services import services
from porter.web.viewer import identify

SUGGESTIONS = 20
MAX_TYPED = 200


async def history_page(request: Request) -> Response:
    viewer = await identify(request)
    if not viewer.signed_in:
        return render(request, viewer, "signin.html", next=_here(request))
    query = parse(request.query_params, viewer.visible())
    svc = services(request)
    store = svc.store
    found = await store.list_tasks(query.where, before=query.before, after=query.after,
                                   limit=query.limit + 1)
    older = newer = None
    if query.after is not None:
        # The ids just above `after`, newest first: one more than a page means newer ones.
        tasks = found[-query.limit:]
        newer = tasks[0].id if len(found) > query.limit else None
        older = tasks[-1].id if tasks else None
    else:
        tasks = found[:query.limit]
        older = tasks[-1].id if len(found) > query.limit else None
        if query.before is not None and tasks and await store.list_tasks(
                query.where, after=tasks[0].id, limit=1):
            newer = tasks[0].id
    return render(
        request, viewer, "history.html", tasks=tasks, query=query, filters=query.filters(),
        states=STATES, agents=sorted(svc.agents | _agents_shown(tasks, query)),
        older=query.link(before=older) if older is not None else None,
        newer=query.link(after=newer) if newer is not None else None,
        paged=query.before is not None or query.after is not None,
        newest=query.link(), github_url=svc.settings.github_url.rstrip("/"),
        reaches_nothing=viewer.visible() == (), page_size=PAGE)


def _here(request: Request) -> str:
    query = request.url.query
    return request.url.path + ("?" + query if query else "")


def _agents_shown(tasks: list[Task], query: HistoryQuery) -> set[str]:
    """Agents on this page or filtered by, configured or not (an agent may have been removed
    since): the agent menu must be able to show them."""
    shown = {task.agent for task in tasks}
    if query.where.agent:
        shown.add(query.where.agent)
    return shown


async def suggest(request: Request) -> Response:
    """JSON `{"field": …, "values": [...]}`: names containing `q`, only among what the viewer
    sees; `repo` narrows branch suggestions to one repository."""
    viewer = await identify(request)
    params = request.query_params
    field = params.get("field", "")
    typed = params.get("q", "").strip()
    if len(typed) > MAX_TYPED:
        raise BadRequest(f"q must be at most {MAX_TYPED} characters")
    store = services(request).store
    visible = viewer.visible()
    if field == "repo":
        values = await store.suggest_repos(typed, repos=visible, limit=SUGGESTIONS)
    elif field == "branch":
        repos = visible
        repo = parse({"repo": params.get("repo", "")}, visible).where.repo
        if repo is not None:
            repos = (repo,) if visible is None or repo in visible else ()
        values = await store.suggest_branches(typed, repos=repos, limit=SUGGESTIONS)
    else:
        raise BadRequest("field must be repo or branch")
    return JSONResponse({"field": field, "values": values},
                        headers={"Cache-Control": "no-store"})


routes: list[BaseRoute] = [
    Route("/tasks", history_page, methods=["GET"]),
    Route("/history/suggest", suggest, methods=["GET"]),
]
