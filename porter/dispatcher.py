"""Moves queued tasks forward: authorize, decide (porter/admission.py), acknowledge, start.

Authorization comes before anything is spent: a refused requester gets one reply and 😕, and no
token is minted, no secret opened, no machine started. A request refused because someone
else's task holds the issue is refused before it is acknowledged, so it gets one reply, not a
status comment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from porter.admission import Limits, Refuse, Start, Wait, decide
from porter.authorization import Authorizer, Verdict
from porter.errors import GitHubError
from porter.models import Task
from porter.reporting import Reporter
from porter.states import LIVE, TaskState
from porter.store import Store

log = logging.getLogger(__name__)

class Starter(Protocol):
    async def start(self, task: Task) -> bool:
        """Start the task's run (queued → starting); False when it had moved on meanwhile."""
        ...


class Dispatcher:
    def __init__(
        self,
        *,
        store: Store,
        authorizer: Authorizer | None,
        reporter: Reporter,
        starter: Starter,
        limits: Limits,
        public_url: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._authorizer = authorizer
        self._reporter = reporter
        self._starter = starter
        self._limits = limits
        self._public_url = public_url.rstrip("/")
        self._clock = clock
        self._waiting_logged = False
        self.wake = asyncio.Event()

    async def tick(self) -> None:
        """One pass over the queue, oldest first."""
        if self._authorizer is None:
            # Without the App nothing can be checked or posted; tasks wait, queued, for the
            # operator to configure it rather than being thrown away.
            if not self._waiting_logged:
                log.warning("tasks are waiting: the GitHub App is not configured")
                self._waiting_logged = True
            return
        queued = await self._store.tasks_in_states([TaskState.QUEUED])
        live = await self._store.tasks_in_states(LIVE)
        for decision in decide(queued, live, self._limits):
            task = decision.task
            verdict: Verdict | None = None
            if task.authorized_at is None:
                verdict = await self._permission(task)
                if verdict is None:
                    continue  # not known yet: asked again next pass
                if not verdict.allowed:
                    await self.refuse(task, f"Sorry, I can't do that: {verdict.reason}",
                                      verdict.reason)
                    continue
            if isinstance(decision, Refuse):
                holder = decision.holder
                reason = (f"task #{holder.id} by @{holder.requester} is still running here "
                          f"({self._link(holder)}); comment again when it has finished")
                await self.refuse(task, f"@{task.requester}, one task at a time per issue: "
                                        f"{reason}.", reason)
                continue
            if verdict is not None:  # newly authorized: 👀 and the status comment
                await self._acknowledge(task, verdict)
            if isinstance(decision, Wait) and decision.behind is not None:
                behind = decision.behind
                await self._reporter.reply(
                    key=f"waiting:{task.id}", repo=task.repo,
                    installation_id=task.installation_id, number=task.issue_number,
                    task_id=task.id, body=f"Queued behind task #{behind.id} "
                                          f"({self._link(behind)}); it starts when that one ends.")
            elif isinstance(decision, Start):
                await self._starter.start(task)

    async def refuse(self, task: Task, reply: str, reason: str) -> None:
        """The one way a queued task is turned down: a reply, 😕, and the task closed.

        The reply and 😕 are queued before the task is closed: both are keyed, so a crash in
        between repeats nothing, where the other order could answer the requester with silence.
        """
        await self._reporter.reply(
            key=f"refused:{task.id}", repo=task.repo, installation_id=task.installation_id,
            number=task.issue_number, task_id=task.id, body=reply)
        await self._reporter.react(task, "confused")
        await self._store.finish_task(task.id, expected=[TaskState.QUEUED],
                                      target=TaskState.REJECTED, message=reason, reason=reason)

    async def _permission(self, task: Task) -> Verdict | None:
        assert self._authorizer is not None  # tick() returns early without one
        try:
            return await self._authorizer.check(
                repo=task.repo, installation_id=task.installation_id, login=task.requester)
        except GitHubError as exc:
            if exc.retryable:
                log.warning("task %s: permission check failed, will retry: %s",
                            task.id, exc.message)
                return None
            return Verdict(False, f"Porter could not check permissions: {exc.message}")

    async def _acknowledge(self, task: Task, verdict: Verdict) -> None:
        # Acknowledge before recording the authorization: the jobs are keyed, so a crash in
        # between repeats nothing, where the other order would leave the requester without 👀.
        await self._reporter.acknowledge(task)
        await self._store.update_task(task.id, authorized_at=self._clock())
        await self._store.add_event(task.id, "authorized",
                                    f"{task.requester} has {verdict.permission} access")

    def _link(self, task: Task) -> str:
        return f"{self._public_url}/tasks/{task.id}"

    async def run_forever(self, *, interval: float = 2.0, coalesce: float = 0.05) -> None:
        while True:
            # A burst of deliveries wakes us many times; one pass after it settles serves all.
            await asyncio.sleep(coalesce)
            self.wake.clear()
            try:
                await self.tick()
            except Exception:
                log.exception("dispatcher pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=interval)
