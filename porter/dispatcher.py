"""Moves queued tasks forward: authorize, decide (porter/admission.py), acknowledge, start.

Authorization comes before anything is spent: a refused requester gets one reply and 😕, and no
token is minted, no secret opened, no machine started. A request refused because someone
else's task holds the issue is refused before it is acknowledged, so it gets one reply, not a
status comment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from porter.admission import Decision, Limits, Refuse, Start, Wait, decide
from porter.authorization import Authorizer, Verdict
from porter.errors import GitHubError
from porter.jobs import wait_for_wake
from porter.log_context import bound
from porter.models import Task
from porter.reporting import Reporter
from porter.states import LIVE, TaskState
from porter.store import Store

log = logging.getLogger(__name__)
# Permission checks in flight at once, well under GitHub's 100 concurrent requests (§C.6).
CONCURRENT_CHECKS = 8

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
        decisions = decide(queued, live, self._limits)
        verdicts = await self._permissions([d.task for d in decisions
                                            if d.task.authorized_at is None])
        starts: list[Task] = []
        for decision in decisions:
            with bound(task_id=decision.task.id, delivery_id=decision.task.delivery_id):
                if await self._handle(decision, verdicts.get(decision.task.id)):
                    starts.append(decision.task)
        # Every 👀 and status comment of the pass is queued before any machine is started: a
        # start costs several commits, and the last requester of a burst should not wait for
        # all of them to be acknowledged.
        for task in starts:
            with bound(task_id=task.id, delivery_id=task.delivery_id):
                await self._starter.start(task)

    async def _handle(self, decision: Decision, verdict: Verdict | None) -> bool:
        """Refuse, acknowledge or reply for one decision; True when its task is to start."""
        task = decision.task
        if task.authorized_at is None:
            if verdict is None:
                return False  # not known yet: asked again next pass
            if not verdict.allowed:
                await self.refuse(task, f"Sorry, I can't do that: {verdict.reason}",
                                  verdict.reason)
                return False
        if isinstance(decision, Refuse):
            holder = decision.holder
            reason = (f"task #{holder.id} by @{holder.requester} is still running here "
                      f"({self._link(holder)}); comment again when it has finished")
            await self.refuse(task, f"@{task.requester}, one task at a time per issue: "
                                    f"{reason}.", reason)
            return False
        if verdict is not None:  # newly authorized: 👀 and the status comment
            await self._acknowledge(task, verdict)
        if isinstance(decision, Wait) and decision.behind is not None:
            behind = decision.behind
            await self._reporter.reply(
                key=f"waiting:{task.id}", repo=task.repo,
                installation_id=task.installation_id, number=task.issue_number,
                task_id=task.id, body=f"Queued behind task #{behind.id} "
                                      f"({self._link(behind)}); it starts when that one ends.")
        return isinstance(decision, Start)

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

    async def _permissions(self, tasks: list[Task]) -> dict[int, Verdict | None]:
        """Each task's verdict, asked concurrently and once per requester and repository: in a
        burst across installations each first ask mints a token, and asking one after another
        would hold the last installation's 👀 behind every other installation's round trips."""
        groups: dict[tuple[int | None, str, str], list[Task]] = {}
        for task in tasks:
            key = (task.installation_id, task.repo.lower(), task.requester.lower())
            groups.setdefault(key, []).append(task)
        gate = asyncio.Semaphore(CONCURRENT_CHECKS)

        async def ask(first: Task) -> Verdict | None:
            async with gate:
                with bound(task_id=first.id, delivery_id=first.delivery_id):
                    return await self._permission(first)

        asked = await asyncio.gather(*(ask(group[0]) for group in groups.values()))
        return {task.id: verdict for group, verdict in zip(groups.values(), asked, strict=True)
                for task in group}

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
        burst = False
        while True:
            # A lone delivery is served at once: 👀 a round trip or two after it. One that
            # arrived while the last pass ran is part of a burst: the next pass waits for the
            # burst to settle, and serves all of it.
            if burst:
                await asyncio.sleep(coalesce)
            self.wake.clear()
            try:
                await self.tick()
            except Exception:
                log.exception("dispatcher pass failed")
            burst = self.wake.is_set()
            if not burst:
                await wait_for_wake(self.wake, interval)
