"""How soon the dispatcher reacts (bench/latency.py measures how soon): woken by intake rather
than its poll, a lone delivery not held back for a burst that is not coming, permission checks
of a burst in flight together, and every 👀 of a pass queued before any machine is started."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from porter.admission import Limits
from porter.authorization import Verdict
from porter.dispatcher import Dispatcher
from porter.models import Task
from porter.reporting import REACT
from tests.fakes.world import OTHER_REPO, PUBLIC_URL, REPO, World, open_world
from tests.loopback import until


class Gate:
    """An authorizer whose answers all wait until `expected` checks are in flight together."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.asked: list[tuple[int | None, str, str]] = []
        self._all_in = asyncio.Event()

    async def check(self, *, repo: str, installation_id: int | None, login: str) -> Verdict:
        self.asked.append((installation_id, repo, login))
        if len(self.asked) >= self.expected:
            self._all_in.set()
        await self._all_in.wait()
        return Verdict(True, permission="write")


class Starts:
    """A launcher stand-in that notes, at each start, which tasks already have their 👀 queued."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.eyes_queued_at_start: list[set[int | None]] = []

    async def start(self, task: Task) -> bool:
        jobs = await self.world.store.jobs(kind=REACT)
        self.eyes_queued_at_start.append({j.task_id for j in jobs if "eyes" in j.key})
        return True


def dispatcher(world: World, authorizer: object, starter: Starts) -> Dispatcher:
    return Dispatcher(store=world.store, authorizer=authorizer,  # type: ignore[arg-type]
                      reporter=world.runtime.reporter, starter=starter,
                      limits=Limits(total=10, per_installation=10), public_url=PUBLIC_URL,
                      clock=world.clock)


async def burst(world: World) -> list[Task]:
    """alice asks on two issues of octo/hello (installation 42) and on acme/widgets (43)."""
    return [await world.record("issue_comment", world.payload("@porter fix it", **where))
            for where in ({"number": 1}, {"number": 2},
                          {"repo": OTHER_REPO, "installation_id": 43})]


async def test_a_lone_delivery_is_acknowledged_at_once_not_at_the_next_poll(
    tmp_path: Path, pem: str
) -> None:
    async with open_world(tmp_path, pem) as world:
        passes: list[int] = []
        engine = world.runtime.dispatcher
        tick = engine.tick

        async def counted() -> None:
            await tick()
            passes.append(len(passes))

        engine.tick = counted  # type: ignore[method-assign]
        # An hour's poll and an hour's coalescing: only the wake-up from intake can serve it.
        loop = asyncio.create_task(engine.run_forever(interval=3600, coalesce=3600))
        try:
            await until(lambda: passes, "the first pass, at start-up")
            task_id = await world.request("@porter fix the typo")  # a signed webhook, a 202

            # The pass that serves it ends well within the hour only if intake woke it.
            await until(lambda: len(passes) >= 2, "a pass woken by the delivery")
            jobs = await world.store.jobs(task_id=task_id)
            assert any("eyes" in j.key for j in jobs), "the delivery was not acknowledged"
        finally:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop


async def test_the_permission_checks_of_a_burst_are_in_flight_together(
    tmp_path: Path, pem: str
) -> None:
    async with open_world(tmp_path, pem) as world:
        gate = Gate(expected=2)  # one per requester and repository: two, not three
        starter = Starts(world)
        tasks = await burst(world)

        await asyncio.wait_for(dispatcher(world, gate, starter).tick(), 10)

        assert sorted(gate.asked) == [(42, REPO, "alice"), (43, OTHER_REPO, "alice")]
        for task in tasks:
            assert (await world.task(task.id)).authorized_at is not None


async def test_every_eyes_of_a_pass_is_queued_before_any_machine_starts(
    tmp_path: Path, pem: str
) -> None:
    async with open_world(tmp_path, pem) as world:
        starter = Starts(world)
        tasks = await burst(world)

        await dispatcher(world, Gate(expected=1), starter).tick()

        assert len(starter.eyes_queued_at_start) == 3
        assert starter.eyes_queued_at_start[0] == {t.id for t in tasks}
