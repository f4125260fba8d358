"""The watchdog against a real store, the real launcher and job runner, and the in-memory runner.

Every run that stops talking gets exactly one ending: asserted on what the task's record says
(state, stage, reason, events), on the jobs that tell the requester (status, final reaction) and
on what happened to machines (the runner's own record of stop and destroy calls).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from porter.jobs import JobRunner
from porter.launcher import DESTROY, STOP, Launcher
from porter.models import AgentRun, Job, Task
from porter.reporting import REACT, STATUS, Reporter
from porter.runners.base import LaunchRequest, RunnerError
from porter.runtime import Runtime
from porter.states import TaskState
from porter.status import marker
from porter.store import Store
from porter.watchdog import EXIT_GRACE, Watchdog
from tests.fakes.clock import Clock
from tests.fakes.machines import Machines
from tests.fakes.world import PUBLIC_URL, REPO, World, open_world

S = TaskState
HEARTBEAT = 120  # the default PORTER_HEARTBEAT_TIMEOUT
DEADLINE = 3600  # the default PORTER_TASK_TIMEOUT


@dataclass
class Watch:
    """The shared world (tests/fakes/world.py) with GitHub unconfigured, seen from the watchdog.

    Only the machine jobs run here: status and reactions stay queued, so tests can count them.
    """

    world: World
    jobs: JobRunner  # the launcher's kinds only

    @property
    def store(self) -> Store:
        return self.world.store

    @property
    def clock(self) -> Clock:
        return self.world.clock

    @property
    def runner(self) -> Machines:
        runner: Machines = self.world.runner
        return runner

    @property
    def launcher(self) -> Launcher:
        return self.world.runtime.launcher

    @property
    def reporter(self) -> Reporter:
        return self.world.runtime.reporter

    def watchdog(self, runtime: Runtime | None = None, *,
                 exit_grace: float = EXIT_GRACE) -> Watchdog:
        """Another watchdog (as a second pass or process would have) on the same runner."""
        runtime = runtime or self.world.runtime
        return Watchdog(store=runtime.store, runner=self.runner, launcher=runtime.launcher,
                        settings=runtime.settings, clock=self.clock, exit_grace=exit_grace)

    async def renders(self, task_id: int) -> int:
        """How often the task's status comment was asked for (each state change asks once)."""
        jobs = await self.store.jobs(kind=STATUS, task_id=task_id)
        return jobs[0].generation + 1 if jobs else 0

    async def tick(self) -> None:
        """One pass of the watchdog the runtime keeps for the life of the process."""
        await self.world.runtime.watchdog.tick(self.clock.now)

    async def queued(self, issue: int = 1) -> Task:
        """A task from a real webhook payload, authorized, its base already resolved."""
        task = await self.world.record("issue_comment",
                                       self.world.payload("@porter fix the typo", number=issue))
        await self.store.update_task(task.id, authorized_at=self.clock.now,
                                     base_ref="main", base_sha="a" * 40)
        return await self.task(task.id)

    async def launched(self, issue: int = 1) -> tuple[Task, AgentRun]:
        """A task whose machine was started and has not called back yet."""
        task = await self.queued(issue)
        await self.launcher.start(task)
        await self.settle()
        run = await self.run(task.id)
        assert run.state == "launching" and run.machine_id is not None
        return await self.task(task.id), run

    async def running(self, issue: int = 1) -> tuple[Task, AgentRun]:
        task, run = await self.launched(issue)
        self.runner.set(self.machine(run), "running")
        await self.beat(run)
        return await self.task(task.id), await self.run(task.id)

    async def beat(self, run: AgentRun) -> None:
        """The machine calls back (spec, heartbeat, logs all count) at the current time."""
        await self.store.run_contact(run, stage="agent", message="editing files")

    async def settle(self) -> None:
        for _ in range(10):
            if not await self.jobs.run_due(self.clock.now):
                return
        raise AssertionError("jobs kept running")

    async def task(self, task_id: int) -> Task:
        return await self.world.task(task_id)

    async def run(self, task_id: int) -> AgentRun:
        return await self.world.run(task_id)

    def machine(self, run: AgentRun) -> str:
        assert run.machine_id is not None
        return run.machine_id

    async def states(self, task_id: int) -> list[tuple[str, str]]:
        """The task's state changes after it started, as (kind, message)."""
        return [(e.kind, e.message) for e in await self.store.task_events(task_id)
                if e.kind.startswith("state.") and e.kind not in ("state.queued",
                                                                  "state.starting",
                                                                  "state.running")]

    async def destroys(self) -> list[Job]:
        return await self.store.jobs(kind=DESTROY)

    async def status_job(self, task_id: int) -> Job:
        [job] = await self.store.jobs(kind=STATUS, task_id=task_id)
        return job

    async def final_reactions(self, task_id: int) -> list[str]:
        return [j.key for j in await self.store.jobs(kind=REACT, task_id=task_id)
                if j.key.endswith(":final")]


