"""The composition root: `create_app(settings)` builds Porter and its collaborators."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.routing import Route

from porter.agents import agent_names
from porter.errors import PorterError
from porter.runtime import Runtime
from porter.settings import Settings
from porter.store import Store
from porter.web import api, errors, intake, probes, runs
from porter.web.bodies import BodyBudget, BodyRefused, refused_response, unmap_freed_buffers
from porter.web.services import Metrics, Services


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    runtime: Callable[[Store], Runtime] | None = None,
    background: bool = True,
) -> Starlette:
    """Nothing touches disk or network until the app's lifespan starts.

    `runtime` builds the background services (tests pass one wired to fakes); `background`
    False leaves the job runner and dispatcher stopped, for tests that drive them by hand.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        unmap_freed_buffers()  # process-wide allocator setting: at start, never at import
        opened = store or await Store.open(settings.database)
        engine = runtime(opened) if runtime else Runtime(settings, opened)
        app.state.services = Services(
            settings=settings,
            store=opened,
            intake=opened.intake(default_agent=settings.default_agent),
            agents=agent_names(settings),
            metrics=Metrics.create(),
            runtime=engine,
        )
        if background:
            await engine.start()
        try:
            yield
        finally:
            await engine.stop()
            if store is None:
                await opened.close()

    routes = [Route(path, endpoint, methods=[method]) for method, path, endpoint in (
        ("POST", "/webhooks/github", intake.github_webhook),
        ("GET", "/api/tasks", api.list_tasks),
        ("GET", "/api/tasks/{task_id}", api.get_task),
        ("GET", "/api/tasks/{task_id}/logs", api.task_logs),
        ("POST", "/api/tasks/{task_id}/cancel", api.cancel_task),
        ("POST", "/api/tasks/{task_id}/retry", api.retry_task),
        ("GET", "/api/runs/{run_id}/spec", runs.spec),
        ("POST", "/api/runs/{run_id}/heartbeat", runs.heartbeat),
        ("POST", "/api/runs/{run_id}/logs", runs.logs),
        ("POST", "/api/runs/{run_id}/complete", runs.complete),
        ("GET", "/healthz", probes.healthz),
        ("GET", "/readyz", probes.readyz),
        ("GET", "/metrics", probes.metrics),
    )]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={PorterError: errors.error_response, BodyRefused: refused_response},
    )
    # Shared by every webhook request of this app, so it bounds what they buffer together.
    app.state.body_budget = BodyBudget(settings.max_inflight_body_bytes)
    return app
