"""Which runner acts on a machine: the operator's, or a Fly runner in a user's own Fly app.

A task whose requester saved a Fly token and app (porter/keys.py) gets its machine there, and
the same account must later read, stop and destroy it: runs record the owner (runs.runner_owner)
and every such call asks `of(owner)`. A user's runner is built from their sealed token when
first needed and kept while the token and app stay the same.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

import httpx

from porter.fly import FlyClient
from porter.runners.base import Runner
from porter.runners.fly import FlyRunner
from porter.settings import Settings

# user id → that user's Fly token and app
OpenFly = Callable[[int], Awaitable[tuple[str, str]]]
Factory = Callable[[str, str], Runner]


def fly_factory(settings: Settings, *, instance: str,
                transport: Callable[[], httpx.AsyncBaseTransport | None] = lambda: None
                ) -> Factory:
    """Fly runners shaped like the operator's (image, region, guest), in another account;
    `transport` makes each one's (porter/api_metrics.py counts their calls)."""

    def build(token: str, app: str) -> Runner:
        client = FlyClient(token=token, app=app, base_url=settings.fly_api_url,
                           transport=transport())
        return FlyRunner(client, image=settings.agent_image, region=settings.fly_region,
                         cpu_kind=settings.fly_cpu_kind, cpus=settings.fly_cpus,
                         memory_mb=settings.fly_memory_mb, instance=instance)

    return build


class RunnerChoice:
    def __init__(self, operator: Runner, *, open_fly: OpenFly, factory: Factory) -> None:
        self.operator = operator
        self._open_fly = open_fly
        self._factory = factory
        # user id → (fingerprint of token and app, runner)
        self._users: dict[int, tuple[bytes, Runner]] = {}

    async def of(self, owner: int | None) -> Runner:
        if owner is None:
            return self.operator
        token, app = await self._open_fly(owner)
        # A digest, not the token: nothing here should keep a second copy of a secret.
        fingerprint = hashlib.sha256(f"{token}\0{app}".encode()).digest()
        known = self._users.get(owner)
        if known is not None and known[0] == fingerprint:
            return known[1]
        runner = self._factory(token, app)
        self._users[owner] = (fingerprint, runner)
        if known is not None:
            await known[1].aclose()
        return runner

    async def aclose(self) -> None:
        """Close the users' runners (the operator's belongs to whoever built it)."""
        users, self._users = self._users, {}
        for _, runner in users.values():
            await runner.aclose()