@pytest.fixture
async def world(tmp_path: Path, pem: str) -> AsyncIterator[Watch]:
    async with open_world(tmp_path, pem, github=False) as world:
        launcher = world.runtime.launcher
        yield Watch(world, JobRunner(world.store, launcher.kinds(), clock=world.clock))


# --- 1. the deadline -------------------------------------------------------------------------


async def test_a_task_past_its_deadline_times_out_once_and_its_machine_goes(world: Watch) -> None:
    task, run = await world.running()
    start = run.created_at
    # A healthy machine that keeps reporting is left alone right up to the deadline.
    for at in range(60, DEADLINE, 60):
        world.clock.now = start + at
        await world.beat(run)
        await world.tick()
    assert (await world.task(task.id)).state is S.RUNNING
    assert await world.destroys() == []
    renders = await world.renders(task.id)

    world.clock.now = start + DEADLINE + 1
    await world.tick()
    await world.tick()

    task = await world.task(task.id)
    assert task.state is S.TIMED_OUT
    assert task.reason == "it ran past the 1h 00m limit"
    assert await world.states(task.id) == [("state.timed_out", "it ran past the 1h 00m limit")]
    assert (await world.run(task.id)).state == "abandoned"
    [destroy] = await world.destroys()
    assert destroy.payload == {"machine_id": world.machine(run)}
    assert await world.renders(task.id) == renders + 1
    assert await world.final_reactions(task.id) == [f"react:{task.id}:1:final"]
    await world.settle()
    assert world.runner.destroyed == [world.machine(run)]
    assert world.runner.machines == {}


async def test_a_retried_attempt_gets_its_own_full_deadline(world: Watch) -> None:
    task, run = await world.running()
    world.clock.now += HEARTBEAT + 1
    await world.tick()
    assert (await world.task(task.id)).state is S.FAILED

    # Two hours later the requester says `@porter retry`; attempt 2 starts afresh.
    world.clock.now += 2 * 3600
    assert await world.store.retry(task.id) == 2
    # Authorized and its base resolved again, as dispatch does for every attempt.
    await world.store.update_task(task.id, authorized_at=world.clock.now, base_ref="main",
                                  base_sha="b" * 40)
    await world.launcher.start(await world.task(task.id))
    await world.settle()
    second = await world.run(task.id)
    assert second.attempt == 2 and second.id != run.id
    world.runner.set(world.machine(second), "running")
    world.clock.now += 5
    await world.beat(second)
    await world.tick()

    assert (await world.task(task.id)).state is S.RUNNING
    assert (await world.run(task.id)).state == "running"
    world.clock.now = second.created_at + DEADLINE + 1
    await world.tick()
    assert (await world.task(task.id)).state is S.TIMED_OUT


# --- 2. silent heartbeats --------------------------------------------------------------------


async def test_a_machine_that_stops_reporting_fails_at_the_agent_stage(world: Watch) -> None:
    task, run = await world.running()
    last = world.clock.now
    world.clock.now = last + HEARTBEAT
    await world.tick()
    assert (await world.task(task.id)).state is S.RUNNING

    world.clock.now = last + HEARTBEAT + 1
    await world.tick()

    task = await world.task(task.id)
    assert (task.state, task.stage) == (S.FAILED, "agent")
    assert task.reason == "the machine stopped reporting for 2m 01s"
    assert await world.states(task.id) == [("state.failed", task.reason)]
    assert (await world.run(task.id)).state == "abandoned"
    assert len(await world.destroys()) == 1
    await world.settle()
    assert world.runner.destroyed == [world.machine(run)]


