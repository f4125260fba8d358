"""The composition root: `create_app(settings)` builds Porter and its collaborators."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from porter import relay
from porter.agents import agent_names
from porter.api_metrics import GITHUB
from porter.app_credentials import overlay, stored_app
from porter.errors import PorterError
from porter.gateway import routes as gateway
from porter.gateway.proxy import Gateway
from porter.github_user import GitHubUsers
from porter.metrics import Metrics
from porter.models import AgentRun
from porter.runtime import Runtime, load_keyring
from porter.settings import Settings
from porter.store import Store
from porter.vault import Vault
from porter.web import (
    api,
    artifacts_page,
    audit_page,
    auth,
    errors,
    history,
    intake,
    live,
    pages,
    probes,
    runs,
    settings_page,
    setup_page,
)
from porter.web.access import RepoAccess
from porter.web.bodies import BodyBudget, BodyRefused, refused_response, unmap_freed_buffers
from porter.web.services import Services


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    runtime: Callable[[Store, Settings], Runtime] | None = None,
    background: bool = True,
    users_transport: httpx.AsyncBaseTransport | None = None,
    metrics: Metrics | None = None,
) -> Starlette:
    """Nothing touches disk or network until the app's lifespan starts.

    `runtime` builds the background services (tests pass one wired to fakes, and give it the
    `metrics` they pass here); `background` False leaves the job runner and dispatcher stopped,
    for tests that drive them by hand.
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        unmap_freed_buffers()  # process-wide allocator setting: at start, never at import
        opened = store or await Store.open(settings.store_location)
        vault = Vault(load_keyring(settings), opened)
        # The LLM gateway's one HTTP client outlives reconfigure(): streams in flight go on.
        app.state.gateway = Gateway(settings, store=opened)
        # One for the app's life: the web routes and every runtime built here count into it.
        shared = metrics or Metrics.create()

        async def stop_machine(run: AgentRun) -> None:
            # A run over its budget stops as a cancel stops it, through the current runtime.
            await app.state.services.runtime.launcher.release(
                run.id, run.machine_id, stop_first=True, task_id=run.task_id)

        app.state.gateway.metering.release = stop_machine

        async def configure(svc: Services | None) -> Services:
            """Build (or, after /setup stored the App's credentials, rebuild) what depends
            on the settings: the background runtime and the sign-in client."""
            effective = overlay(settings, await stored_app(vault))
            engine = runtime(opened, effective) if runtime else Runtime(effective, opened,
                                                                        metrics=shared)
            users = build_users(effective, clock=opened.clock, transport=shared.api.transport(
                GITHUB, effective.github_api_url, users_transport))
            fresh = Services(
                settings=effective,
                store=opened,
                intake=opened.intake(default_agent=effective.default_agent),
                agents=agent_names(effective),
                metrics=shared,
                runtime=engine,
                vault=vault,
                access=RepoAccess(users=users, vault=vault, store=opened, clock=opened.clock),
                users=users,
                cookie_key=engine.keyring.derive("web-cookies"),
                clock=opened.clock,
                reconfigure=reconfigure,
                github_transport=users_transport,
            )
            if svc is not None:
                fresh.changes = svc.changes
            engine.on_task_recorded(fresh.changes.notify)
            if background:
                await engine.start()
            return fresh

        async def reconfigure() -> None:
            old: Services = app.state.services
            await _stop(old)
            app.state.services = await configure(old)

        app.state.services = await configure(None)
        opened.subscribe(lambda: app.state.services.changes.notify(), to="tasks")
        webhook_relay = relay.start(settings)  # None unless PORTER_WEBHOOK_RELAY_URL is set
        try:
            yield
        finally:
            if webhook_relay is not None:
                await webhook_relay.stop()
            await _stop(app.state.services)
            await app.state.gateway.aclose()
            if store is None:
                await opened.close()

    routes: list[BaseRoute] = [Route(path, endpoint, methods=[method])
                               for method, path, endpoint in (
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
    for module in (gateway, auth, pages, artifacts_page, history, live, settings_page, setup_page,
                   audit_page):
        routes.extend(module.routes)
    routes.append(Mount("/static", StaticFiles(packages=[("porter.web", "static")]),
                        name="static"))
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={PorterError: errors.error_response, BodyRefused: refused_response,
                            HTTPException: errors.http_error, Exception: errors.unexpected},
    )
    # Shared by every webhook request of this app, so it bounds what they buffer together.
    app.state.body_budget = BodyBudget(settings.max_inflight_body_bytes)
    return app


async def _stop(svc: Services) -> None:
    await svc.runtime.stop()
    if svc.users is not None:
        await svc.users.aclose()


def build_users(settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None,
                clock: Callable[[], float] = time.time) -> GitHubUsers | None:
    """The sign-in client, or None while the App's client id and secret are not set."""
    if not settings.github_client_id or settings.github_client_secret is None:
        return None
    return GitHubUsers(web_url=settings.github_url, api_url=settings.github_api_url,
                       client_id=settings.github_client_id,
                       client_secret=settings.github_client_secret.get(), transport=transport,
                       clock=clock)
