"""The publisher: turns a validated changeset into one commit and one pull request, exactly once.

It runs as a durable job (jobs.py). Every step is idempotent and checkpointed, so a rerun after a
crash or a retried GitHub error skips what is done; before creating anything it looks for what an
interrupted run may already have created (the branch, the PR, the link comment). The agent is
untrusted, so its changeset is validated again here, and Porter, not the machine, writes the commit
through the Git Data API (GitHub signs those: they show Verified). On a pull request's own branch it
only ever fast-forwards: someone else's work is never force-pushed away.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from porter.changesets import REGULAR, Changeset, parse_changeset
from porter.errors import ChangesetError, GitHubError, PorterError
from porter.github import GitHubApp, InstallationClient, Pull, TreeEntry
from porter.jobs import JobContext, JobKind
from porter.models import Job, Task
from porter.neutralize import code_span, one_line, plain
from porter.payloads import Payload
from porter.protected_paths import violations
from porter.pull_text import (
    DEFAULT_PREFIX,
    branch_name,
    link_body,
    link_marker,
    pull_body,
    pull_title,
)
from porter.states import Stage, TaskState
from porter.store import Store
from porter.store.llm import METERED, REPORTED
from porter.task_check import Facts, TaskCheck, check_job
from porter.verification import Verification

PUBLISH = "publish"
LINK = "publish.link"


class PublishRefused(PorterError):
    """Porter will not publish this result."""


@dataclass(frozen=True)
class PublishJob(Payload):
    """An attempt's result to publish; the run service writes it as the task turns publishing."""

    kind = PUBLISH
    changeset: dict[str, Any]  # validated only when published: see porter/changesets.py
    summary: str = ""
    cost_usd: float | None = None
    duration_s: float | None = None
    attempt: int | None = None  # jobs of an older Porter carry it in their key only
    verification: dict[str, Any] | None = None  # Verification.dump(), already redacted

    def verified(self) -> Verification | None:
        return None if self.verification is None else Verification.load(self.verification)

    def key(self, task_id: int) -> str:
        return f"publish:{task_id}:{self.attempt}"

    def attempt_of(self, job: Job) -> int | None:
        """The attempt the job belongs to: its own, else the tail of its key."""
        tail = job.key.rsplit(":", 1)[-1]
        return self.attempt if self.attempt is not None else int(tail) if tail.isdigit() else None


@dataclass(frozen=True)
class LinkJob(Payload):
    """The link comment for a PR a task opened."""

    kind = LINK
    pr_number: int
    pr_url: str

    def key(self, task: Task) -> str:
        return f"link:{task.id}:{task.attempt}"


def publish_job(task: Task, payload: PublishJob) -> tuple[str, str, dict[str, Any]]:
    """The (kind, key, payload) that publishes this attempt of `task`, once per attempt."""
    return PUBLISH, payload.key(task.id), payload.dump()


def _agent_cost(task: Task, payload: PublishJob) -> dict[str, Any]:
    """The cost fields to set from the agent's report: none when Porter metered the task's model
    calls itself (porter/gateway/metering.py), whose sum is already the task's cost."""
    if task.cost_source == METERED:
        return {}
    cost = payload.cost_usd
    reported = float(cost) if isinstance(cost, int | float) else None
    return {"cost_usd": reported, "cost_source": REPORTED if reported is not None else None}


def _facts(task: Task, payload: PublishJob, *, pr_url: str | None = None) -> Facts:
    """What the pull request and the check run say of the run: summary, cost, time."""
    cost = _agent_cost(task, payload)
    spent = payload.duration_s
    return Facts(summary=str(payload.summary or ""), pr_url=pr_url,
                 cost_usd=cost.get("cost_usd", task.cost_usd),
                 cost_source=cost.get("cost_source", task.cost_source),
                 duration_s=float(spent) if isinstance(spent, int | float) else None)


# -- the job ----------------------------------------------------------------------------------


