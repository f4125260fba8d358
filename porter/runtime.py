"""The background half of Porter: GitHub client, job runner, dispatcher, built from settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import httpx

from porter.authorization import Authorizer
from porter.dispatcher import Dispatcher
from porter.github import GitHubApp, load_private_key
from porter.jobs import JobRunner
from porter.reporting import Reporter
from porter.settings import Settings
from porter.store import Store

log = logging.getLogger(__name__)


def build_github(settings: Settings, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> GitHubApp | None:
    """The App client, or None while the App is not configured (webhooks still queue)."""
    if not settings.github_app_id or not (
        settings.github_private_key or settings.github_private_key_file
    ):
        return None
    key = load_private_key(
        settings.github_private_key.get() if settings.github_private_key else None,
        str(settings.github_private_key_file) if settings.github_private_key_file else None,
    )
    return GitHubApp(app_id=settings.github_app_id, private_key=key,
                     api_url=settings.github_api_url, transport=transport)


class Runtime:
    def __init__(self, settings: Settings, store: Store, *,
                 clock: Callable[[], float] = time.time,
                 github: GitHubApp | None = None) -> None:
        self.settings = settings
        self.store = store
        self.github = github if github is not None else build_github(settings)
        self.jobs = JobRunner(store, {}, clock=clock)
        self.reporter = Reporter(store=store, github=self.github, public_url=settings.public_url,
                                 mention=settings.mention, clock=clock, wake=self.jobs.wake.set)
        for name, kind in self.reporter.kinds().items():
            self.jobs.register(name, kind)
        authorizer = None
        if self.github is not None:
            authorizer = Authorizer(self.github, min_permission=settings.min_permission,
                                    allowlist=settings.allowlist)
        self.dispatcher = Dispatcher(store=store, authorizer=authorizer, reporter=self.reporter,
                                     clock=clock)
        self._tasks: list[asyncio.Task[None]] = []

    def task_recorded(self) -> None:
        self.dispatcher.wake.set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self.jobs.run_forever(), name="porter-jobs"),
            loop.create_task(self.dispatcher.run_forever(), name="porter-dispatcher"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