async def test_a_machine_still_starting_gets_the_longer_launch_allowance(world: Watch) -> None:
    task, run = await world.launched()
    for silent in (HEARTBEAT + 1, 2 * HEARTBEAT, 3 * HEARTBEAT):
        world.clock.now = run.created_at + silent
        await world.tick()
        assert (await world.task(task.id)).state is S.STARTING, silent

    world.clock.now = run.created_at + 3 * HEARTBEAT + 1
    await world.tick()

    task = await world.task(task.id)
    assert (task.state, task.stage) == (S.FAILED, "dispatch")
    assert task.reason == "the machine did not start within 6m 01s"
    assert await world.states(task.id) == [("state.failed", task.reason)]
    await world.settle()
    assert world.runner.destroyed == [world.machine(run)]


async def test_an_unreachable_runner_does_not_hide_a_silent_machine(world: Watch) -> None:
    task, _ = await world.running()
    world.runner.state_error = RunnerError("the Fly API answered 503")
    world.clock.now += HEARTBEAT + 1
    await world.tick()

    task = await world.task(task.id)
    assert (task.state, task.stage) == (S.FAILED, "agent")
    assert "stopped reporting" in (task.reason or "")


# --- 3. a machine that exited without calling back ------------------------------------------


@pytest.mark.parametrize(("exit_code", "detail", "reason"), [
    (137, "", "the machine stopped without reporting back: it exited with code 137"),
    (137, "exited with code 137 (killed by SIGKILL)",
     "the machine stopped without reporting back: exited with code 137 (killed by SIGKILL)"),
])
@pytest.mark.parametrize("grace", [EXIT_GRACE, 2.0], ids=["default grace", "injected grace"])
async def test_an_exited_machine_fails_after_a_short_grace(
        world: Watch, exit_code: int, detail: str, reason: str, grace: float) -> None:
    watchdog = world.watchdog(exit_grace=grace)
    task, run = await world.running()
    last = world.clock.now
    # It dies just before its next heartbeat would have been due.
    world.clock.now = last + 14
    world.runner.set(world.machine(run), "exited", exit_code=exit_code, detail=detail)
    await watchdog.tick(world.clock.now)
    world.clock.now = last + 14 + grace  # the whole grace: a completion may still be on its way
    await watchdog.tick(world.clock.now)
    assert (await world.task(task.id)).state is S.RUNNING
    assert await world.destroys() == []

    world.clock.now = last + 14 + grace + 1
    await watchdog.tick(world.clock.now)

    task = await world.task(task.id)
    assert (task.state, task.stage, task.reason) == (S.FAILED, "agent", reason)
    assert world.clock.now - last < HEARTBEAT  # far sooner than silence alone would take
    assert await world.states(task.id) == [("state.failed", reason)]
    await world.settle()
    assert world.runner.destroyed == [world.machine(run)]


async def test_a_machine_that_vanished_fails_after_the_grace(world: Watch) -> None:
    task, run = await world.running()
    del world.runner.machines[world.machine(run)]  # destroyed by someone else
    await world.tick()
    world.clock.now += EXIT_GRACE + 1
    await world.tick()

    task = await world.task(task.id)
    assert (task.state, task.stage) == (S.FAILED, "agent")
    assert task.reason == "the machine stopped without reporting back: it is gone"


async def test_a_machine_that_exits_before_calling_back_failed_to_start(world: Watch) -> None:
    task, run = await world.launched()
    world.runner.set(world.machine(run), "exited", exit_code=1)
    await world.tick()
    world.clock.now += EXIT_GRACE + 1
    await world.tick()

    task = await world.task(task.id)
    assert (task.state, task.stage) == (S.FAILED, "dispatch")
    assert task.reason == "the machine stopped without reporting back: it exited with code 1"


# --- 4. orphans ------------------------------------------------------------------------------


async def test_machines_of_no_live_run_are_destroyed_and_live_ones_kept(world: Watch) -> None:
    live_task, live_run = await world.running(issue=1)
    done_task, done_run = await world.running(issue=2)
    # Porter finished this run but crashed before asking for its machine to go.
    assert await world.store.complete_run(
        done_run, result={"status": "failed"}, target=S.FAILED, message="the agent gave up",
        stage="agent", reason="the agent gave up")
    renders = [await world.renders(t.id) for t in (live_task, done_task)]
    world.runner.stray("m-stale", "r-from-a-lost-database")
    world.runner.stray("m-unlabelled", None)

    await world.tick()
    await world.tick()
    assert sorted(j.payload["machine_id"] for j in await world.destroys()) == sorted(
        [world.machine(done_run), "m-stale", "m-unlabelled"])
    await world.settle()

    assert sorted(world.runner.destroyed) == sorted(
        [world.machine(done_run), "m-stale", "m-unlabelled"])
    assert list(world.runner.machines) == [world.machine(live_run)]
    assert world.runner.stopped == []
    assert (await world.task(live_task.id)).state is S.RUNNING
    assert (await world.task(done_task.id)).state is S.FAILED
    assert [await world.renders(t.id) for t in (live_task, done_task)] == renders


