"""Several Porter processes on one database (issue 12): each store here is one process, with its
own connections and identity. Claims hold across them, a claim whose lease ran out is fenced,
and on PostgreSQL one process's commits wake the others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from porter.admission import Limits
from porter.jobs import JobContext, JobKind, JobRunner
from porter.models import Task
from porter.states import LIVE, JobState
from porter.store import Store
from porter.store.connection import GONE_AFTER
from tests.conftest import trigger
from tests.fakes.clock import Clock
from tests.loopback import until
from tests.store_helpers import two_processes

WRITES = {"comment"}  # a kind that writes to GitHub: one at a time per installation


@pytest.fixture
async def two(store_database: Path | str) -> AsyncIterator[tuple[Store, Store, Clock]]:
    clock = Clock(1000.0)
    async with two_processes(store_database, clock) as (first, second):
        yield first, second, clock


async def test_a_claim_whose_lease_ran_out_is_fenced(
        two: tuple[Store, Store, Clock]) -> None:
    paused, other, clock = two
    await paused.enqueue("notify", "notify:1")
    [late] = await paused.claim_jobs(now=clock.now, limit=5, lease=30)
    assert await other.claim_jobs(now=clock.now + 29, limit=5, lease=30) == []

    clock.now += 31  # the first process was paused past its lease: the other takes the job
    [taken] = await other.claim_jobs(now=clock.now, limit=5, lease=30)
    assert taken.id == late.id

    # The paused process wakes up and tries to act on its stale claim: nothing it writes counts.
    assert await paused.renew_leases([late.id], until=clock.now + 30) == {late.id}
    assert not await paused.finish_job(late, result={"by": "paused"})
    await paused.reschedule_job(late, run_after=clock.now + 500, error="late")
    await paused.give_up_job(late, error="late")
    await paused.save_progress(late, {"posted": "by the paused one"})
    [job] = await other.jobs(kind="notify")
    assert job.state is JobState.RUNNING and job.progress == {} and job.last_error is None

    assert await other.renew_leases([taken.id], until=clock.now + 30) == set()
    assert await other.finish_job(taken, result={"by": "other"})
    [job] = await other.jobs(kind="notify")
    assert job.state is JobState.DONE and job.result == {"by": "other"}


async def test_one_installation_writes_one_at_a_time_across_processes(
        two: tuple[Store, Store, Clock]) -> None:
    first, second, clock = two
    for number in range(3):
        await first.enqueue("comment", f"comment:{number}", installation_id=7)
    await first.enqueue("comment", "comment:other", installation_id=8)
    [mine] = await first.claim_jobs(now=clock.now, limit=1, lease=30, serial_kinds=WRITES)
    assert mine.installation_id == 7
    # The second process may take installation 8's write, never another of installation 7's
    # while the first holds one under a live lease.
    taken = await second.claim_jobs(now=clock.now, limit=5, lease=30, serial_kinds=WRITES)
    assert [job.installation_id for job in taken] == [8]
    assert await first.finish_job(mine)
    [after] = await second.claim_jobs(now=clock.now, limit=5, lease=30, serial_kinds=WRITES)
    assert after.installation_id == 7


async def test_a_job_rearmed_while_another_process_runs_it_waits_for_that_run(
        two: tuple[Store, Store, Clock]) -> None:
    first, second, clock = two
    await first.enqueue("render", "render:1")
    [running] = await first.claim_jobs(now=clock.now, limit=5, lease=30)
    await second.enqueue("render", "render:1", rearm=True)  # a newer status to render
    assert await second.claim_jobs(now=clock.now, limit=5, lease=30) == []
    assert not await first.finish_job(running)  # re-armed: stays to be run again, by anyone
    [again] = await second.claim_jobs(now=clock.now, limit=5, lease=30)
    assert again.id == running.id and again.generation == running.generation + 1


async def test_a_write_rearmed_as_it_runs_still_holds_its_installation(
        two: tuple[Store, Store, Clock]) -> None:
    first, second, clock = two
    await first.enqueue("comment", "comment:1", installation_id=7)
    [running] = await first.claim_jobs(now=clock.now, limit=5, lease=30, serial_kinds=WRITES)
    await second.enqueue("comment", "comment:1", installation_id=7, rearm=True)
    await second.enqueue("comment", "comment:2", installation_id=7)
    assert await second.claim_jobs(now=clock.now, limit=5, lease=30, serial_kinds=WRITES) == []
    assert not await first.finish_job(running)
    [after] = await second.claim_jobs(now=clock.now, limit=5, lease=30, serial_kinds=WRITES)
    assert after.id == running.id  # most urgent first: the same priority, then the older


async def test_a_runner_stops_a_job_another_process_took_over(
        two: tuple[Store, Store, Clock]) -> None:
    paused, other, clock = two
    started, stopped = asyncio.Event(), asyncio.Event()

    async def slow(_: JobContext) -> dict[str, object]:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.set()
            raise
        return {}

    await paused.enqueue("slow", "slow:1")
    runner = JobRunner(paused, {"slow": JobKind(run=slow, writes=False)}, clock=clock, lease=30)
    passing = asyncio.create_task(runner.run_due())
    await started.wait()
    clock.now += 31
    [taken] = await other.claim_jobs(now=clock.now, limit=5, lease=30)
    await runner.renew_leases()
    await asyncio.wait_for(stopped.wait(), 10)
    await passing
    [job] = await other.jobs(kind="slow")
    assert job.state is JobState.RUNNING and job.id == taken.id  # the other's, untouched


async def test_a_commit_in_one_process_wakes_the_others(postgres_database: str) -> None:
    async with two_processes(postgres_database) as (first, second):
        woken: list[str] = []
        second.subscribe(lambda: woken.append("jobs"), to="jobs")
        second.subscribe(lambda: woken.append("tasks"), to="tasks")
        listener = second._backend._listener  # type: ignore[attr-defined]
        await until(listener.listening.is_set, "LISTEN in force")
        await first.enqueue("notify", "notify:1")
        await until(lambda: "jobs" in woken, "the other process woken")
        assert "tasks" not in woken  # a job alone frees no slot: the dispatcher sleeps on
        count = len(woken)
        await first.enqueue("notify", "notify:1")  # asked again (keyed): nothing new
        await first.enqueue("notify", "notify:2")
        await until(lambda: len(woken) > count, "woken again")
        # A task recorded there wakes the dispatcher and pages here, and no job runner.
        woken.clear()
        await first.record_triggers([trigger("d-1", 1)], default_agent="claude")
        await until(lambda: "tasks" in woken, "the dispatcher woken")
        await first.record_triggers([trigger("d-2", 2, "@porter cancel")],
                                    default_agent="claude")
        await until(lambda: "jobs" in woken, "a job runner woken by a command")
        assert woken == ["tasks", "jobs"]


async def test_live_limits_hold_when_processes_start_tasks_at_once(
        two: tuple[Store, Store, Clock]) -> None:
    first, second, _ = two
    recorded = await first.record_triggers(
        [trigger(f"d-{n}", n, repo=repo) for n, repo in
         ((1, "octo/one"), (2, "octo/two"), (3, "octo/one"))], default_agent="claude")
    tasks = [await first.get_task(result.task_id or 0) for result in recorded]
    limits = Limits(total=5, per_installation=1)

    async def start(store: Store, task: Task | None, run_id: str) -> bool:
        assert task is not None
        return await store.start_run(task, run_id=run_id, token_hash="h", runner="local",
                                     job=("machine.launch", f"launch:{run_id}", {}),
                                     limits=limits)

    # Each process decided from what it read (nothing live): only one start may hold.
    started = await asyncio.gather(start(first, tasks[0], "r1"), start(second, tasks[1], "r2"))
    assert sorted(started) == [False, True]
    assert not await start(second, tasks[2], "r3")  # the installation's one slot is taken
    live = await first.tasks_in_states(LIVE)
    assert len(live) == 1


async def test_a_process_elsewhere_not_seen_for_long_is_taken_for_gone(
        two: tuple[Store, Store, Clock]) -> None:
    live, silent, clock = two
    # The silent process runs on another host: from here only its silence can say it is gone.
    await silent._write(lambda db: db.execute(
        "UPDATE processes SET host = 'elsewhere' WHERE id = ?", (silent.process.id,)))
    await silent.enqueue("notify", "notify:1")
    [held] = await silent.claim_jobs(now=clock.now, limit=5, lease=30)
    clock.now += GONE_AFTER / 2
    assert await live.reclaim_from_dead() == 0  # quiet, not yet gone: its lease decides
    clock.now += GONE_AFTER / 2 + 1
    assert await live.reclaim_from_dead() == 1
    assert await live.hosts() == {live.process.host}  # its row is gone with it
    [job] = await live.jobs(kind="notify")
    assert job.id == held.id and job.state is JobState.PENDING
    # Back from its pause, it is registered anew; its lost claim stays lost.
    assert await silent.reclaim_from_dead() == 0
    assert await live.hosts() == {live.process.host, silent.process.host}
    assert await silent.renew_leases([held.id], until=clock.now + 30) == {held.id}
