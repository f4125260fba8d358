"""The composition root: `create_app(settings)` builds Porter and its collaborators."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.routing import Route

from porter.agents import agent_names
from porter.errors import PorterError
from porter.settings import Settings
from porter.store import Store
from porter.web import api, intake, probes
from porter.web.services import Metrics, Services


def create_app(settings: Settings, *, store: Store | None = None) -> Starlette:
    """Nothing touches disk or network until the app's lifespan starts."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        opened = store or await Store.open(settings.database)
        app.state.services = Services(
            settings=settings,
            store=opened,
            intake=opened.intake(default_agent=settings.default_agent),
            agents=agent_names(settings),
            metrics=Metrics.create(),
        )
        try:
            yield
        finally:
            if store is None:
                await opened.close()

    routes = [
        Route("/webhooks/github", intake.github_webhook, methods=["POST"]),
        Route("/api/tasks", api.list_tasks, methods=["GET"]),
        Route("/api/tasks/{task_id}", api.get_task, methods=["GET"]),
        Route("/healthz", probes.healthz, methods=["GET"]),
        Route("/readyz", probes.readyz, methods=["GET"]),
        Route("/metrics", probes.metrics, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={PorterError: intake.error_response},
    )