async def test_a_second_machine_from_a_retried_launch_is_destroyed(world: Watch) -> None:
    task = await world.queued()
    await world.launcher.start(task)
    run = await world.run(task.id)
    # The launch job started a machine and crashed before recording it; its retry starts another.
    lost = await world.runner.launch(LaunchRequest(
        run_id=run.id, task_id=task.id, token=world.world.runtime.runs.token_for(run.id),
        porter_url=PUBLIC_URL))
    await world.settle()
    run = await world.run(task.id)
    kept = world.machine(run)
    assert kept != lost.id

    await world.tick()
    await world.settle()
    assert world.runner.destroyed == [lost.id]
    assert list(world.runner.machines) == [kept]
    assert (await world.task(task.id)).state is S.STARTING

    # When the run ends, its own machine goes too: each machine destroyed exactly once.
    world.clock.now += 3 * HEARTBEAT + 1
    await world.tick()
    await world.tick()
    await world.settle()
    assert world.runner.destroyed == [lost.id, kept]
    assert world.runner.machines == {}


async def test_a_machine_being_launched_is_not_taken_for_an_orphan(world: Watch) -> None:
    task = await world.queued()
    await world.launcher.start(task)
    run = await world.run(task.id)
    # Between the runner accepting the machine and the launch job recording it.
    await world.runner.launch(LaunchRequest(
        run_id=run.id, task_id=task.id, token=world.world.runtime.runs.token_for(run.id),
        porter_url=PUBLIC_URL))
    await world.tick()
    assert await world.destroys() == []


async def test_a_machine_launched_during_the_pass_is_not_taken_for_an_orphan(
        world: Watch) -> None:
    launched: list[AgentRun] = []

    async def a_task_starts_meanwhile() -> None:
        world.runner.on_list = None
        _, run = await world.launched(issue=2)
        launched.append(run)

    await world.running(issue=1)
    world.runner.on_list = a_task_starts_meanwhile
    await world.tick()

    [run] = launched
    assert await world.destroys() == []
    assert world.machine(run) in world.runner.machines


# --- 5. racing ticks -------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["one watchdog", "two watchdogs", "two processes"])
async def test_racing_ticks_make_one_ending(world: Watch, tmp_path: Path, how: str) -> None:
    task, run = await world.running()
    renders = await world.renders(task.id)
    first = world.watchdog()
    other_store: Store | None = None
    if how == "one watchdog":
        second = first
    elif how == "two watchdogs":
        second = world.watchdog()
    else:  # a second Porter process on the same database
        other_store = await Store.open(tmp_path / "porter.db", clock=world.clock)
        other = Runtime(world.world.settings, other_store, clock=world.clock,
                        runner=world.runner)
        second = world.watchdog(other)
    try:
        world.clock.now += HEARTBEAT + 1
        await asyncio.gather(first.tick(world.clock.now), second.tick(world.clock.now))
        await asyncio.gather(first.tick(world.clock.now), second.tick(world.clock.now))
    finally:
        if other_store is not None:
            await other_store.close()

    task = await world.task(task.id)
    assert task.state is S.FAILED
    assert [kind for kind, _ in await world.states(task.id)] == ["state.failed"]
    assert await world.renders(task.id) == renders + 1
    assert await world.final_reactions(task.id) == [f"react:{task.id}:1:final"]
    assert len(await world.destroys()) == 1
    await world.settle()
    assert world.runner.destroyed == [world.machine(run)]


# --- 6. cancelled elsewhere ------------------------------------------------------------------


async def test_a_cancel_elsewhere_is_released_without_a_second_ending(world: Watch) -> None:
    task, run = await world.running()
    control = world.world.runtime.control
    assert await control.cancel(task, by="Codertocat") == f"Cancelled task #{task.id}."
    status_before = (await world.status_job(task.id)).generation

    await world.tick()
    await world.tick()

    assert (await world.task(task.id)).state is S.CANCELLED
    assert await world.states(task.id) == [("state.cancelled", "cancelled by @Codertocat")]
    assert (await world.run(task.id)).state == "abandoned"
    assert (await world.status_job(task.id)).generation == status_before
    assert len(await world.store.jobs(kind=STOP)) == 1
    assert len(await world.destroys()) == 1
    world.clock.now += 16  # the destroy waits for the graceful stop
    await world.settle()
    assert world.runner.stopped == [world.machine(run)]
    assert world.runner.destroyed == [world.machine(run)]


