"""Starting runs, and the durable jobs that launch, stop and destroy their machines.

Which task may start is decided elsewhere (porter/admission.py, by the dispatcher); this module
only starts what it is given, with the keys and Fly account porter/credentials.py picks. A task
with no key its agent accepts fails here, before any machine or token exists.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from porter.admission import Limits
from porter.credentials import Credentials, Refusal
from porter.errors import ConfigError, GitHubError
from porter.github import GitHubApp
from porter.jobs import JobContext, JobKind
from porter.keys import REQUESTER
from porter.models import Job, Task
from porter.payloads import Payload
from porter.repo_settings import Later, Refused, bounds, choose_agent, load
from porter.runners.base import LaunchRequest, Runner
from porter.runners.choice import RunnerChoice
from porter.settings import Settings
from porter.states import RunState, Stage, TaskState
from porter.store import Store
from porter.tokens import new_run_id, run_token, token_hash

log = logging.getLogger(__name__)

LAUNCH, STOP, DESTROY = "machine.launch", "machine.stop", "machine.destroy"


@dataclass(frozen=True)
class LaunchJob(Payload):
    """Start the machine of a run that is `launching`."""

    kind = LAUNCH
    run_id: str


@dataclass(frozen=True)
class _MachineJob(Payload):
    machine_id: str
    owner: int | None = None  # whose Fly account holds it (runs.runner_owner); None: operator

    def dump(self) -> dict[str, object]:
        # The operator's machines keep the payload they always had.
        return {k: v for k, v in super().dump().items() if k != "owner" or v is not None}


@dataclass(frozen=True)
class StopJob(_MachineJob):
    kind = STOP


@dataclass(frozen=True)
class DestroyJob(_MachineJob):
    kind = DESTROY


class Launcher:
    def __init__(
        self,
        *,
        store: Store,
        runner: Runner,
        settings: Settings,
        github: GitHubApp | None,
        token_key: bytes,
        credentials: Credentials,
        runners: RunnerChoice | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._runner = runner
        self._credentials = credentials
        self._runners = runners or RunnerChoice(runner, open_fly=credentials.fly,
                                                factory=_no_user_runners)
        self._settings = settings
        # Held again where each task starts, across every replica (RunStore.start_run).
        self._limits = Limits(total=settings.max_live_tasks,
                              per_installation=settings.max_live_per_installation)
        self._bounds = bounds(settings)  # what a repository's .porter.yml may ask for
        self._github = github
        self._token_key = token_key
        self._clock = clock

    def kinds(self) -> dict[str, JobKind]:
        return {
            LAUNCH: JobKind(run=self._launch, on_give_up=self._launch_gave_up, writes=False),
            STOP: JobKind(run=self._stop, writes=False),
            DESTROY: JobKind(run=self._destroy, writes=False),
        }

    async def start(self, task: Task) -> bool:
        """queued → starting, with its run and the job that launches its machine, committed
        together; False when the task had moved on meanwhile, or could not start for want of
        keys, an invalid `.porter.yml` or an agent it does not allow (then it failed, and its
        status comment says why). The repository's file may change the agent and model first."""
        fields: dict[str, Any] = {}  # what the repository's file changes about the task
        if self._github is not None:  # without the App the dispatcher starts nothing
            repo = await load(self._github, task, limits=self._bounds)
            if isinstance(repo, Later):
                log.warning("task %s: .porter.yml could not be read, will retry: %s",
                            task.id, repo.message)
                return False
            if isinstance(repo, Refused):
                return await self._refuse(task, repo.reason)
            # Read once per attempt, here: the spec builds on what the default branch said at
            # dispatch. A retry's earlier config is replaced (null: the file has gone since).
            if repo.config is not None or "repo_config" in task.context:
                await self._store.update_context(task.id, repo_config=repo.config,
                                                 repo_config_commit=repo.commit)
            # Before the keys are chosen: which keys fit depends on the agent.
            picked = choose_agent(task, repo.config, default_agent=self._settings.default_agent)
            if isinstance(picked, Refused):
                return await self._refuse(task, picked.reason)
            if (picked.agent, picked.model) != (task.agent, task.model):
                fields.update(agent=picked.agent, model=picked.model)
            if not task.is_pull_request and repo.commit is not None:
                # An issue's task builds on the commit its file was read at: the same one, and
                # the launch need not ask GitHub for the branch again.
                fields.update(base_ref=repo.branch, base_sha=repo.commit)
            task = dataclasses.replace(task, **fields)  # the keys are chosen for this agent
        choice = await self._credentials.choose(task, runner=self._runner.name)
        if isinstance(choice, Refusal):
            return await self._refuse(task, choice.reason)
        # Recorded before the run exists, with what the file changed, in one write: the spec and
        # the launch job read whose keys and Fly account this attempt uses from the task, never
        # deciding again.
        await self._store.update_task(task.id, key_source=choice.key_source,
                                      fly_source=choice.fly_source, **fields)
        run_id = new_run_id()
        token = run_token(self._token_key, run_id)
        return await self._store.start_run(task, run_id=run_id, token_hash=token_hash(token),
                                           runner=self._runner.name,
                                           job=(LAUNCH, f"launch:{run_id}",
                                                LaunchJob(run_id).dump()),
                                           limits=self._limits)

    async def _refuse(self, task: Task, reason: str) -> bool:
        await self._store.finish_task(
            task.id, expected=[TaskState.QUEUED], target=TaskState.FAILED,
            stage=Stage.DISPATCH, reason=reason, message=reason)
        return False

    # -- jobs ---------------------------------------------------------------------------------

    async def _launch(self, ctx: JobContext) -> dict[str, object]:
        run = await self._store.get_run(LaunchJob.of(ctx.job).run_id)
        task = await self._store.get_task(run.task_id) if run else None
        if run is None or task is None or task.state is not TaskState.STARTING \
                or run.state is not RunState.LAUNCHING:
            return {"skipped": True}
        if run.machine_id is None:
            if not task.base_sha:
                await self._resolve_base(task)
            request = LaunchRequest(run_id=run.id, task_id=task.id,
                                    token=run_token(self._token_key, run.id),
                                    porter_url=self._settings.public_url)
            owner = task.requester_id if task.fly_source == REQUESTER else None
            machine = await (await self._runners.of(owner)).launch(request)
            await self._store.set_machine(run.id, machine.id, owner=owner)
            where = " in the requester's Fly app" if owner is not None else ""
            await self._store.add_event(task.id, "machine.started",
                                        f"{self._runner.name} machine {machine.id}{where}")
        return {"run_id": run.id}

    async def runner_of(self, owner: int | None) -> Runner:
        """The runner that reaches a machine of this owner's (None: the operator's)."""
        return await self._runners.of(owner)

    async def aclose(self) -> None:
        await self._runners.aclose()

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
        run = await self._store.get_run(LaunchJob.of(job).run_id)
        if run is None:
            return
        await self._store.abandon_run(run.id)
        await self._store.finish_task(
            run.task_id, expected=[TaskState.STARTING], target=TaskState.FAILED,
            stage=Stage.DISPATCH, reason=f"the machine could not be started: {reason}",
            message=reason)

    async def _stop(self, ctx: JobContext) -> dict[str, object]:
        job = StopJob.of(ctx.job)
        await (await self._runners.of(job.owner)).stop(job.machine_id)
        return {}

    async def _destroy(self, ctx: JobContext) -> dict[str, object]:
        job = DestroyJob.of(ctx.job)
        await (await self._runners.of(job.owner)).destroy(job.machine_id)
        return {}

    async def release(self, run_id: str, machine_id: str | None, *, stop_first: bool = False,
                      task_id: int | None = None) -> None:
        """Make sure a run's machine goes away, durably, through the account that holds it."""
        if machine_id is None:
            return
        run = await self._store.get_run(run_id)
        owner = run.runner_owner if run is not None and run.machine_id == machine_id else None
        if stop_first:
            await self._store.enqueue(STOP, f"stop:{run_id}", StopJob(machine_id, owner).dump(),
                                      task_id=task_id)
        # Re-armed, not deduplicated: a machine still listed after an earlier destroy must go.
        await self._store.enqueue(DESTROY, f"destroy:{run_id}",
                                  DestroyJob(machine_id, owner).dump(),
                                  task_id=task_id, again_when_finished=True,
                                  run_after=self._clock() + (15 if stop_first else 0))


def _no_user_runners(token: str, app: str) -> Runner:
    raise ConfigError("this Porter starts no machines in its users' Fly apps")
