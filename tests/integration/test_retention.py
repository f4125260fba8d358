"""Retention: the run logs, task events and machine log files of tasks finished long ago go;
a live or queued task keeps its history whatever its age, newer history stays, task rows stay.

A real store (a SQLite file, then a PostgreSQL database: `store_database`), moved through its
states as Porter moves it, and the watchdog's pruner on a clock the test turns.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from porter.models import AgentRun, Task
from porter.retention import WINDOWS_PER_TICK, Pruner
from porter.settings import Settings
from porter.states import TaskState
from porter.store import Store
from tests.conftest import trigger
from tests.fakes.clock import Clock
from tests.fakes.world import open_world

S = TaskState
DAY = 86400.0
HOUR = 3600.0


@dataclass
class History:
    """What one task left behind: its row, its run, and its machine's log file."""

    task: Task
    run: AgentRun
    file: Path


@dataclass
class Porter:
    store: Store
    clock: Clock
    runs: Path
    made: int = 0

    async def task(self, *, finish: bool, chunks: int = 2) -> History:
        """A task whose machine started, logged `chunks` chunks and (with `finish`) failed,
        all at the clock's current time; its machine log file last written then too."""
        task = await self.queued()
        run_id = f"run-{self.made}"
        assert await self.store.start_run(task, run_id=run_id, token_hash="h", runner="local",
                                          job=("machine.launch", f"launch:{run_id}", {}))
        run = await self.store.current_run(task.id)
        assert run is not None
        await self.store.run_contact(run, stage="agent", message="editing files")
        for seq in range(chunks):
            assert await self.store.append_log(run, seq=seq, text=f"chunk {seq}\n",
                                               max_bytes=1 << 20)
        if finish:
            await self.fail(run)
        file = self.runs / f"{run_id}.log"
        file.write_text("machine output\n")
        os.utime(file, (self.clock.now, self.clock.now))
        return History(task, run, file)

    async def queued(self) -> Task:
        self.made += 1
        [result] = await self.store.record_triggers(
            [trigger(f"d-{self.made}", 1000 + self.made)], default_agent="claude")
        assert result.task_id is not None
        task = await self.store.get_task(result.task_id)
        assert task is not None
        return task

    async def fail(self, run: AgentRun) -> None:
        assert await self.store.complete_run(run, result={}, target=S.FAILED,
                                             message="the agent gave up", stage="agent",
                                             reason="the agent gave up")

    async def logs(self, history: History) -> list[str]:
        return [text for _, text in await self.store.run_logs(history.run.id)]

    async def events(self, task: Task) -> list[str]:
        return [event.kind for event in await self.store.task_events(task.id)]

    async def state(self, task: Task) -> TaskState | None:
        found = await self.store.get_task(task.id)
        return found.state if found else None


@pytest.fixture
async def porter(tmp_path: Path, store_database: Path | str) -> AsyncIterator[Porter]:
    clock = Clock()
    store = await Store.open(store_database, clock=clock)
    (tmp_path / "runs").mkdir()
    try:
        yield Porter(store, clock, tmp_path / "runs")
    finally:
        await store.close()


def pruner(porter: Porter, days: str = "30", *, window: int | None = None,
           windows: int = WINDOWS_PER_TICK) -> Pruner:
    """The watchdog's pruner, from settings as `porter serve` reads them (with `window`: one
    that looks at fewer rows at a time)."""
    settings = Settings.from_mapping({"PORTER_DATABASE": str(porter.runs.parent / "porter.db"),
                                      "PORTER_RETENTION_DAYS": days})
    if window is None:
        return Pruner.from_settings(porter.store, settings)
    return Pruner(store=porter.store, days=settings.retention_days, runs=porter.runs,
                  window=window, windows=windows)


