"""What the requester sees on GitHub: reactions, the status comment, replies. All are jobs.

Every write is keyed so it happens once: reactions and replies by key, the status comment by task
(created once, then edited in place; a hidden marker finds it again if Porter crashed between
creating it and recording its id). Markers are looked for only in comments this App wrote: task
ids are easy to guess, and adopting someone else's marker would edit their comment or hide
Porter's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from porter.errors import ConfigError, GitHubError
from porter.github import Comment, GitHubApp, InstallationClient, ReactionContent
from porter.jobs import JobContext, JobKind
from porter.models import Task
from porter.notices import ReactJob, StatusJob
from porter.payloads import Payload
from porter.states import REACT_JOB, STATUS_JOB
from porter.status import marker, render_status
from porter.store import Store

REACT, STATUS, COMMENT = REACT_JOB, STATUS_JOB, "comment"


@dataclass(frozen=True)
class CommentJob(Payload):
    """Post `body` once on an issue or PR; the hidden `marker` finds it again after a crash."""

    kind = COMMENT
    repo: str
    number: int
    body: str
    marker: str


class Reporter:
    def __init__(
        self,
        *,
        store: Store,
        github: GitHubApp | None,
        public_url: str,
        mention: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._github = github
        self._public_url = public_url
        self._mention = mention
        self._clock = clock

    def kinds(self) -> dict[str, JobKind]:
        return {
            REACT: JobKind(run=self._react),
            STATUS: JobKind(run=self._status),
            COMMENT: JobKind(run=self._comment),
        }

    # -- what services call -------------------------------------------------------------------

    async def acknowledge(self, task: Task) -> None:
        """👀 on the triggering comment and the first version of the status comment; later
        versions are enqueued by the store with each state change."""
        await self.react(task, "eyes")
        status = StatusJob(task.id)
        await self._store.enqueue(STATUS, status.key, status.dump(), task_id=task.id,
                                  installation_id=task.installation_id, rearm=True)

    async def react(self, task: Task, content: str, *, key: str | None = None) -> None:
        await self._store.enqueue(
            REACT, key or f"react:{task.id}:{task.attempt}:{content}",
            ReactJob(repo=task.repo, comment_kind=task.comment_kind, comment_id=task.comment_id,
                     content=content).dump(),
            task_id=task.id, installation_id=task.installation_id,
        )

    async def reply(self, *, key: str, repo: str, installation_id: int | None, number: int,
                    body: str, task_id: int | None = None) -> None:
        """Post `body` on the issue or PR once for `key`."""
        await self._store.enqueue(
            COMMENT, f"comment:{key}",
            CommentJob(repo=repo, number=number, body=body, marker=f"porter:reply {key}").dump(),
            task_id=task_id, installation_id=installation_id,
        )

    # -- job handlers -------------------------------------------------------------------------

    async def _react(self, ctx: JobContext) -> dict[str, object]:
        p = ReactJob.of(ctx.job)
        client = self._installation(ctx)
        await ctx.creating()
        await client.react(p.repo, p.comment_kind, p.comment_id,
                           cast(ReactionContent, p.content))
        return {}

    async def _comment(self, ctx: JobContext) -> dict[str, object]:
        p = CommentJob.of(ctx.job)
        client = self._installation(ctx)
        hidden = f"<!-- {p.marker} -->"
        if "comment_id" not in ctx.job.progress:
            existing = [c for c in await self._own_comments(ctx, p.repo, p.number)
                        if hidden in c.body]
            if not existing:
                await ctx.creating()
            comment = existing[0] if existing else await client.create_comment(
                p.repo, p.number, f"{p.body}\n{hidden}")
            await ctx.save(comment_id=comment.id)
        return {"comment_id": ctx.job.progress["comment_id"]}

    async def _status(self, ctx: JobContext) -> dict[str, object]:
        task = await self._store.get_task(StatusJob.of(ctx.job).task_id)
        if task is None:
            return {}
        client = self._installation(ctx)
        body = render_status(task, public_url=self._public_url, mention=self._mention,
                             now=self._clock())
        comment_id = task.status_comment_id
        if comment_id is None:
            found = [c for c in await self._own_comments(ctx, task.repo, task.issue_number)
                     if marker(task.id) in c.body]
            comment_id = found[0].id if found else None
        if comment_id is None:
            await ctx.creating()
            comment = await client.create_comment(task.repo, task.issue_number, body)
            await self._store.update_task(task.id, status_comment_id=comment.id)
            return {"comment_id": comment.id}
        try:
            await client.update_comment(task.repo, comment_id, body)
        except GitHubError as exc:
            if exc.status != 404:
                raise
            # Someone deleted it: the requester still deserves a status, so post it anew.
            await ctx.creating()
            comment = await client.create_comment(task.repo, task.issue_number, body)
            await self._store.update_task(task.id, status_comment_id=comment.id)
            return {"comment_id": comment.id}
        if task.status_comment_id is None:
            await self._store.update_task(task.id, status_comment_id=comment_id)
        return {"comment_id": comment_id}

    def _installation(self, ctx: JobContext) -> InstallationClient:
        return self._app().installation(_installation_id(ctx))

    async def _own_comments(self, ctx: JobContext, repo: str, number: int) -> list[Comment]:
        return await self._app().own_comments(_installation_id(ctx), repo, number)

    def _app(self) -> GitHubApp:
        if self._github is None:
            raise ConfigError("the GitHub App is not configured, so Porter cannot post on GitHub")
        return self._github


def _installation_id(ctx: JobContext) -> int:
    if ctx.job.installation_id is None:
        raise ConfigError("the delivery named no installation, so Porter cannot post")
    return ctx.job.installation_id