class Publisher:
    def __init__(self, *, store: Store, github: GitHubApp, public_url: str, allow_workflows: bool,
                 clock: Callable[[], float] = time.time,
                 mention: str = "porter", app_id: int | None = None) -> None:
        self._store = store
        self._github = github
        self._check = TaskCheck(store=store, github=github, public_url=public_url,
                                app_id=app_id)
        self._public_url = public_url.rstrip("/")
        self._allow_workflows = allow_workflows
        self._clock = clock
        self._mention = mention

    def kinds(self) -> dict[str, JobKind]:
        return {PUBLISH: JobKind(run=self.run, on_give_up=self.gave_up),
                LINK: JobKind(run=self.link), **self._check.kinds()}

    async def link(self, ctx: JobContext) -> dict[str, object]:
        """The comment on the issue that links the PR, once (after the PR, at lower priority)."""
        task = await self._store.get_task(ctx.job.task_id) if ctx.job.task_id else None
        if task is None or task.installation_id is None:
            return {"skipped": "the task is gone"}
        p = LinkJob.of(ctx.job)
        gh = self._github.installation(task.installation_id)
        comment_id = await self._link_comment(ctx, gh, task, task.installation_id, p.pr_number,
                                              p.pr_url)
        return {"comment_id": comment_id}

    async def run(self, ctx: JobContext) -> dict[str, object]:
        task = await self._task(ctx.job)
        if task is None or task.state is not TaskState.PUBLISHING:
            return {"skipped": "the task is not publishing this attempt"}
        try:
            return await self._publish(ctx, task)
        except (ChangesetError, PublishRefused) as exc:
            await self._store.transition(task.id, expected=TaskState.PUBLISHING,
                                         target=TaskState.FAILED, stage=Stage.PUBLISH,
                                         reason=one_line(exc.message))
            return {"refused": exc.message}

    async def gave_up(self, job: Job, reason: str) -> None:
        task = await self._task(job)
        if task is None or task.state is not TaskState.PUBLISHING:
            return
        await self._store.transition(task.id, expected=TaskState.PUBLISHING,
                                     target=TaskState.FAILED, stage=Stage.PUBLISH,
                                     reason=one_line(reason))

    async def _task(self, job: Job) -> Task | None:
        """The job's task, unless it moved on to a later attempt: a stale job changes nothing."""
        if job.task_id is None:
            return None
        task = await self._store.get_task(job.task_id)
        if task is None or PublishJob.of(job).attempt_of(job) not in (None, task.attempt):
            return None
        return task

    async def _publish(self, ctx: JobContext, task: Task) -> dict[str, object]:
        payload = PublishJob.of(ctx.job)
        changeset = parse_changeset(payload.changeset, allow_workflows=self._allow_workflows)
        if task.base_sha is None or changeset.base_sha != task.base_sha.lower():
            given = (task.base_sha or "none")[:12]
            raise PublishRefused(
                f"the agent's changes are based on commit {changeset.base_sha[:12]}, not on "
                f"{given} which Porter gave it"
            )
        if task.installation_id is None:
            raise PublishRefused("the task has no GitHub App installation to publish with")
        config = task.context.get("repo_config") or {}
        if touched := violations(changeset.paths, config.get("protected_paths") or ()):
            shown = ", ".join(f"{code_span(path)} ({code_span(pattern)})"
                              for path, pattern in touched[:5])
            more = f" and {len(touched) - 5} more" if len(touched) > 5 else ""
            raise PublishRefused(f"the agent changed paths this repository's .porter.yml "
                                 f"protects: {shown}{more}")
        gh = self._github.installation(task.installation_id)
        target = task.context.get("target_branch")
        branch = str(target) if target else branch_name(
            task.id, str(task.context.get("title") or "") or task.instruction,
            prefix=str(config.get("branch_prefix") or DEFAULT_PREFIX))
        progress = ctx.job.progress

        commit = progress.get("commit")
        if not isinstance(commit, str):
            commit = await self._commit(gh, task.repo, changeset)
            await ctx.save(commit=commit, branch=branch)
        if not progress.get("pushed"):
            if target:
                await self._fast_forward(gh, task, branch, commit)
            else:
                await self._point_branch(gh, task.repo, branch, commit)
            await ctx.save(pushed=True)
            # Recorded at once, so a task that fails later still shows what it published.
            await self._store.update_task(task.id, branch=branch, commit_sha=commit)

        if target:
            pr_number = task.issue_number
            pr_url = str(task.context.get("issue_url") or "") or (
                await gh.pull(task.repo, pr_number)).html_url
        else:
            if "pr_number" not in progress:
                await ctx.creating()  # content creation, paced per installation (porter/pacing.py)
                pull = await self._open_pull(gh, task, branch, changeset, payload,
                                             draft=bool(config.get("draft")))
                await ctx.save(pr_number=pull.number, pr_url=pull.html_url)
                await self._store.update_task(task.id, pr_number=pull.number, pr_url=pull.html_url)
            pr_number, pr_url = int(progress["pr_number"]), str(progress["pr_url"])
            # The PR says `Closes #N`, which GitHub shows on the issue: the link comment is a
            # courtesy, a job of its own, so the installation's next PR need not wait for it.
            link = LinkJob(pr_number=pr_number, pr_url=pr_url)
            await self._store.enqueue(LINK, link.key(task), link.dump(), task_id=task.id,
                                      installation_id=task.installation_id)

        await self._enqueue_check(task, payload, commit=commit, pr_url=pr_url)
        verified = payload.verified()
        if verified is not None or "verification" in task.context:  # an earlier attempt's goes
            # The status comment says it too.
            await self._store.update_context(
                task.id, verification=verified.outcome if verified else None)
        await ctx.save(outcome="succeeded")
        await self._store.update_task(
            task.id, branch=branch, commit_sha=commit, pr_number=pr_number, pr_url=pr_url,
            files_changed=len(changeset.files), summary=str(payload.summary or ""),
            finished_at=self._clock(), **_agent_cost(task, payload),
        )
        message = (f"pushed {commit[:7]} to {branch}" if target else f"opened #{pr_number}")
        await self._store.transition(
            task.id, expected=TaskState.PUBLISHING, target=TaskState.SUCCEEDED, message=message,
            data={"pr_url": pr_url, "commit": commit, "branch": branch},
        )
        return {"pr_url": pr_url, "commit": commit}

    async def _enqueue_check(self, task: Task, payload: PublishJob, *, commit: str,
                             pr_url: str) -> None:
        """The task's Check Run, a job of its own after this one: the pull request is open
        before GitHub hears of the check, and the check's page can link it."""
        await self._store.enqueue(*check_job(task, commit=commit,
                                             facts=_facts(task, payload, pr_url=pr_url),
                                             verification=payload.verification),
                                  task_id=task.id, installation_id=task.installation_id)

    async def _commit(self, gh: InstallationClient, repo: str, changeset: Changeset) -> str:
        base_tree, _ = await gh.commit_tree(repo, changeset.base_sha)
        entries: list[TreeEntry] = []
        # Deletions first: "delete a, write a/b" swaps a file for a directory; the reverse order
        # would delete the new directory again.
        for change in sorted(changeset.files, key=lambda f: not f.deleted):
            if change.content is None:
                entries.append(TreeEntry(change.path, REGULAR, None))
            else:
                blob = await gh.create_blob(repo, change.content)
                entries.append(TreeEntry(change.path, change.mode or REGULAR, blob))
        tree = await gh.create_tree(repo, base_tree, entries)
        if tree == base_tree:
            raise PublishRefused("the agent's changes leave every file as it was; "
                                 "there is nothing to commit")
        # The message is the agent's: a `Fixes #2` in it would close #2 once the PR merges.
        return await gh.create_commit(repo, message=plain(changeset.message), tree=tree,
                                      parents=[changeset.base_sha])

    async def _point_branch(self, gh: InstallationClient, repo: str, branch: str,
                            commit: str) -> None:
        """Porter's own branch: create it, or move it from an earlier attempt's commit."""
        ref = f"heads/{branch}"
        current = await gh.ref_sha(repo, ref)
        if current == commit:
            return
        if current is None:
            try:
                await gh.create_ref(repo, ref, commit)
                return
            except GitHubError as exc:
                if exc.status != 422:  # 422: it appeared meanwhile; take it over below
                    raise
        await gh.update_ref(repo, ref, commit, force=True)

    async def _fast_forward(self, gh: InstallationClient, task: Task, branch: str,
                            commit: str) -> None:
        """Someone else's branch: only ever fast-forward from the commit the agent started at."""
        ref = f"heads/{branch}"
        current = await gh.ref_sha(task.repo, ref)
        if current == commit:
            return
        if current is None:
            raise PublishRefused(f"the branch {code_span(branch)} no longer exists")
        moved = PublishRefused(
            f"the branch {code_span(branch)} moved while the agent worked; Porter never "
            f"force-pushes — `@{self._mention} retry` to start from its new head"
        )
        # A branch reset to an older commit would fast-forward, but it would bring back what its
        # owner removed: anything but the agent's starting point counts as moved.
        if current != task.base_sha:
            raise moved
        try:
            await gh.update_ref(task.repo, ref, commit, force=False)
        except GitHubError as exc:
            if exc.status == 422:  # pushed to between our read and our write
                raise moved from None
            raise

    async def _open_pull(self, gh: InstallationClient, task: Task, branch: str,
                         changeset: Changeset, payload: PublishJob, *, draft: bool) -> Pull:
        existing = await gh.find_pull(task.repo, branch)
        if existing is not None and existing.state == "open":
            return existing  # an earlier attempt's, or a crashed run's whose answer was lost
        facts = _facts(task, payload)
        body = pull_body(
            task, changeset, summary=facts.summary, cost_usd=facts.cost_usd,
            cost_source=facts.cost_source, duration_s=facts.duration_s,
            public_url=self._public_url, verification=payload.verified(),
        )
        base = task.base_ref or await gh.default_branch(task.repo)
        try:
            return await gh.create_pull(task.repo, title=pull_title(task), head=branch,
                                        base=base, body=body, draft=draft)
        except GitHubError as exc:
            if exc.status == 422:  # "already exists": a request we gave up on still landed
                again = await gh.find_pull(task.repo, branch)
                if again is not None and again.state == "open":
                    return again
            raise

    async def _link_comment(self, ctx: JobContext, gh: InstallationClient, task: Task,
                            installation_id: int, pr_number: int, pr_url: str) -> int:
        # Only this App's own comments count: a planted marker must not silence the link.
        marker = link_marker(task.id)
        for comment in await self._github.own_comments(installation_id, task.repo,
                                                       task.issue_number):
            if marker in comment.body and pr_url in comment.body:
                return comment.id
        await ctx.creating(cosmetic=True)  # a courtesy: waits while the installation's PRs go first
        body = link_body(task, pr_number=pr_number, pr_url=pr_url)
        return (await gh.create_comment(task.repo, task.issue_number, body)).id
