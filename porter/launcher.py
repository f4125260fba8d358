"""Starting runs: who goes next under the limits, and the durable jobs that launch, stop and
destroy machines.

One live task per issue or PR: a follow-up from the same requester waits behind it; anyone else
is told which task is running. Global and per-installation limits keep excess tasks queued in
order until a slot frees up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from porter.errors import ConfigError, GitHubError
from porter.github import GitHubApp
from porter.jobs import JobContext, JobKind
from porter.models import Job, Task
from porter.reporting import Reporter
from porter.runners.base import LaunchRequest, Runner
from porter.settings import Settings
from porter.states import TaskState
from porter.store import Store
from porter.tokens import new_run_id, run_token, token_hash

log = logging.getLogger(__name__)

LAUNCH, STOP, DESTROY = "machine.launch", "machine.stop", "machine.destroy"
LIVE = (TaskState.STARTING, TaskState.RUNNING, TaskState.PUBLISHING)


class Launcher:
    def __init__(
        self,
        *,
        store: Store,
        runner: Runner,
        reporter: Reporter,
        settings: Settings,
        github: GitHubApp | None,
        token_key: bytes,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._runner = runner
        self._reporter = reporter
        self._settings = settings
        self._github = github
        self._token_key = token_key
        self._clock = clock

    def kinds(self) -> dict[str, JobKind]:
        return {
            LAUNCH: JobKind(run=self._launch, on_give_up=self._launch_gave_up, writes=False),
            STOP: JobKind(run=self._stop, writes=False),
            DESTROY: JobKind(run=self._destroy, writes=False),
        }

    async def start_ready(self, ready: list[Task]) -> None:
        """Start as many of the authorized, queued tasks as the limits allow, oldest first."""
        total, per_installation, busy = await self._store.live_count()
        for task in ready:
            where = (task.repo, task.issue_number)
            if where in busy:
                await self._wait_or_refuse(task)
                continue
            installation = task.installation_id or 0
            # `continue`, not `break`: a later task on a busy issue is still answered (queued
            # behind, or refused) while every slot is taken. Order holds: nothing can start.
            if total >= self._settings.max_live_tasks:
                continue
            if per_installation.get(installation, 0) >= self._settings.max_live_per_installation:
                continue
            run_id = new_run_id()
            token = run_token(self._token_key, run_id)
            launch = (LAUNCH, f"launch:{run_id}", {"run_id": run_id})
            if not await self._store.start_run(task, run_id=run_id, token_hash=token_hash(token),
                                               runner=self._runner.name, job=launch):
                continue
            total += 1
            per_installation[installation] = per_installation.get(installation, 0) + 1
            busy.add(where)

    async def admit(self, task: Task) -> bool:
        """Before a task is acknowledged: False (and the requester told why) when another
        person's task holds the issue, so a refused request gets one reply, not a status."""
        other = await self._holder(task)
        if other is None or other.requester == task.requester:
            return True
        await self._wait_or_refuse(task)
        return False

    async def _holder(self, task: Task) -> Task | None:
        live = [t for t in await self._store.tasks_in_states(LIVE)
                if (t.repo, t.issue_number) == (task.repo, task.issue_number) and t.id != task.id]
        return live[0] if live else None

    async def _wait_or_refuse(self, task: Task) -> None:
        other = await self._holder(task)
        if other is None:
            return
        link = f"{self._settings.public_url}/tasks/{other.id}"
        if other.requester == task.requester:
            await self._reporter.reply(
                key=f"waiting:{task.id}", repo=task.repo, installation_id=task.installation_id,
                number=task.issue_number, task_id=task.id,
                body=f"Queued behind task #{other.id} ({link}); it starts when that one ends.")
            return
        reason = (f"task #{other.id} by @{other.requester} is still running here ({link}); "
                  "comment again when it has finished")
        # As the dispatcher refuses: the reply and 😕 (the comment already has 👀) are queued
        # before the task is closed. Both are keyed, so a crash in between repeats nothing,
        # where the other order would leave the requester with silence.
        await self._reporter.reply(
            key=f"busy:{task.id}", repo=task.repo, installation_id=task.installation_id,
            number=task.issue_number, task_id=task.id,
            body=f"@{task.requester}, one task at a time per issue: {reason}.")
        await self._reporter.react(task, "confused")
        await self._store.finish_task(task.id, expected=[TaskState.QUEUED],
                                      target=TaskState.REJECTED, message=reason, reason=reason)

    # -- jobs ---------------------------------------------------------------------------------

    async def _launch(self, ctx: JobContext) -> dict[str, object]:
        run = await self._store.get_run(str(ctx.job.payload["run_id"]))
        task = await self._store.get_task(run.task_id) if run else None
        if run is None or task is None or task.state is not TaskState.STARTING \
                or run.state != "launching":
            return {"skipped": True}
        if run.machine_id is None:
            if not task.base_sha:
                await self._resolve_base(task)
            request = LaunchRequest(run_id=run.id, task_id=task.id,
                                    token=run_token(self._token_key, run.id),
                                    porter_url=self._settings.public_url)
            machine = await self._runner.launch(request)
            await self._store.set_machine(run.id, machine.id)
            await self._store.add_event(task.id, "machine.started",
                                        f"{self._runner.name} machine {machine.id}")
        return {"run_id": run.id}

    async def _resolve_base(self, task: Task) -> None:
        """What the agent builds on: the default branch, or the head of a same-repo PR."""
        if self._github is None or task.installation_id is None:
            raise ConfigError("the GitHub App is not configured")
        client = self._github.installation(task.installation_id)
        if task.is_pull_request:
            pull = await client.pull(task.repo, task.issue_number)
            if pull.head_repo == task.repo:
                await self._store.update_context(task.id, target_branch=pull.head_ref)
                await self._store.update_task(task.id, base_ref=pull.base_ref,
                                              base_sha=pull.head_sha)
                return
            # A fork's branch is not ours to push to: work from the PR's base instead.
            await self._store.update_context(task.id, fork=pull.head_repo or "unknown")
            base_ref = pull.base_ref
        else:
            base_ref = await client.default_branch(task.repo)
        sha = await client.ref_sha(task.repo, f"heads/{base_ref}")
        if sha is None:
            raise GitHubError(f"branch {base_ref} does not exist", status=404)
        await self._store.update_task(task.id, base_ref=base_ref, base_sha=sha)

    async def _launch_gave_up(self, job: Job, reason: str) -> None:
        run = await self._store.get_run(str(job.payload["run_id"]))
        if run is None:
            return
        await self._store.abandon_run(run.id)
        await self._store.finish_task(
            run.task_id, expected=[TaskState.STARTING], target=TaskState.FAILED,
            stage="dispatch", reason=f"the machine could not be started: {reason}",
            message=reason)

    async def _stop(self, ctx: JobContext) -> dict[str, object]:
        await self._runner.stop(str(ctx.job.payload["machine_id"]))
        return {}

    async def _destroy(self, ctx: JobContext) -> dict[str, object]:
        await self._runner.destroy(str(ctx.job.payload["machine_id"]))
        return {}

    async def release(self, run_id: str, machine_id: str | None, *, stop_first: bool = False,
                      task_id: int | None = None) -> None:
        """Make sure a run's machine goes away, durably."""
        if machine_id is None:
            return
        if stop_first:
            await self._store.enqueue(STOP, f"stop:{run_id}", {"machine_id": machine_id},
                                      task_id=task_id)
        # Re-armed, not deduplicated: a machine still listed after an earlier destroy must go.
        await self._store.enqueue(DESTROY, f"destroy:{run_id}", {"machine_id": machine_id},
                                  task_id=task_id, again_when_finished=True,
                                  run_after=self._clock() + (15 if stop_first else 0))