async def test_old_history_of_finished_tasks_goes_and_everything_else_stays(
    porter: Porter,
) -> None:
    old_finished = await porter.task(finish=True)
    old_live = await porter.task(finish=False)
    old_queued = await porter.queued()
    porter.clock.advance(29 * DAY)
    recent_finished = await porter.task(finish=True)
    porter.clock.advance(2 * DAY)  # the first three are 31 days old, the last one 2 days

    await pruner(porter).tick(porter.clock.now)

    assert await porter.logs(old_finished) == []
    assert await porter.events(old_finished.task) == []
    assert not old_finished.file.exists()
    assert await porter.state(old_finished.task) is S.FAILED  # the task row stays
    assert await porter.logs(old_live) == ["chunk 0\n", "chunk 1\n"]
    assert await porter.events(old_live.task) == ["state.queued", "state.starting",
                                                  "state.running", "stage.agent"]
    assert old_live.file.exists()
    assert await porter.events(old_queued) == ["state.queued"]
    assert await porter.logs(recent_finished) == ["chunk 0\n", "chunk 1\n"]
    assert (await porter.events(recent_finished.task))[-1] == "state.failed"
    assert recent_finished.file.exists()


async def test_a_task_that_finishes_later_loses_its_old_history_at_the_next_hourly_pass(
    porter: Porter,
) -> None:
    live = await porter.task(finish=False)
    porter.clock.advance(31 * DAY)
    watchdog_pruner = pruner(porter)
    await watchdog_pruner.tick(porter.clock.now)
    assert await porter.logs(live) == ["chunk 0\n", "chunk 1\n"]  # live: kept, however old

    await porter.fail(live.run)
    await watchdog_pruner.tick(porter.clock.advance(10 * 60))
    assert await porter.logs(live) == ["chunk 0\n", "chunk 1\n"]  # within the hour: no pass

    await watchdog_pruner.tick(porter.clock.advance(HOUR))
    assert await porter.logs(live) == []
    assert await porter.events(live.task) == ["state.failed"]  # today's event stays
    assert live.file.exists()  # its run ended today, so its machine log is recent


async def test_zero_days_keeps_everything(porter: Porter) -> None:
    finished = await porter.task(finish=True)
    porter.clock.advance(3650 * DAY)
    await pruner(porter, days="0").tick(porter.clock.now)
    assert await porter.logs(finished) == ["chunk 0\n", "chunk 1\n"]
    assert len(await porter.events(finished.task)) == 5
    assert finished.file.exists()


async def test_a_large_backlog_is_pruned_a_few_rows_at_a_time_over_several_ticks(
    porter: Porter,
) -> None:
    finished = [await porter.task(finish=True, chunks=5) for _ in range(4)]
    porter.clock.advance(31 * DAY)
    small = pruner(porter, window=3, windows=2)  # at most 6 rows looked at per tick

    await small.tick(porter.clock.now)
    remaining = [len(await porter.logs(h)) + len(await porter.events(h.task)) for h in finished]
    assert 0 < sum(remaining) < 4 * 10  # some gone, not all: the pass goes on next tick
    assert sum(remaining) >= 4 * 10 - 6

    for _ in range(40):
        await small.tick(porter.clock.advance(5))
    for history in finished:
        assert await porter.logs(history) == []
        assert await porter.events(history.task) == []
        assert not history.file.exists()


async def test_the_watchdog_of_a_running_porter_prunes(tmp_path: Path, pem: str,
                                                     store_database: Path | str) -> None:
    async with open_world(tmp_path, pem, github=False, database=store_database) as world:
        database = world.settings.database_file  # the settings' file: where runs/ is
        assert database is not None
        runs = database.parent / "runs"
        runs.mkdir(exist_ok=True)
        porter = Porter(world.store, world.clock, runs)
        finished = await porter.task(finish=True)
        world.clock.advance(31 * DAY)
        await world.runtime.watchdog.tick(world.clock.now)
        assert await porter.logs(finished) == []
        assert await porter.events(finished.task) == []
        assert not finished.file.exists()
        assert await porter.state(finished.task) is S.FAILED
