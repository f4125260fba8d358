"""The job runner side by side: installations do not wait for each other, one installation's
GitHub writes go one at a time and most urgent first, content creation is paced per installation,
and a crash still loses nothing.

Real store, the fake GitHub through the reporter's real jobs where GitHub's view is the outcome;
handlers held on asyncio events where the order of things is (never sleeps or timing luck).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from porter import log_context
from porter.errors import PorterError
from porter.jobs import JobContext, JobKind, JobRunner
from porter.models import Job, Task
from porter.pacing import Window
from porter.reporting import REACT
from porter.states import TaskState
from porter.status import marker
from tests.fakes.world import OTHER_REPO, REPO, World, open_world
from tests.loopback import until

Handler = Callable[[JobContext], Awaitable[dict[str, object] | None]]


@dataclass
class Seen:
    """An observer that remembers what it was told; `broken` makes it raise instead."""

    broken: bool = False
    events: list[tuple[str, Any, Any]] = field(default_factory=list)

    async def job_finished(self, job: Job, seconds: float) -> None:
        self._told("finished", job.key, seconds >= 0)

    async def job_retried(self, job: Job, error: str) -> None:
        self._told("retried", job.key, error)

    async def job_given_up(self, job: Job, error: str) -> None:
        self._told("given_up", job.key, error)

    def paced(self, installation_id: int, seconds: float, reason: str) -> None:
        self._told("paced", installation_id, (round(seconds), reason))

    def _told(self, *event: Any) -> None:
        if self.broken:
            raise RuntimeError("the metrics are down")
        self.events.append((event[0], event[1], event[2]))


@pytest.fixture
async def porter(tmp_path: Path, pem: str) -> AsyncIterator[World]:
    async with open_world(tmp_path, pem) as world:
        yield world


async def task_in(porter: World, repo: str = REPO) -> Task:
    installation = 42 if repo == REPO else 43
    return await porter.record("issue_comment", porter.payload(
        "@porter fix the typo", repo=repo, installation_id=installation))


def runner(porter: World, kinds: dict[str, JobKind] | None = None, **options: Any) -> JobRunner:
    jobs = JobRunner(porter.store, porter.runtime.reporter.kinds() if kinds is None else kinds,
                     clock=porter.clock, rng=random.Random(1), **options)
    porter.store.subscribe(jobs.wake.set, to="jobs")
    return jobs


async def job(porter: World, key: str) -> Job:
    [found] = [j for j in await porter.store.jobs() if j.key == key]
    return found


def reactions(porter: World, task: Task) -> list[str]:
    return [r.content for r in porter.fake.reactions(task.comment_id)]


async def background(jobs: JobRunner) -> asyncio.Task[None]:
    # An idle of an hour: anything that happens within the test happened because it was woken.
    return asyncio.create_task(jobs.run_forever(idle=3600))


async def stop(loop: asyncio.Task[None]) -> None:
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop


# --- side by side --------------------------------------------------------------------------


async def test_a_stuck_installation_holds_up_only_its_own_github_writes(porter: World) -> None:
    here, there = await task_in(porter), await task_in(porter, OTHER_REPO)
    real = porter.runtime.reporter.kinds()[REACT].run
    stuck, gate = asyncio.Event(), asyncio.Event()
    machine_jobs: list[str] = []

    async def react(ctx: JobContext) -> dict[str, object] | None:
        if ctx.job.installation_id == 42 and not gate.is_set():
            stuck.set()
            await gate.wait()  # a slow GitHub answer, for this installation only
        return await real(ctx)

    async def machine(ctx: JobContext) -> dict[str, object]:
        machine_jobs.append(ctx.job.key)
        return {}

    jobs = runner(porter, {REACT: JobKind(run=react),
                           "machine": JobKind(run=machine, writes=False)})
    loop = await background(jobs)
    try:
        await porter.runtime.reporter.react(here, "eyes")
        await until(stuck.is_set, "the first installation's reaction to be under way")
        await porter.runtime.reporter.react(here, "heart")
        await porter.store.enqueue("machine", "machine:1", {}, installation_id=42)
        await porter.runtime.reporter.react(there, "eyes")

        await until(lambda: reactions(porter, there) == ["eyes"], "the other installation")
        await until(lambda: machine_jobs == ["machine:1"], "a job that writes no GitHub")
        assert reactions(porter, here) == []
        held = await job(porter, f"react:{here.id}:1:heart")
        assert (held.state, held.attempts) == ("pending", 0)  # waits its turn, not claimed

        gate.set()
        await until(lambda: reactions(porter, here) == ["eyes", "heart"], "the held writes")
    finally:
        gate.set()
        await stop(loop)


async def test_one_installations_writes_never_overlap_and_keep_their_order(
    porter: World,
) -> None:
    active: dict[int, int] = {42: 0, 43: 0}
    most = {42: 0, 43: 0, "all": 0}
    order: dict[int, list[str]] = {42: [], 43: []}

    async def write(ctx: JobContext) -> dict[str, object]:
        inst = ctx.job.installation_id
        assert inst is not None
        order[inst].append(ctx.job.key)
        active[inst] += 1
        most[inst] = max(most[inst], active[inst])
        most["all"] = max(most["all"], sum(active.values()))
        for _ in range(3):
            await asyncio.sleep(0)  # give any other job the chance to run now
        active[inst] -= 1
        return {}

    jobs = runner(porter, {"write": JobKind(run=write)})
    for n in range(5):
        for inst in (42, 43):
            await porter.store.enqueue("write", f"write:{inst}:{n}", {}, installation_id=inst)

    assert await jobs.run_due(porter.clock.now) == 10
    assert (most[42], most[43]) == (1, 1)
    assert most["all"] == 2  # the two installations did run side by side
    assert order == {inst: [f"write:{inst}:{n}" for n in range(5)] for inst in (42, 43)}


async def test_concurrency_is_bounded_and_machines_cannot_crowd_out_github_writes(
    porter: World,
) -> None:
    there = await task_in(porter, OTHER_REPO)
    running, gate = set(), asyncio.Event()

    async def wait(ctx: JobContext) -> dict[str, object]:
        running.add(ctx.job.key)
        await gate.wait()  # a machine launch waiting out Fly's rate limit, say
        return {}

    jobs = runner(porter, {**porter.runtime.reporter.kinds(),
                           "wait": JobKind(run=wait, writes=False)}, concurrency=3)
    for n in range(5):
        await porter.store.enqueue("wait", f"wait:{n}", {}, installation_id=42)
    loop = await background(jobs)
    try:
        await until(lambda: len(running) == 3, "three jobs under way")
        assert len([j for j in await porter.store.jobs() if j.state == "running"]) == 3
        # Every slot for such jobs is taken; GitHub writes have slots of their own.
        await porter.runtime.reporter.react(there, "eyes")
        await until(lambda: reactions(porter, there) == ["eyes"], "the 👀 all the same")
        assert len(running) == 3
        gate.set()
        await until(lambda: len(running) == 5, "the other two, as the first ones end")
    finally:
        gate.set()
        await stop(loop)


# --- priorities ----------------------------------------------------------------------------


async def test_the_first_eyes_go_first_and_a_publish_before_cosmetic_edits(
    porter: World,
) -> None:
    ran: list[str] = []

    async def record(ctx: JobContext) -> dict[str, object]:
        ran.append(ctx.job.key)
        return {}

    jobs = runner(porter, {kind: JobKind(run=record)
                           for kind in ("status", "react", "comment", "publish")})
    # All in one installation, oldest first: the order they were asked in is not the order due.
    asked: list[tuple[str, str, dict[str, Any]]] = [
        ("status", "status:1", {"task_id": 1}),
        ("react", "react:1:final", {"content": "rocket"}),
        ("comment", "comment:reply", {"body": "hi"}),
        ("publish", "publish:2:1", {"changeset": {}}),
        ("react", "react:3:eyes", {"content": "eyes"}),
        ("status", "status:3", {"task_id": 3}),
    ]
    for kind, key, payload in asked:
        await porter.store.enqueue(kind, key, payload, installation_id=42)

    assert await jobs.run_due(porter.clock.now) == 6
    assert ran == ["react:3:eyes", "publish:2:1", "comment:reply", "status:1", "react:1:final",
                   "status:3"]


async def test_a_publish_asked_for_later_overtakes_status_jobs_already_waiting(
    porter: World,
) -> None:
    ran: list[str] = []
    stuck, gate = asyncio.Event(), asyncio.Event()

    async def record(ctx: JobContext) -> dict[str, object]:
        ran.append(ctx.job.key)
        if len(ran) == 1:
            stuck.set()
            await gate.wait()
        return {}

    jobs = runner(porter, {kind: JobKind(run=record) for kind in ("status", "publish")})
    loop = await background(jobs)
    try:
        for n in range(4):
            await porter.store.enqueue("status", f"status:{n}", {"task_id": n},
                                       installation_id=42)
        await until(stuck.is_set, "a status render under way")
        await porter.store.enqueue("publish", "publish:9:1", {"changeset": {}},
                                   installation_id=42)
        gate.set()
        await until(lambda: len(ran) == 5, "every job")
        assert ran == ["status:0", "publish:9:1", "status:1", "status:2", "status:3"]
    finally:
        gate.set()
        await stop(loop)


# --- GitHub's limits -----------------------------------------------------------------------


async def test_retry_after_holds_only_that_installations_github_writes(porter: World) -> None:
    here, there = await task_in(porter), await task_in(porter, OTHER_REPO)
    ran: list[str] = []

    async def machine(ctx: JobContext) -> dict[str, object]:
        ran.append(ctx.job.key)
        return {}

    seen = Seen()
    jobs = runner(porter, {**porter.runtime.reporter.kinds(),
                           "machine": JobKind(run=machine, writes=False)}, observer=seen)
    t0 = porter.clock.now
    porter.fake.fail("POST", rf"/repos/{REPO}/issues/comments/{here.comment_id}/reactions", 429,
                     headers={"retry-after": "30"})
    await porter.runtime.reporter.react(here, "eyes")
    await porter.runtime.reporter.react(there, "eyes")
    assert await jobs.run_due(t0) == 2
    assert (reactions(porter, here), reactions(porter, there)) == ([], ["eyes"])

    porter.clock.now = t0 + 1
    await porter.runtime.reporter.react(here, "heart")
    await porter.runtime.reporter.react(there, "heart")
    await porter.store.enqueue("machine", "machine:1", {}, installation_id=42)
    assert await jobs.run_due(t0 + 1) == 2  # the other installation's write, and the machine
    assert reactions(porter, there) == ["eyes", "heart"]
    assert ran == ["machine:1"]
    held = await job(porter, f"react:{here.id}:1:heart")
    assert (held.state, held.attempts) == ("pending", 0)
    assert held.run_after == pytest.approx(t0 + 30)
    assert ("paced", 42, (29, "retry_after")) in seen.events

    porter.clock.now = t0 + 30
    assert await jobs.run_due(t0 + 30) == 2
    assert reactions(porter, here) == ["eyes", "heart"]


async def test_content_creation_is_paced_per_installation_but_edits_are_not(
    porter: World,
) -> None:
    here, there = await task_in(porter), await task_in(porter, OTHER_REPO)
    seen = Seen()
    jobs = runner(porter, pacing=[Window(2, 60.0)], observer=seen)
    reporter = porter.runtime.reporter
    t0 = porter.clock.now
    await reporter.acknowledge(here)  # 👀 and the status comment: two creations, at once
    await reporter.react(here, "heart")  # a third: over this installation's budget
    assert await jobs.run_due(t0) == 2
    assert reactions(porter, here) == ["eyes"]
    assert [c for c in porter.fake.comments(REPO, 1) if marker(here.id) in c.body]
    paced = await job(porter, f"react:{here.id}:1:heart")
    assert (paced.state, paced.attempts, paced.last_error) == ("pending", 0, None)
    assert paced.run_after == pytest.approx(t0 + 60, abs=0.01)
    assert ("paced", 42, (60, "bucket")) in seen.events

    # An edit of the status comment is no creation: it goes out while the budget is spent,
    # and so does the other installation's creation.
    porter.clock.now = t0 + 1
    assert await porter.store.transition(here.id, expected=TaskState.QUEUED,
                                         target=TaskState.STARTING)
    await reporter.react(there, "eyes")
    assert await jobs.run_due(t0 + 1) == 2
    [status] = [c for c in porter.fake.comments(REPO, 1) if marker(here.id) in c.body]
    assert "**machine started …**" in status.body
    assert reactions(porter, there) == ["eyes"]
    assert reactions(porter, here) == ["eyes"]

    porter.clock.now = t0 + 60.01
    assert await jobs.run_due() == 1
    assert reactions(porter, here) == ["eyes", "heart"]


async def test_a_final_reaction_leaves_the_last_of_the_budget_to_a_reply(porter: World) -> None:
    task = await task_in(porter)
    reporter = porter.runtime.reporter
    jobs = runner(porter, pacing=[Window(3, 60.0, reserve=1)])
    await reporter.acknowledge(task)  # 👀 (urgent) and the status comment (cosmetic)
    assert await jobs.run_due(porter.clock.now) == 2
    await reporter.react(task, "rocket", key=f"react:{task.id}:1:final")
    await reporter.reply(key="answer", repo=REPO, installation_id=42, number=1, body="Done.")
    assert await jobs.run_due(porter.clock.now) == 1
    assert reactions(porter, task) == ["eyes"]  # the rocket waits for the minute to pass
    assert any("Done." in c.body for c in porter.fake.comments(REPO, 1))


# --- errors, crashes, observers, log context -----------------------------------------------


class Unreachable(PorterError):
    """A service Porter tells was unreachable."""

    retryable = True
    retry_after = 7.0


async def test_any_porter_error_may_ask_to_be_retried_and_the_observer_hears(
    porter: World,
) -> None:
    calls: list[str] = []

    async def flaky(ctx: JobContext) -> dict[str, object]:
        calls.append(ctx.job.key)
        if len(calls) == 1:
            raise Unreachable
        return {"ok": True}

    async def refused(ctx: JobContext) -> dict[str, object]:
        raise PorterError("no such thing")

    seen = Seen()
    jobs = runner(porter, {"flaky": JobKind(run=flaky), "refused": JobKind(run=refused)},
                  observer=seen)
    await porter.store.enqueue("flaky", "flaky:1", {}, installation_id=42)
    await porter.store.enqueue("refused", "refused:1", {}, installation_id=43)
    t0 = porter.clock.now
    assert await jobs.run_due(t0) == 2
    retried = await job(porter, "flaky:1")
    assert retried.state == "pending"
    assert retried.run_after == pytest.approx(t0 + 7)
    assert (await job(porter, "refused:1")).state == "given_up"
    porter.clock.now = t0 + 7
    assert await jobs.run_due(t0 + 7) == 1
    assert (await job(porter, "flaky:1")).result == {"ok": True}
    assert sorted(e[:2] for e in seen.events) == [
        ("finished", "flaky:1"), ("given_up", "refused:1"), ("retried", "flaky:1")]


async def test_a_broken_observer_breaks_no_job(porter: World) -> None:
    task = await task_in(porter)
    jobs = runner(porter, observer=Seen(broken=True),
                  pacing=[Window(1, 60.0)])
    await porter.runtime.reporter.react(task, "eyes")
    await porter.runtime.reporter.react(task, "heart")  # paced: the observer is told, and fails
    assert await jobs.run_due(porter.clock.now) == 1
    assert reactions(porter, task) == ["eyes"]
    assert (await job(porter, f"react:{task.id}:1:eyes")).state == "done"
    assert (await job(porter, f"react:{task.id}:1:heart")).state == "pending"


async def test_a_handler_logs_under_its_task_and_run(porter: World) -> None:
    task = await task_in(porter)
    bound: list[dict[str, object]] = []

    async def launch(ctx: JobContext) -> dict[str, object]:
        bound.append(log_context.current())
        return {}

    jobs = runner(porter, {"launch": JobKind(run=launch, writes=False)})
    await porter.store.enqueue("launch", "launch:1", {"run_id": "run-abc"}, task_id=task.id,
                               installation_id=42)
    assert await jobs.run_due(porter.clock.now) == 1
    assert bound == [{"task_id": task.id, "run_id": "run-abc"}]
    assert log_context.current() == {}  # nothing leaks out of the job


async def test_a_crash_mid_job_loses_nothing_and_no_job_runs_twice_at_once(
    porter: World,
) -> None:
    calls: list[int] = []
    gate = asyncio.Event()

    async def slow(ctx: JobContext) -> dict[str, object]:
        calls.append(ctx.job.attempts)
        if len(calls) == 1:
            await gate.wait()  # the process dies in here
        return {"done": len(calls)}

    # No GitHub write (a machine launch, say): nothing but the runner's own memory of what it
    # runs keeps it from being taken again.
    jobs = runner(porter, {"slow": JobKind(run=slow, writes=False)}, lease=5)
    await porter.store.enqueue("slow", "slow:1", {}, installation_id=42)
    t0 = porter.clock.now
    first = asyncio.create_task(jobs.run_due(t0))
    await until(lambda: calls == [0], "the job to be under way")

    # Its lease ran out while it still runs here: this process does not start it again.
    porter.clock.now = t0 + 6
    assert await jobs.run_due(t0 + 6) == 0
    assert calls == [0]

    first.cancel()  # the crash
    with pytest.raises(asyncio.CancelledError):
        await first
    assert (await job(porter, "slow:1")).state == "running"  # claimed, and nobody's now

    porter.clock.now = t0 + 20  # past the lease the last claim took
    again = runner(porter, {"slow": JobKind(run=slow, writes=False)}, lease=5)
    assert await again.run_due(t0 + 20) == 1
    done = await job(porter, "slow:1")
    assert (done.state, done.result) == ("done", {"done": 2})



# --- stopping ------------------------------------------------------------------------------


async def test_loops_cancelled_as_they_are_woken_stop(porter: World) -> None:
    # The cancel and the wake-up land on the same turn of the event loop: on Python 3.11
    # `asyncio.wait_for` returned the wake-up and dropped the cancel, and the loop ran on.
    jobs = runner(porter, {})
    dispatcher = porter.runtime.dispatcher
    for wake, loop in ((jobs.wake, await background(jobs)),
                       (dispatcher.wake, asyncio.create_task(dispatcher.run_forever()))):
        # Parked on its wake-up (an Event's waiters are private; nothing else says so).
        await until(lambda wake=wake: bool(wake._waiters), "the loop to wait")  # type: ignore[misc]
        wake.set()
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(loop, 10)
