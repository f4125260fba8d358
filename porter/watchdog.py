"""Reconciliation: every run that stops talking gets exactly one ending, and the requester hears.

`tick(now)` is one pass; the runtime calls it on an interval. Every change it makes is a
compare-and-set, so two passes racing make one transition and one report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from porter.launcher import LAUNCH, Launcher
from porter.models import AgentRun
from porter.runners.base import Runner
from porter.settings import Settings
from porter.states import TaskState
from porter.status import duration
from porter.store import Store

log = logging.getLogger(__name__)

EXIT_GRACE = 10.0  # a machine that just exited may have a completion still in flight
LIVE_TASK = [TaskState.STARTING, TaskState.RUNNING]


class Watchdog:
    def __init__(
        self,
        *,
        store: Store,
        runner: Runner,
        launcher: Launcher,
        settings: Settings,
        task_changed: Callable[[int], Awaitable[None]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._runner = runner
        self._launcher = launcher
        self._settings = settings
        self._task_changed = task_changed
        self._clock = clock

    async def tick(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        live = await self._store.live_runs()
        for run in live:
            try:
                await self._check(run, now)
            except Exception:
                log.exception("watchdog: checking run %s failed", run.id)
        await self._sweep_orphans({run.id for run in await self._store.live_runs()})

    async def _check(self, run: AgentRun, now: float) -> None:
        task = await self._store.get_task(run.task_id)
        if task is None:
            return
        if task.state.terminal or task.attempt != run.attempt:
            # Cancelled or failed elsewhere; the machine must not outlive its task.
            await self._end(run)
            return
        if run.state == "launching" and run.machine_id is None:
            # A crash between starting the run and queueing its launch leaves it here.
            await self._store.enqueue(LAUNCH, f"launch:{run.id}", {"run_id": run.id},
                                      task_id=task.id, installation_id=task.installation_id)
        started = task.started_at or task.created_at
        if now - started > self._settings.task_timeout:
            await self._fail(run, TaskState.TIMED_OUT, "agent",
                             f"it ran past the {duration(self._settings.task_timeout)} limit")
            return
        last = run.last_heartbeat_at or run.created_at
        silent = now - last
        limit = self._settings.heartbeat_timeout * (1 if run.state == "running" else 3)
        machine = await self._runner.state(run.machine_id) if run.machine_id else None
        if machine is not None and machine.state in ("exited", "gone") and silent > EXIT_GRACE:
            detail = machine.detail or (
                f"it exited with code {machine.exit_code}" if machine.exit_code is not None
                else "it is gone")
            await self._fail(run, TaskState.FAILED, "agent",
                             f"the machine stopped without reporting back: {detail}")
            return
        if silent > limit:
            if run.state == "running":
                why = f"the machine stopped reporting for {duration(silent)}"
                stage = "agent"
            else:
                why = f"the machine did not start within {duration(silent)}"
                stage = "dispatch"
            await self._fail(run, TaskState.FAILED, stage, why)

    async def _fail(self, run: AgentRun, target: TaskState, stage: str, reason: str) -> None:
        moved = await self._store.finish_task(run.task_id, expected=LIVE_TASK, target=target,
                                              stage=stage, reason=reason, message=reason)
        await self._end(run)
        if moved is not None:
            log.info("watchdog: task %s %s: %s", run.task_id, target.value, reason)
            await self._task_changed(run.task_id)

    async def _end(self, run: AgentRun) -> None:
        await self._store.abandon_run(run.id)
        await self._launcher.release(run.id, run.machine_id, stop_first=False,
                                     task_id=run.task_id)

    async def _sweep_orphans(self, live: set[str]) -> None:
        """Machines Porter started that belong to no live run are destroyed."""
        for machine in await self._runner.list_owned():
            if machine.run_id not in live:
                log.info("watchdog: destroying orphan machine %s", machine.id)
                await self._launcher.release(machine.run_id or machine.id, machine.id)
