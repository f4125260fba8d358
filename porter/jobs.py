"""Durable side effects: every GitHub or Fly write is a job in the store, run until it is done or
given up with a reason the requester can see.

Retries use capped exponential backoff with full jitter. A `Retry-After` or spent rate limit from
GitHub is obeyed exactly, and it holds back every job of that installation, since GitHub's limits
are per installation. Writes per installation are spaced, to stay under the secondary limits on
content creation (docs/platform-notes.md §C.6).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from porter.errors import FlyError, GitHubError, PorterError
from porter.models import Job
from porter.store import Store

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True)
class JobContext:
    """What a handler gets besides its job: a way to checkpoint multi-step work."""

    job: Job
    store: Store

    async def save(self, **progress: object) -> None:
        merged = {**self.job.progress, **progress}
        self.job.progress.update(progress)
        await self.store.save_progress(self.job, merged)


Handler = Callable[[JobContext], Awaitable[dict[str, object] | None]]
GiveUp = Callable[[Job, str], Awaitable[None]]


@dataclass(frozen=True)
class JobKind:
    run: Handler
    on_give_up: GiveUp | None = None
    writes: bool = True  # spaced per installation


@dataclass(frozen=True)
class Backoff:
    base: float = 2.0
    cap: float = 300.0
    max_attempts: int = 8

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(cap, base·2^attempt)], at least a tenth of a second."""
        return max(0.1, rng.uniform(0, min(self.cap, self.base * 2 ** attempt)))


class JobRunner:
    def __init__(
        self,
        store: Store,
        kinds: Mapping[str, JobKind],
        *,
        clock: Clock = time.time,
        rng: random.Random | None = None,
        backoff: Backoff = Backoff(),
        spacing: float = 1.0,
        lease: float = 300.0,
    ) -> None:
        self._store = store
        self._kinds = dict(kinds)
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        self._backoff = backoff
        self._spacing = spacing
        self._lease = lease
        self._next_write: dict[int, float] = {}
        self.wake = asyncio.Event()

    def register(self, name: str, kind: JobKind) -> None:
        self._kinds[name] = kind

    async def run_due(self, now: float | None = None, *, limit: int = 50) -> int:
        """One pass: run every due job once. Returns how many ran (deferred ones don't count)."""
        now = self._clock() if now is None else now
        ran = 0
        for job in await self._store.claim_jobs(now=now, limit=limit, lease=self._lease):
            kind = self._kinds.get(job.kind)
            if kind is None:
                await self._store.reschedule_job(job, run_after=now + 60, count_attempt=False,
                                                 error=f"no handler for job kind {job.kind}")
                continue
            slot = self._next_write.get(job.installation_id or 0, 0.0)
            if kind.writes and job.installation_id is not None and slot > now:
                await self._store.reschedule_job(job, run_after=slot, error=None,
                                                 count_attempt=False)
                continue
            ran += 1
            await self._run(job, kind, now)
        return ran

    async def _run(self, job: Job, kind: JobKind, now: float) -> None:
        if kind.writes and job.installation_id is not None:
            self._next_write[job.installation_id] = now + self._spacing
        try:
            result = await kind.run(JobContext(job, self._store))
        except (GitHubError, FlyError) as exc:
            await self._failed(job, kind, now, exc.message, retryable=exc.retryable,
                               retry_after=getattr(exc, "retry_after", None))
        except PorterError as exc:
            await self._failed(job, kind, now, exc.message, retryable=False, retry_after=None)
        except Exception as exc:  # a bug or an unforeseen outage: retried, and logged loudly
            log.exception("job %s (%s) crashed", job.id, job.kind)
            await self._failed(job, kind, now, f"internal error: {type(exc).__name__}",
                               retryable=True, retry_after=None)
        else:
            await self._store.finish_job(job, result=result)

    async def _failed(self, job: Job, kind: JobKind, now: float, error: str, *,
                      retryable: bool, retry_after: float | None) -> None:
        if retry_after is not None and job.installation_id is not None:
            self._next_write[job.installation_id] = max(
                self._next_write.get(job.installation_id, 0.0), now + retry_after)
        attempts = job.attempts + 1
        if not retryable or attempts >= self._backoff.max_attempts:
            why = error if not retryable else f"{error} (gave up after {attempts} attempts)"
            log.warning("job %s (%s) given up: %s", job.id, job.kind, why)
            await self._store.give_up_job(job, error=why)
            if kind.on_give_up is not None:
                await kind.on_give_up(job, why)
            return
        delay = retry_after if retry_after is not None else self._backoff.delay(
            attempts, self._rng)
        await self._store.reschedule_job(job, run_after=now + delay, error=error)

    async def run_forever(self, *, idle: float = 5.0) -> None:
        """Run due jobs; sleep until the next is due, a new one is added, or `idle` passes."""
        while True:
            try:
                await self.run_due()
            except Exception:
                log.exception("job pass failed")
            next_due = await self._store.next_job_due()
            wait = idle if next_due is None else min(idle, max(0.0, next_due - self._clock()))
            self.wake.clear()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), timeout=wait)
