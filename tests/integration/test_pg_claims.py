"""Job claims on PostgreSQL (porter/store/pg_claims.py): replicas claim side by side, passing over
what another is claiming instead of waiting for it, and still take each job once and one GitHub
write per installation at a time. The rules shared with SQLite are tested on both stores in
tests/integration/test_replica_claims.py."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable

import psycopg
import pytest

from porter.states import JobState
from porter.store import Store
from porter.store.pg_backend import WRITER_KEY
from porter.store.pg_claims import Candidate, Choice, installation_key
from porter.store.pg_migrations import LOCK_KEY
from tests.fakes.clock import Clock
from tests.store_helpers import two_processes

WRITES = {"comment", "react"}  # kinds that write to GitHub: one at a time per installation
DEADLINE = 10.0  # a claim that waits for a lock fails the test here instead of hanging it


def choose(candidates: list[Candidate], *, limit: int = 10, busy: set[int] | None = None,
           serial: bool | None = None, refuse: Callable[[int], bool] = lambda _: False,
           asked: list[int] | None = None) -> list[int]:
    def grant(installation: int) -> bool:
        if asked is not None:
            asked.append(installation)
        return not refuse(installation)

    choice = Choice(limit=limit, serial_kinds=WRITES, busy=busy or set(), serial=serial,
                    grant=grant)
    choice.offer(candidates)
    return choice.taken


def test_a_claim_takes_candidates_in_order_up_to_its_limit() -> None:
    candidates = [Candidate(n, "render", 7) for n in range(1, 6)]
    assert choose(candidates, limit=3) == [1, 2, 3]
    assert choose(candidates, limit=0) == []


def test_one_write_per_installation_none_for_a_busy_or_refused_one() -> None:
    asked: list[int] = []
    candidates = [Candidate(1, "comment", 7), Candidate(2, "comment", 7), Candidate(3, "render", 7),
                  Candidate(4, "react", 8), Candidate(5, "comment", 8), Candidate(6, "comment", 9),
                  Candidate(7, "comment", None), Candidate(8, "notify", None)]
    taken = choose(candidates, busy={9}, refuse=lambda installation: installation == 8,
                   asked=asked)
    # Installation 7's second write waits; 8 is being claimed elsewhere; 9 writes here already;
    # a write with no installation, and the other kinds, are not held back.
    assert taken == [1, 3, 7, 8]
    assert asked == [7, 8]  # each installation asked once; a busy one never


def test_no_installation_is_locked_once_the_claim_is_full() -> None:
    asked: list[int] = []
    assert choose([Candidate(1, "render", 7), Candidate(2, "comment", 7)], limit=1,
                  asked=asked) == [1]
    assert asked == []


def test_a_claim_of_writes_only_or_of_the_others_only() -> None:
    candidates = [Candidate(1, "comment", 7), Candidate(2, "render", 7), Candidate(3, "react", 8)]
    asked: list[int] = []
    assert choose(candidates, serial=True) == [1, 3]
    assert choose(candidates, serial=False, asked=asked) == [2]
    assert asked == []


def test_batches_offered_one_after_another_count_as_one_claim() -> None:
    choice = Choice(limit=2, serial_kinds=WRITES, busy=(), serial=None, grant=lambda _: True)
    choice.offer([Candidate(1, "comment", 7)])
    choice.offer([Candidate(2, "comment", 7), Candidate(3, "render", 7),
                  Candidate(4, "render", 8)])
    assert choice.taken == [1, 3] and choice.wanted == 0


def test_installation_keys_are_distinct_and_apart_from_porters_other_locks() -> None:
    keys = {installation_key(installation) for installation in range(1, 5000)}
    keys.add(installation_key(2**40 + 1))  # GitHub's ids are far below 2**48
    assert len(keys) == 5000
    assert all(0 < key < 2**63 for key in keys)  # a signed bigint, as PostgreSQL takes it
    assert not keys & {WRITER_KEY, LOCK_KEY}


@pytest.fixture
async def replicas(postgres_database: str) -> AsyncIterator[tuple[Store, Store, Clock]]:
    clock = Clock(1000.0)
    async with two_processes(postgres_database, clock) as (first, second):
        yield first, second, clock


async def test_replicas_claiming_at_once_take_each_job_once_and_write_one_at_a_time(
        replicas: tuple[Store, Store, Clock]) -> None:
    first, second, clock = replicas
    for number in range(200):
        kind, payload = [("render", {}), ("comment", {}), ("react", {"content": "eyes"}),
                         ("notify", {})][number // 10 % 4]
        # The second replica's clock runs ahead: an acknowledgement (`react` 👀), which goes
        # before a comment, falls due there first, so at once the first replica may choose an
        # installation's comment and the second its acknowledgement.
        due = number // 10 + 1 if kind == "react" else 0 if kind == "comment" else number % 3
        await first.enqueue(kind, f"{kind}:{number}", payload,
                            installation_id=None if kind == "notify" else 100 + number % 10,
                            run_after=clock.now + due)
    everyone = {job.id for job in await first.jobs()}
    claimed: list[int] = []
    for turn in range(200):
        if len(claimed) == len(everyone):
            break
        rounds = await asyncio.wait_for(asyncio.gather(
            first.claim_jobs(now=clock.now, limit=6, lease=30, serial_kinds=WRITES),
            second.claim_jobs(now=clock.now + 2, limit=6, lease=30, serial_kinds=WRITES,
                              serial=(None, True, False)[turn % 3])), DEADLINE)
        running = [job for job in await first.jobs() if job.state is JobState.RUNNING]
        assert sorted(job.id for job in running) == sorted(job.id for jobs in rounds
                                                            for job in jobs)
        writing = Counter(job.installation_id for job in running if job.kind in WRITES)
        assert all(count == 1 for count in writing.values()), writing
        for store, jobs in zip((first, second), rounds, strict=True):
            claimed += [job.id for job in jobs]
            for job in jobs:
                assert await store.finish_job(job)
        clock.now += 1
    assert sorted(claimed) == sorted(everyone)  # every job, each once
    assert {job.state for job in await first.jobs()} == {JobState.DONE}


async def test_a_claim_passes_over_rows_another_replica_is_claiming(
        postgres_database: str) -> None:
    store = await Store.open(postgres_database)
    try:
        for number in range(6):
            await store.enqueue("render", f"render:{number}")
        now = store.clock() + 1
        with psycopg.connect(postgres_database) as other:  # a replica mid-claim, not committed
            other.execute("SELECT id FROM jobs WHERE key IN ('render:0', 'render:1', 'render:2')"
                          " FOR UPDATE")
            taken = await asyncio.wait_for(store.claim_jobs(now=now, limit=10, lease=30),
                                           DEADLINE)
            assert [job.key for job in taken] == ["render:3", "render:4", "render:5"]
            other.rollback()
        again = await store.claim_jobs(now=now, limit=10, lease=30)
        assert [job.key for job in again] == ["render:0", "render:1", "render:2"]
    finally:
        await store.close()


async def test_claims_do_not_wait_for_the_writers_lock(postgres_database: str) -> None:
    store = await Store.open(postgres_database)
    try:
        await store.enqueue("render", "render:1")
        with psycopg.connect(postgres_database) as other:  # another replica, mid-write
            other.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_KEY,))
            [taken] = await asyncio.wait_for(
                store.claim_jobs(now=store.clock() + 1, limit=10, lease=30), DEADLINE)
            assert taken.key == "render:1" and taken.state is JobState.RUNNING
            other.rollback()
    finally:
        await store.close()


async def test_an_installation_another_replica_is_claiming_for_is_passed_over(
        postgres_database: str) -> None:
    store = await Store.open(postgres_database)
    try:
        await store.enqueue("comment", "comment:7", installation_id=7)
        await store.enqueue("comment", "comment:7b", installation_id=7)
        await store.enqueue("render", "render:7", installation_id=7)
        await store.enqueue("comment", "comment:8", installation_id=8)
        now = store.clock() + 1
        with psycopg.connect(postgres_database) as other:
            other.execute("SELECT pg_advisory_xact_lock(%s)", (installation_key(7),))
            taken = await asyncio.wait_for(
                store.claim_jobs(now=now, limit=10, lease=30, serial_kinds=WRITES), DEADLINE)
            # Installation 7's writes wait for the other replica; what is not a write does not.
            assert sorted(job.key for job in taken) == ["comment:8", "render:7"]
            other.rollback()
        [after] = await store.claim_jobs(now=now, limit=10, lease=30, serial_kinds=WRITES)
        assert after.key == "comment:7"
    finally:
        await store.close()
