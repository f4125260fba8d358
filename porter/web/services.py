"""What the routes need, built once by the composition root."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
from starlette.requests import Request

from porter.github_user import GitHubUsers
from porter.metrics import Metrics
from porter.runtime import Runtime
from porter.settings import Settings
from porter.store import IntakeWriter, Store
from porter.vault import Vault
from porter.web.access import RepoAccess


class Changes:
    """Wakes live pages when a task may have changed; they then read what did from the
    store, so a wake-up carries nothing and a missed one costs only a poll interval."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.version = 0

    def notify(self) -> None:
        self.version += 1
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, seconds: float) -> None:
        """Until the next change, or `seconds` at most."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._event.wait()


@dataclass
class Services:
    settings: Settings
    store: Store
    intake: IntakeWriter
    agents: frozenset[str]
    metrics: Metrics
    runtime: Runtime
    vault: Vault
    access: RepoAccess
    users: GitHubUsers | None  # None until the App's client id and secret are set
    cookie_key: bytes
    changes: Changes = field(default_factory=Changes)
    clock: Callable[[], float] = time.time
    # How GitHub is reached from requests (tests: the fake, in process).
    github_transport: httpx.AsyncBaseTransport | None = None
    # Rebuilds the services from the settings and stored App credentials (after /setup).
    reconfigure: Callable[[], Awaitable[None]] | None = None

    @property
    def secure_cookies(self) -> bool:
        return self.settings.public_url.startswith("https://")


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found
