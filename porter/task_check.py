"""A task's GitHub Check Run on the commit Porter wrote: queued, in progress, then completed
with the verification's conclusion (neutral when the repository verifies nothing) and a page
with the summary, the verification table, the cost and links to the pull request and the task.

It is a job of its own, enqueued by the publisher once the change is published and run after it
(a lower priority): the pull request never waits for the check's requests, and the check can
link the pull request. Each step is checkpointed in the job's progress, so a rerun neither
repeats it nor creates a second run: a create whose answer was lost is found again before
another is made. When GitHub refuses a check run for good (the App lacks `checks: write`, say)
the task's timeline says so once; a failure worth retrying retries the job.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import asdict, dataclass
from typing import Any

from porter.check_runs import (
    CheckOutput,
    complete_check_run,
    create_check_run,
    find_check_run,
    start_check_run,
)
from porter.errors import GitHubError
from porter.github import GitHubApp, InstallationClient
from porter.jobs import JobContext, JobKind
from porter.models import Task
from porter.neutralize import close_fences, neutralize
from porter.payloads import Payload
from porter.status import COST_SOURCES, duration
from porter.store import Store
from porter.verification import HEADLINES, Conclusion, Verification, check_conclusion
from porter.verification_markdown import markdown_table

log = logging.getLogger(__name__)

CHECK_JOB = "publish.check"
CHECK = "check"  # progress: the run's id, or "creating" while one is being made
MAX_SUMMARY = 20_000


@dataclass(frozen=True)
class Facts:
    """What the check's page says beside the verification: the run's summary and cost."""

    summary: str
    cost_usd: float | None
    cost_source: str | None
    duration_s: float | None
    pr_url: str | None = None


@dataclass(frozen=True)
class CheckJob(Payload):
    """The check run of one published attempt, on the commit it published."""

    kind = CHECK_JOB
    commit: str
    attempt: int
    facts: dict[str, Any]  # Facts, as JSON
    verification: dict[str, Any] | None = None  # Verification.dump(), already redacted

    def key(self, task_id: int) -> str:
        return f"check:{task_id}:{self.attempt}"


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


def check_job(task: Task, *, commit: str, facts: Facts,
              verification: dict[str, Any] | None) -> tuple[str, str, dict[str, Any]]:
    """The (kind, key, payload) of the check run for this attempt of `task`."""
    payload = CheckJob(commit=commit, attempt=task.attempt, facts=asdict(facts),
                       verification=verification)
    return CHECK_JOB, payload.key(task.id), payload.dump()


class TaskCheck:
    def __init__(self, *, store: Store, github: GitHubApp, public_url: str,
                 app_id: int | None) -> None:
        self._store = store
        self._github = github
        self._public_url = public_url.rstrip("/")
        self._app_id = app_id

    def kinds(self) -> dict[str, JobKind]:
        return {CHECK_JOB: JobKind(run=self.run)}

    def task_url(self, task: Task) -> str:
        return f"{self._public_url}/tasks/{task.id}"

    async def run(self, ctx: JobContext) -> dict[str, object]:
        task = await self._store.get_task(ctx.job.task_id) if ctx.job.task_id else None
        if task is None or task.installation_id is None:
            return {"skipped": "the task is gone"}
        payload = CheckJob.of(ctx.job)
        gh = self._github.installation(task.installation_id)
        try:
            check_id = await self._queued(ctx, gh, task, payload.commit)
            if not ctx.job.progress.get("started"):
                await start_check_run(gh, task.repo, check_id, output=CheckOutput(
                    title="Reporting", summary=f"Porter is reporting [task #{task.id}]"
                    f"({self.task_url(task)})."))
                await ctx.save(started=True)
            verification = None if payload.verification is None \
                else Verification.load(payload.verification)
            output = final_output(task, verification, Facts(**payload.facts),
                                  task_url=self.task_url(task))
            done = await complete_check_run(gh, task.repo, check_id,
                                            conclusion=conclusion(verification), output=output)
        except GitHubError as exc:
            if exc.retryable:
                raise
            log.warning("task %s: no check run: %s", task.id, exc.message)
            await self._store.add_event(task.id, "check.skipped",
                                        f"no GitHub check run: {exc.message}"[:500])
            return {"skipped": exc.message}
        return {"check_run": done.id, "conclusion": done.conclusion}

    async def _queued(self, ctx: JobContext, gh: InstallationClient, task: Task,
                      commit: str) -> int:
        """The run on `commit`, made once; a content creation, paced as a cosmetic one."""
        state = ctx.job.progress.get(CHECK)
        if isinstance(state, int):
            return state
        found = None
        if state == "creating":  # an earlier try may have made it before its answer was lost
            found = await find_check_run(gh, task.repo, head_sha=commit,
                                         external_id=str(task.id), app_id=self._app_id)
        if found is None:
            await ctx.save(**{CHECK: "creating"})
            found = await create_check_run(
                gh, task.repo, head_sha=commit, details_url=self.task_url(task),
                external_id=str(task.id),
                # Charged as a courtesy: it leaves the urgent reserve of GitHub's content budget
                # to the pull requests and 👀 that people wait for.
                creating=functools.partial(ctx.creating, cosmetic=True),
                output=CheckOutput(title="Queued", summary="Porter will report "
                                   f"[task #{task.id}]({self.task_url(task)}) here."))
        await ctx.save(**{CHECK: found.id})
        return found.id
