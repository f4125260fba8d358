"""`@porter cancel | retry | status | help`, and replies to comments Porter could not parse.

Comments arrive as `command` jobs from intake; the JSON API and the task page call `cancel` and
`retry` directly. All need the same permission as starting a task, and every cancel and retry is
audited with who asked and from where.
"""

from __future__ import annotations

from typing import Any

from porter.authorization import Authorizer, Verdict
from porter.commands import CommandJob, usage
from porter.jobs import JobContext, JobKind
from porter.launcher import Launcher
from porter.models import Task, TaskFilter
from porter.reporting import Reporter
from porter.settings import Settings
from porter.states import CANCELLABLE, TaskState
from porter.store import Store

COMMAND = CommandJob.kind


class Control:
    def __init__(
        self,
        *,
        store: Store,
        reporter: Reporter,
        authorizer: Authorizer | None,
        launcher: Launcher | None,
        settings: Settings,
        agents: frozenset[str],
    ) -> None:
        self._store = store
        self._reporter = reporter
        self._authorizer = authorizer
        self._launcher = launcher
        self._settings = settings
        self._agents = agents

    def kinds(self) -> dict[str, JobKind]:
        return {COMMAND: JobKind(run=self._command, writes=False)}

    async def may_control(self, task: Task, login: str) -> Verdict:
        """Whether `login` may cancel or retry the task: the rule for comments (the live
        collaborator permission through the App). Without the App nobody may, as nobody's
        permission can be known."""
        if self._authorizer is None:
            return Verdict(False, "Porter's GitHub App is not configured, so nobody's "
                                  "permission on the repository can be checked.")
        return await self._authorizer.check(repo=task.repo,
                                            installation_id=task.installation_id, login=login)

    async def cancel(self, task: Task, *, by: str, source: str = "comment",
                     actor_id: int | None = None, address: str = "") -> str:
        """Stop the task wherever it is; a message for whoever asked, also kept in the audit
        log with who asked and from where (comment, page or api)."""
        message = await self._cancel(task, by=by)
        await self._audit("cancel", task, message, by=by, source=source, actor_id=actor_id,
                          address=address)
        return message

    async def retry(self, task: Task, *, by: str = "operator", source: str = "comment",
                    actor_id: int | None = None, address: str = "") -> str:
        message = await self._retry(task)
        await self._audit("retry", task, message, by=by, source=source, actor_id=actor_id,
                          address=address)
        return message

    async def _audit(self, action: str, task: Task, message: str, *, by: str, source: str,
                     actor_id: int | None, address: str) -> None:
        await self._store.audit(actor=by, actor_id=actor_id, action=action,
                                target=f"task:{task.id}", source=source, address=address,
                                detail={"repo": task.repo, "outcome": message})

    async def _cancel(self, task: Task, *, by: str) -> str:
        if task.state is TaskState.PUBLISHING:
            return f"Task #{task.id} is already publishing its result; it can't be cancelled now."
        if task.state.terminal:
            return f"Task #{task.id} has already ended ({task.state.value})."
        run = await self._store.current_run(task.id)
        if run is not None and run.live:
            await self._store.request_cancel(task.id)
        left = await self._store.finish_task(
            task.id, expected=CANCELLABLE, target=TaskState.CANCELLED,
            reason=f"cancelled by @{by}", message=f"cancelled by @{by}")
        if left is None:
            return f"Task #{task.id} could not be cancelled in state {task.state.value}."
        if run is not None and run.live and self._launcher is not None:
            await self._launcher.release(run.id, run.machine_id, stop_first=True,
                                         task_id=task.id)
        return f"Cancelled task #{task.id}."

    async def _retry(self, task: Task) -> str:
        if not task.state.terminal:
            return f"Task #{task.id} is still {task.state.value}."
        attempt = await self._store.retry(task.id)
        if attempt is None:
            return f"Task #{task.id} ended as {task.state.value} and can't be retried."
        return f"Retrying task #{task.id} (attempt {attempt})."

    async def _command(self, ctx: JobContext) -> dict[str, Any]:
        p = CommandJob.of(ctx.job)
        repo, number, requester, action, key = (p.repo, p.issue_number, p.requester, p.action,
                                                p.comment_key)
        if self._authorizer is not None and action != "reply":
            verdict = await self._authorizer.check(
                repo=repo, installation_id=ctx.job.installation_id, login=requester)
            if not verdict.allowed:
                await self._say(ctx, key, repo, number, f"Sorry, I can't do that: {verdict.reason}")
                return {"refused": verdict.reason}
        tasks = await self._store.list_tasks(TaskFilter(repo=repo, issue=number), limit=20)
        if action == "help":
            text = usage(self._settings.mention, self._agents)
        elif action == "reply":
            text = p.text or usage(self._settings.mention, self._agents)
        elif action == "status":
            text = self._status(tasks)
        elif action == "cancel":
            # The running task first (a queued follow-up waits behind it), else the queued one.
            live = sorted((t for t in tasks if t.state in CANCELLABLE or
                           t.state is TaskState.PUBLISHING),
                          key=lambda t: (t.state is TaskState.QUEUED, t.id))
            text = await self.cancel(live[0], by=requester) if live else \
                "There is no running task here to cancel."
        elif action == "retry":
            # A rejected task never ran: retry means the last attempt that did (one refused
            # because someone else's task was live here must not hide the requester's own).
            ended = [t for t in tasks if t.state.terminal and t.state is not TaskState.REJECTED]
            text = await self.retry(ended[0], by=requester) if ended else \
                "There is no finished task to retry."
        else:
            text = usage(self._settings.mention, self._agents)
        await self._say(ctx, key, repo, number, text)
        return {"action": action}

    async def _say(self, ctx: JobContext, key: str, repo: str, number: int, text: str) -> None:
        await self._reporter.reply(key=f"command:{key}", repo=repo,
                                   installation_id=ctx.job.installation_id, number=number,
                                   body=text)

    def _status(self, tasks: list[Task]) -> str:
        if not tasks:
            return "No Porter tasks on this issue yet."
        lines = [
            f"- task #{t.id} · {t.state.value} · {t.agent} · @{t.requester}"
            + (f" · {t.pr_url}" if t.pr_url else "")
            + f" · {self._settings.public_url}/tasks/{t.id}"
            for t in tasks[:5]
        ]
        return "Porter tasks here, newest first:\n" + "\n".join(lines)
