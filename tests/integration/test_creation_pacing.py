"""Content-creation pacing kept in the database (porter/store/pacing.py): two Porter processes on
one database share an installation's budget, a restart remembers it, and old creations go.

Each "process" is its own `Store.open` of the same database (a SQLite file, then a PostgreSQL
database: tests/conftest.py `store_database`), with its own job runner; a clock
that moves only when the test moves it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from porter.jobs import JobContext, JobKind, JobRunner
from porter.pacing import CONTENT_CREATION, Window
from porter.store import Store
from tests.fakes.clock import Clock

BUDGET = [Window(3, 60.0)]


class Porter:
    """One Porter process: a store on the shared file and a runner whose jobs each create one
    thing on GitHub (here: a note of the installation and of the process that created it)."""

    def __init__(self, store: Store, clock: Clock, created: list[tuple[int, str]],
                 name: str) -> None:
        self.store = store

        async def create(ctx: JobContext) -> dict[str, object]:
            await ctx.creating()
            created.append((ctx.job.installation_id or 0, name))
            return {}

        self.jobs = JobRunner(store, {"create": JobKind(run=create)}, clock=clock,
                              rng=random.Random(1), pacing=BUDGET)


@pytest.fixture
def clock() -> Clock:
    return Clock(1_000_000.0)


@pytest.fixture
async def opened() -> AsyncIterator[list[Store]]:
    """The stores a test opens, closed after it."""
    stores: list[Store] = []
    yield stores
    for store in stores:
        await store.close()


async def porter(path: Path | str, clock: Clock, opened: list[Store],
                 created: list[tuple[int, str]], name: str) -> Porter:
    store = await Store.open(path, clock=clock)
    opened.append(store)
    return Porter(store, clock, created, name)


async def enqueue(store: Store, *keys: str, installation_id: int = 42) -> None:
    for key in keys:
        await store.enqueue("create", key, {}, installation_id=installation_id)


async def pending(store: Store) -> list[float]:
    return sorted(j.run_after for j in await store.jobs() if j.state == "pending")


async def test_two_processes_on_one_database_share_an_installations_budget(
    store_database: Path | str, clock: Clock, opened: list[Store],
) -> None:
    created: list[tuple[int, str]] = []
    a = await porter(store_database, clock, opened, created, "a")
    b = await porter(store_database, clock, opened, created, "b")
    await enqueue(a.store, *(f"create:{n}" for n in range(8)))
    await enqueue(b.store, "create:other", installation_id=43)
    t0 = clock.now
    # Both processes claim and run at once: each sees the other's creations.
    await asyncio.gather(a.jobs.run_due(t0), b.jobs.run_due(t0))
    # Installation 42's budget, whichever process claimed them, and 43's own creation.
    assert sorted(i for i, _ in created) == [42, 42, 42, 43]
    assert await pending(a.store) == [pytest.approx(t0 + 60)] * 5  # waiting, unspent

    clock.now = t0 + 60.01  # the first three have left the minute: three more, no more
    await asyncio.gather(a.jobs.run_due(clock.now), b.jobs.run_due(clock.now))
    assert sorted(i for i, _ in created) == [42] * 6 + [43]
    assert len(await pending(b.store)) == 2


async def test_the_stores_alone_admit_at_most_the_budget_when_asked_at_once(
    store_database: Path | str, clock: Clock, opened: list[Store],
) -> None:
    a = await porter(store_database, clock, opened, [], "a")
    b = await porter(store_database, clock, opened, [], "b")
    waits = await asyncio.gather(*(
        store.take_creation(42, now=clock.now, urgent=True, windows=CONTENT_CREATION)
        for _ in range(60) for store in (a.store, b.store)))
    assert waits.count(0.0) == 80  # GitHub's minute, spent by the two together
    assert all(60 < w <= 61 + 1e-3 for w in waits if w)


async def test_a_restarted_porter_remembers_the_creations_made_before(
    store_database: Path | str, clock: Clock, opened: list[Store],
) -> None:
    created: list[tuple[int, str]] = []
    before = await porter(store_database, clock, opened, created, "before")
    await enqueue(before.store, "create:1", "create:2", "create:3")
    t0 = clock.now
    assert await before.jobs.run_due(t0) == 3
    await before.store.close()
    opened.remove(before.store)

    clock.now = t0 + 10
    after = await porter(store_database, clock, opened, created, "after")
    await enqueue(after.store, "create:4")
    await after.jobs.run_due(clock.now)
    assert created == [(42, "before")] * 3  # no fresh burst after the restart
    assert await pending(after.store) == [pytest.approx(t0 + 60)]

    clock.now = t0 + 60.01
    assert await after.jobs.run_due(clock.now) == 1
    assert created == [(42, "before")] * 3 + [(42, "after")]


async def test_creations_older_than_the_hour_are_forgotten(
    store_database: Path | str, clock: Clock, opened: list[Store],
) -> None:
    path = store_database
    store = (await porter(path, clock, opened, [], "a")).store
    t0 = clock.now
    for n in range(5):
        await store.take_creation(42, now=t0 + n, urgent=True, windows=CONTENT_CREATION)
    await store.take_creation(43, now=t0, urgent=True, windows=CONTENT_CREATION)

    async def kept() -> list[tuple[int, float]]:
        return [(int(row[0]), float(row[1])) for row in await store._read(
            "SELECT installation_id, at FROM creations ORDER BY installation_id, at")]

    assert len(await kept()) == 6
    later = t0 + 3601 + 2.5  # the first three are past the hour window, the last two are not
    assert await store.take_creation(42, now=later, urgent=True, windows=CONTENT_CREATION) == 0
    assert await kept() == [(42, t0 + 3), (42, t0 + 4), (42, later), (43, t0)]
