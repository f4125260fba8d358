"""Reconciliation: every run that stops talking gets exactly one ending, and the requester hears.

`tick(now)` is one pass; the runtime calls it on an interval. Every change it makes is a
compare-and-set, so two passes racing make one transition and one report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from porter.artifacts import ArtifactPruner
from porter.errors import PorterError
from porter.launcher import Launcher
from porter.models import AgentRun
from porter.repo_settings import task_timeout
from porter.retention import Pruner
from porter.runners.base import Machine, Runner
from porter.settings import Settings
from porter.states import ON_MACHINE, RunState, Stage, TaskState
from porter.status import duration
from porter.store import Store

log = logging.getLogger(__name__)

EXIT_GRACE = 10.0  # a machine that just exited may have a completion still in flight


class Watchdog:
    def __init__(
        self,
        *,
        store: Store,
        runner: Runner,
        launcher: Launcher,
        settings: Settings,
        clock: Callable[[], float] = time.time,
        exit_grace: float = EXIT_GRACE,
        on_action: Callable[[str], None] = lambda action: None,  # porter/metrics.py counts
    ) -> None:
        self._acted = on_action
        self._store = store
        self._runner = runner
        self._launcher = launcher
        self._settings = settings
        self._clock = clock
        self._exit_grace = exit_grace
        # run id → when this watchdog first saw its machine stopped. The grace counts from the
        # exit, not the last heartbeat: heartbeats are 15 s apart, longer than the grace.
        self._stopped_since: dict[str, float] = {}
        self._pruner = Pruner.from_settings(store, settings)  # old logs of finished tasks
        self._artifacts = ArtifactPruner(store, days=settings.artifact_retention_days)

    async def tick(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        live = await self._store.live_runs()
        for run in live:
            try:
                await self._check(run, now)
            except Exception:
                log.exception("watchdog: checking run %s failed", run.id)
        still = {run.id for run in await self._store.live_runs()}
        self._stopped_since = {k: v for k, v in self._stopped_since.items() if k in still}
        try:
            await self._sweep_orphans()
        finally:  # a runner outage (listing machines failed) must not stop the pruning too
            await self._pruner.tick(now)
            await self._artifacts.tick(now)

    async def _check(self, run: AgentRun, now: float) -> None:
        task = await self._store.get_task(run.task_id)
        if task is None:
            return
        if task.state.terminal or task.attempt != run.attempt:
            # Cancelled or failed elsewhere; the machine must not outlive its task.
            self._acted("superseded")
            await self._end(run)
            return
        # The run is this attempt: a retry's deadline starts when it does, not at attempt 1
        # (task.started_at is kept across retries).
        # The repository's .porter.yml may set a shorter limit than the operator's.
        deadline = task_timeout(task, self._settings)
        if now - run.created_at > deadline:
            self._acted("timed_out")
            await self._fail(run, TaskState.TIMED_OUT, Stage.AGENT,
                             f"it ran past the {duration(deadline)} limit")
            return
        last = run.last_heartbeat_at or run.created_at
        silent = now - last
        limit = self._settings.heartbeat_timeout * (1 if run.state is RunState.RUNNING else 3)
        # A machine that never called back failed to start; one that did failed in the agent.
        stage = Stage.AGENT if run.state is RunState.RUNNING else Stage.DISPATCH
        machine = await self._machine(run)
        if machine is not None and machine.state in ("exited", "gone"):
            since = self._stopped_since.setdefault(run.id, now)
            if now - since > self._exit_grace:
                detail = machine.detail or (
                    f"it exited with code {machine.exit_code}" if machine.exit_code is not None
                    else "it is gone")
                self._acted("exited")
                await self._fail(run, TaskState.FAILED, stage,
                                 f"the machine stopped without reporting back: {detail}")
                return
        if silent > limit:
            why = (f"the machine stopped reporting for {duration(silent)}" if stage is Stage.AGENT
                   else f"the machine did not start within {duration(silent)}")
            self._acted("silent")
            await self._fail(run, TaskState.FAILED, stage, why)

    async def _machine(self, run: AgentRun) -> Machine | None:
        """The machine now; None when unknown, so an unreachable runner (a Fly outage) never
        hides silence: the heartbeat limit still ends the run."""
        if run.machine_id is None:
            return None
        try:
            # A machine in a requester's own Fly app is read through their account.
            runner = self._runner if run.runner_owner is None \
                else await self._launcher.runner_of(run.runner_owner)
            return await runner.state(run.machine_id)
        except PorterError as exc:
            log.warning("watchdog: state of machine %s unknown: %s", run.machine_id, exc)
            return None

    async def _fail(self, run: AgentRun, target: TaskState, stage: Stage, reason: str) -> None:
        moved = await self._store.finish_task(run.task_id, expected=ON_MACHINE, target=target,
                                              stage=stage, reason=reason, message=reason)
        await self._end(run)
        if moved is not None:
            log.info("watchdog: task %s %s: %s", run.task_id, target.value, reason)

    async def _end(self, run: AgentRun) -> None:
        await self._store.abandon_run(run.id)
        await self._launcher.release(run.id, run.machine_id, stop_first=False,
                                     task_id=run.task_id)

    async def _sweep_orphans(self) -> None:
        """Machines Porter started that are no live run's machine are destroyed.

        A live run whose machine is not recorded yet may be mid-launch: its machines are kept.
        A second machine of a run (a launch retried after a crash) is an orphan too.
        """
        for machine in await self._runner.list_owned():
            # Read after listing: a run started during this pass may already own the machine.
            run = await self._store.get_run(machine.run_id) if machine.run_id else None
            own = run is not None and run.machine_id in (None, machine.id)
            if own and run is not None and run.live:
                continue
            log.info("watchdog: destroying orphan machine %s", machine.id)
            self._acted("orphan")
            # The run's own machine shares the run's destroy job (the one `_end` queued); any
            # other is keyed by itself, or it would be folded into a job for another machine.
            await self._launcher.release(machine.run_id if own and machine.run_id
                                         else machine.id, machine.id)
