"""Moves queued tasks forward: authorize, acknowledge, then hand them to the launcher.

Authorization comes before anything is spent: a refused requester gets one reply and 😕, and no
token is minted, no secret opened, no machine started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from porter.authorization import Authorizer, Verdict
from porter.errors import GitHubError
from porter.models import Task
from porter.reporting import Reporter
from porter.states import TaskState
from porter.store import Store

log = logging.getLogger(__name__)

Launch = Callable[[list[Task]], Awaitable[None]]


class Dispatcher:
    def __init__(
        self,
        *,
        store: Store,
        authorizer: Authorizer | None,
        reporter: Reporter,
        launch: Launch | None = None,
        admit: Callable[[Task], Awaitable[bool]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._authorizer = authorizer
        self._reporter = reporter
        self._launch = launch
        self._admit = admit
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
        ready: list[Task] = []
        for task in await self._store.tasks_in_states([TaskState.QUEUED]):
            if task.authorized_at is None and not await self._authorize(task):
                continue
            ready.append(task)
        if ready and self._launch is not None:
            await self._launch(ready)

    async def _authorize(self, task: Task) -> bool:
        assert self._authorizer is not None  # tick() returns early without one
        try:
            verdict = await self._authorizer.check(
                repo=task.repo, installation_id=task.installation_id, login=task.requester)
        except GitHubError as exc:
            if exc.retryable:
                log.warning("task %s: permission check failed, will retry: %s",
                            task.id, exc.message)
                return False
            verdict = Verdict(False, f"Porter could not check permissions: {exc.message}")
        if not verdict.allowed:
            await self._refuse(task, verdict.reason)
            return False
        if self._admit is not None and not await self._admit(task):
            return False
        # Acknowledge before recording the authorization: the jobs are keyed, so a crash in
        # between repeats nothing, where the other order would leave the requester without 👀.
        await self._reporter.acknowledge(task)
        await self._store.update_task(task.id, authorized_at=self._clock())
        await self._store.add_event(task.id, "authorized",
                                    f"{task.requester} has {verdict.permission} access")
        return True

    async def _refuse(self, task: Task, reason: str) -> None:
        # The reply and 😕 are queued before the task is closed: both are keyed, so a crash in
        # between repeats nothing, where the other order could answer the requester with silence.
        await self._reporter.reply(
            key=f"refused:{task.id}", repo=task.repo, installation_id=task.installation_id,
            number=task.issue_number, task_id=task.id,
            body=f"Sorry, I can't do that: {reason}",
        )
        await self._reporter.react(task, "confused")
        await self._store.transition(task.id, expected=TaskState.QUEUED,
                                     target=TaskState.REJECTED, reason=reason, message=reason)

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