@pytest.mark.parametrize("elsewhere", ["cancelled without a release", "retried meanwhile"])
async def test_a_run_whose_task_moved_on_is_abandoned_and_its_machine_destroyed(
        world: Watch, elsewhere: str) -> None:
    task, run = await world.running()
    await world.store.finish_task(task.id, expected=[S.RUNNING], target=S.CANCELLED,
                                  message="cancelled by @Codertocat")
    if elsewhere == "retried meanwhile":
        assert await world.store.retry(task.id) == 2
    before = await world.store.task_events(task.id)
    renders = await world.renders(task.id)

    await world.tick()
    await world.tick()

    assert (await world.store.get_run(run.id)).state == "abandoned"  # type: ignore[union-attr]
    assert await world.store.task_events(task.id) == before
    assert (await world.task(task.id)).state is (
        S.QUEUED if elsewhere == "retried meanwhile" else S.CANCELLED)
    assert await world.renders(task.id) == renders
    await world.settle()
    assert world.runner.destroyed == [world.machine(run)]


# --- 7. a completion that arrives first ------------------------------------------------------


async def _complete(world: Watch, run: AgentRun) -> None:
    """What the complete callback does: close the run, move the task, release the machine."""
    assert await world.store.complete_run(
        run, result={"status": "succeeded"}, target=S.PUBLISHING,
        message="the agent finished; publishing its changes",
        job=("publish", f"publish:{run.task_id}:{run.attempt}", {"changeset": {}}))
    await world.launcher.release(run.id, run.machine_id, task_id=run.task_id)


async def test_a_completion_just_before_the_tick_changes_nothing(world: Watch) -> None:
    task, run = await world.running()
    world.clock.now += HEARTBEAT + 1  # silent long enough, had it not just finished
    world.runner.set(world.machine(run), "exited", exit_code=0)
    await _complete(world, run)
    events = await world.store.task_events(task.id)
    jobs = await world.store.jobs()

    await world.tick()

    assert (await world.task(task.id)).state is S.PUBLISHING
    assert await world.store.task_events(task.id) == events
    assert await world.store.jobs() == jobs  # no status job re-armed either
    assert (await world.run(task.id)).state == "completed"


async def test_a_completion_landing_mid_tick_keeps_its_result(world: Watch) -> None:
    task, run = await world.running()
    world.clock.now += HEARTBEAT + 1

    async def completes(machine_id: str) -> None:
        world.runner.on_state = None
        await _complete(world, run)

    world.runner.on_state = completes
    renders = await world.renders(task.id)
    await world.tick()

    assert (await world.task(task.id)).state is S.PUBLISHING
    assert await world.states(task.id) == [
        ("state.publishing", "the agent finished; publishing its changes")]
    assert (await world.run(task.id)).state == "completed"
    assert await world.renders(task.id) == renders + 1  # the completion's, not the watchdog's
    assert len(await world.destroys()) == 1


# --- what the requester sees -----------------------------------------------------------------


async def test_the_requester_hears_once(tmp_path: Path, pem: str) -> None:
    async with open_world(tmp_path, pem) as world:
        task = await world.record("issue_comment", world.payload("@porter fix the typo"))
        await world.store.update_task(task.id, authorized_at=world.clock.now)
        await world.runtime.launcher.start(task)  # the launch job resolves the base on GitHub
        await world.drain()
        run = await world.run(task.id)
        assert run.machine_id is not None
        await world.store.run_contact(run, stage="agent")

        def watchdog() -> Watchdog:
            return Watch(world, world.runtime.jobs).watchdog()

        world.clock.now += HEARTBEAT + 1
        await asyncio.gather(watchdog().tick(), watchdog().tick())
        await world.drain()
        await watchdog().tick()
        await world.drain()

        [status] = world.porter_comments()
        assert status.startswith(
            "❌ Failed while running the agent: the machine stopped reporting for 2m 01s")
        assert status.endswith(marker(task.id))
        assert sorted(r.content for r in world.fake.reactions(task.comment_id)) == ["confused"]
        assert world.runner.destroyed == [run.machine_id]
        assert (await world.task(task.id)).base_sha == world.fake.ref_sha(REPO, "heads/main")
