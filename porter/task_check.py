"""A task's GitHub Check Run, kept by the publisher on the commit Porter wrote: queued once the
commit is pushed, in progress while the pull request is opened, completed with the verification's
conclusion (neutral when the repository verifies nothing) and a page with the summary, the
verification table, the cost and a link to the task.

Each step is checkpointed in the publish job's progress, so a rerun neither repeats it nor
creates a second run: a create whose answer was lost is found again before another is made.
A check run is a report about the change, never a reason to hold the change back: when GitHub
refuses it for good (the App lacks `checks: write`, say) the task says so once in its timeline
and publishes without one. Only a failure worth retrying stops the job, to be retried.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from porter.check_runs import (
    CheckOutput,
    complete_check_run,
    create_check_run,
    find_check_run,
    start_check_run,
)
from porter.errors import GitHubError
from porter.github import InstallationClient
from porter.jobs import JobContext
from porter.models import Task
from porter.neutralize import close_fences, neutralize
from porter.pull_text import HEADLINES
from porter.status import COST_SOURCES, duration
from porter.store import Store
from porter.verification import Conclusion, Verification, check_conclusion
from porter.verification_markdown import markdown_table

log = logging.getLogger(__name__)

CHECK = "check"  # progress: the run's id, "creating" while one is being made, or "skipped"
MAX_SUMMARY = 20_000


@dataclass(frozen=True)
class Facts:
    """What the check's page says beside the verification: the run's summary and cost."""

    summary: str
    cost_usd: float | None
    cost_source: str | None
    duration_s: float | None
    pr_url: str | None = None


def conclusion(verification: Verification | None) -> Conclusion:
    return "neutral" if verification is None else check_conclusion(verification)


def final_output(task: Task, verification: Verification | None, facts: Facts, *,
                 task_url: str) -> CheckOutput:
    """The completed check's page. Pure; every text from the machine is neutralised."""
    if verification is None:
        title = "No verification configured"
    else:
        passed = sum(r.passed for r in verification.results if r.phase == "verify")
        total = sum(r.phase == "verify" for r in verification.results)
        title = f"Verification {HEADLINES[verification.outcome]}: {passed} of {total} " \
            "verify commands passed"
    lines = [f"Porter task [#{task.id}]({task_url}) for @{neutralize(task.requester)}, "
             f"{task.agent}" + (f" ({neutralize(task.model)})" if task.model else "")]
    if facts.pr_url:
        lines.append(f"Pull request: {facts.pr_url}")
    if facts.duration_s is not None:
        lines.append(f"Time: {duration(facts.duration_s)}")
    if facts.cost_usd is not None:
        source = COST_SOURCES.get(facts.cost_source or "")
        lines.append(f"Cost: ${facts.cost_usd:.2f}" + (f" ({source})" if source else ""))
    text = close_fences(neutralize(facts.summary.strip()[:MAX_SUMMARY]))
    summary = "\n\n".join(["\n".join(f"- {line}" for line in lines),
                           text or "_The agent left no summary._"])
    table = markdown_table(verification, neutralize=neutralize) if verification is not None \
        else "This repository's `.porter.yml` sets no `verify` commands."
    return CheckOutput(title=title, summary=summary, text=table)


class TaskCheck:
    def __init__(self, *, store: Store, public_url: str, app_id: int | None) -> None:
        self._store = store
        self._public_url = public_url.rstrip("/")
        self._app_id = app_id

    def task_url(self, task: Task) -> str:
        return f"{self._public_url}/tasks/{task.id}"

    async def queued(self, ctx: JobContext, gh: InstallationClient, task: Task,
                     commit: str) -> None:
        """The run on `commit`, once; a content creation, paced as one."""
        state = ctx.job.progress.get(CHECK)
        if isinstance(state, int) or state == "skipped":
            return
        try:
            found = None
            if state == "creating":  # an earlier try may have made it before it was lost
                found = await find_check_run(gh, task.repo, head_sha=commit,
                                             external_id=str(task.id), app_id=self._app_id)
            if found is None:
                await ctx.save(**{CHECK: "creating"})
                found = await create_check_run(
                    gh, task.repo, head_sha=commit, details_url=self.task_url(task),
                    external_id=str(task.id), creating=ctx.creating,
                    output=CheckOutput(title="Queued", summary="Porter is publishing the "
                                       f"change: [task #{task.id}]({self.task_url(task)})."))
        except GitHubError as exc:
            await self._skip(ctx, task, exc)
            return
        await ctx.save(**{CHECK: found.id})

    async def in_progress(self, ctx: JobContext, gh: InstallationClient, task: Task) -> None:
        check_id = ctx.job.progress.get(CHECK)
        if not isinstance(check_id, int) or ctx.job.progress.get("check_started"):
            return
        try:
            await start_check_run(gh, task.repo, check_id, output=CheckOutput(
                title="Opening the pull request", summary="Porter is opening the pull request "
                f"for [task #{task.id}]({self.task_url(task)})."))
        except GitHubError as exc:
            await self._skip(ctx, task, exc)
            return
        await ctx.save(check_started=True)

    async def completed(self, ctx: JobContext, gh: InstallationClient, task: Task,
                        verification: Verification | None, facts: Facts) -> None:
        check_id = ctx.job.progress.get(CHECK)
        if not isinstance(check_id, int) or ctx.job.progress.get("check_done"):
            return
        output = final_output(task, verification, facts, task_url=self.task_url(task))
        try:
            await complete_check_run(gh, task.repo, check_id,
                                     conclusion=conclusion(verification), output=output)
        except GitHubError as exc:
            await self._skip(ctx, task, exc)
            return
        await ctx.save(check_done=True)

    async def abandoned(self, progress: Mapping[str, object], gh: InstallationClient,
                        task: Task, reason: str) -> None:
        """The publish failed for good after the run was made (`progress` is its job's): complete
        it as failed, or it would stay queued on the commit for ever. Best effort: the task's
        failure is what counts."""
        check_id = progress.get(CHECK)
        if not isinstance(check_id, int) or progress.get("check_done"):
            return
        output = CheckOutput(title="Porter did not publish the change",
                             summary=f"{neutralize(reason)}\n\n[Task #{task.id}]"
                             f"({self.task_url(task)})")
        try:
            await complete_check_run(gh, task.repo, check_id, conclusion="failure",
                                     output=output)
        except GitHubError as exc:
            log.warning("task %s: could not complete its check run: %s", task.id, exc.message)

    async def _skip(self, ctx: JobContext, task: Task, exc: GitHubError) -> None:
        if exc.retryable:
            raise exc
        log.warning("task %s: no check run: %s", task.id, exc.message)
        await ctx.save(**{CHECK: "skipped"})
        await self._store.add_event(task.id, "check.skipped",
                                    f"no GitHub check run: {exc.message}"[:500])
