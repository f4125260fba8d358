"""Durable side effects: every GitHub or Fly write is a job in the store, run until it is done or
given up with a reason the requester can see.

Jobs of different installations run at once; the jobs of one installation that write to GitHub
run one at a time, most urgent first (porter/priorities.py), since GitHub wants mutating
requests serial per installation. Jobs that do not write to GitHub (machines, commands) never
wait behind them, and have `concurrency` slots of their own beside the GitHub writes'. A handler
awaits `ctx.creating()` just before each request that creates content (a comment, a reaction, a
pull request): GitHub's 80 a minute and 500 an hour per installation are kept by
porter/pacing.py, whose record is in the database (so it holds across restarts and processes),
and a job over budget waits, unspent, for its turn.

Retries use capped exponential backoff with full jitter. A `Retry-After` or spent rate limit from
GitHub is obeyed exactly, and it holds back every GitHub write of that installation, since
GitHub's limits are per installation (docs/platform-notes.md §C.6).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from porter import log_context
from porter.errors import PorterError
from porter.models import Job
from porter.pacing import CONTENT_CREATION, Window
from porter.priorities import COSMETIC, priority
from porter.store import Store

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class Paced(Exception):  # not an error: the job waits its turn
    """The installation's content-creation budget is spent for now."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"paced for {wait:.1f}s")
        self.wait = wait


@dataclass(frozen=True)
class JobContext:
    """What a handler gets besides its job: a way to checkpoint multi-step work, and the
    installation's content-creation budget."""

    job: Job
    store: Store
    pacing: tuple[Window, ...] = ()  # none: creations are not paced
    clock: Clock = time.time

    async def save(self, **progress: object) -> None:
        merged = {**self.job.progress, **progress}
        self.job.progress.update(progress)
        await self.store.save_progress(self.job, merged)

    async def creating(self, *, cosmetic: bool | None = None) -> None:
        """Charge one content creation (comment, reaction, pull request) just before making it;
        raises `Paced` when over budget, and the job runs again, unspent, when one fits. Edits
        are not creations and are not charged. A cosmetic creation leaves the urgent ones a
        reserve (porter/pacing.py); by default the job's priority says which it is."""
        if not self.pacing or self.job.installation_id is None:
            return
        if cosmetic is None:
            cosmetic = priority(self.job.kind, self.job.payload) >= COSMETIC
        wait = await self.store.take_creation(self.job.installation_id, now=self.clock(),
                                              urgent=not cosmetic, windows=self.pacing)
        if wait > 0:
            raise Paced(wait)


Handler = Callable[[JobContext], Awaitable[dict[str, object] | None]]
GiveUp = Callable[[Job, str], Awaitable[None]]


@dataclass(frozen=True)
class JobKind:
    run: Handler
    on_give_up: GiveUp | None = None
    writes: bool = True  # writes to GitHub: one at a time per installation, held by Retry-After


class JobObserver(Protocol):
    """Told what becomes of jobs (porter/metrics.py); one that raises is logged, not obeyed."""

    async def job_finished(self, job: Job, seconds: float) -> None: ...  # handler succeeded
    async def job_retried(self, job: Job, error: str) -> None: ...
    async def job_given_up(self, job: Job, error: str) -> None: ...
    # reason: "bucket" (content-creation budget) | "retry_after" (GitHub said to wait)
    def paced(self, installation_id: int, seconds: float, reason: str) -> None: ...


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
        concurrency: int = 16,
        pacing: Sequence[Window] = CONTENT_CREATION,
        lease: float = 30.0,
        observer: JobObserver | None = None,
    ) -> None:
        self._store = store
        self._kinds = dict(kinds)
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not a secret
        self._backoff = backoff
        self._concurrency = concurrency
        self._pacing = tuple(pacing)
        self._lease = lease
        self._observer = observer
        self._running: dict[int, asyncio.Task[bool]] = {}  # job id → its run in this process
        self._serial: set[int] = set()  # those of them that are an installation's GitHub write
        self._writing: set[int] = set()  # installations with a GitHub write under way
        self._held: dict[int, float] = {}  # installation → GitHub's Retry-After, until when
        self.wake = asyncio.Event()  # new work, or a job finished: look again

    def register(self, name: str, kind: JobKind) -> None:
        self._kinds[name] = kind

    async def run_due(self, now: float | None = None, *, limit: int = 50) -> int:
        """One pass: run every job due at `now` once, concurrently as in `run_forever`, and
        wait for them. Returns how many ran (deferred ones don't count)."""
        now = self._clock() if now is None else now
        seen: set[int] = set()
        mine: set[asyncio.Task[bool]] = set()
        ran = 0
        try:
            while True:
                if len(seen) < limit:
                    mine |= await self._start_due(now, seen=seen, limit=limit - len(seen))
                if not mine:
                    return ran
                done, mine = await asyncio.wait(mine, return_when=asyncio.FIRST_COMPLETED)
                # One stopped because another process took it over did not run here.
                ran += sum(task.result() for task in done if not task.cancelled())
        finally:
            await _cancel(mine)  # the pass was cancelled: so are its jobs, as in a crash

    async def run_forever(self, *, idle: float = 5.0) -> None:
        """Start due jobs as capacity and installations allow, without waiting for those under
        way; sleep until one finishes, a new one is added, the next is due, or `idle` passes
        (the poll that finds work another process added when its wake-up was lost). Meanwhile
        the leases of the jobs under way are kept (`keep_leases`)."""
        keeper = asyncio.create_task(self.keep_leases(), name="porter-job-leases")
        try:
            while True:
                self.wake.clear()  # before claiming: whatever happens after wakes the next wait
                wait = idle
                try:
                    now = self._clock()
                    await self._start_due(now)
                    # Jobs due now and not started wait for a slot or their installation: the
                    # end of the job they wait for wakes us. Sleep until the next falls due.
                    next_due = await self._store.next_job_due(after=now)
                    if next_due is not None:
                        wait = min(idle, max(0.0, next_due - self._clock()))
                except Exception:
                    log.exception("job pass failed")
                if wait > 0:
                    await wait_for_wake(self.wake, wait)
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            await _cancel(set(self._running.values()))

    async def keep_leases(self) -> None:
        """Every third of a lease: renew the leases of the jobs under way here, and take back
        the jobs of processes known to be gone (porter/identity.py) instead of waiting out
        theirs. A process that dies or is cut off keeps its claims only until its leases run
        out; then any other process takes its jobs."""
        while True:
            await asyncio.sleep(self._lease / 3)
            try:
                await self.renew_leases()
            except Exception:
                log.exception("renewing job leases failed")

    async def renew_leases(self) -> None:
        """Renew once. A job whose claim was lost meanwhile (this process was paused past its
        lease, and another took the job) is stopped here: its claim is fenced
        (porter/store/jobs.py), so nothing it did could be recorded as done twice."""
        running = dict(self._running)
        lost = await self._store.renew_leases(running, until=self._clock() + self._lease)
        for job_id in lost:
            task = running[job_id]
            if self._running.get(job_id) is task and not task.done():  # not ended meanwhile
                log.warning("job %s was taken over by another process; stopped here", job_id)
                task.cancel()
        if await self._store.reclaim_from_dead():
            self.wake.set()

    # -- claiming and starting ----------------------------------------------------------------

    async def _start_due(self, now: float, *, seen: set[int] | None = None,
                         limit: int | None = None) -> set[asyncio.Task[bool]]:
        """Claim what may start now and start it; `seen` (a pass's jobs) are not claimed again.

        GitHub writes and the other jobs each have `concurrency` slots: machines waiting on
        Fly's rate limits (porter/fly/limits.py) cannot hold up any installation's 👀."""
        serial_kinds = {name for name, kind in self._kinds.items() if kind.writes}
        started: set[asyncio.Task[bool]] = set()
        for serial in (True, False):
            taken = len(self._serial) if serial else len(self._running) - len(self._serial)
            free = self._concurrency - taken
            if limit is not None:
                free = min(free, limit - len(started))
            if free <= 0:
                continue
            jobs = await self._store.claim_jobs(
                now=now, limit=free, lease=self._lease, serial_kinds=serial_kinds,
                busy=self._writing, skip=set(self._running) | (seen or set()), serial=serial)
            for job in jobs:
                if seen is not None:
                    seen.add(job.id)
                kind = self._kinds.get(job.kind)
                if kind is None:
                    await self._store.reschedule_job(
                        job, run_after=now + 60, count_attempt=False,
                        error=f"no handler for job kind {job.kind}")
                    continue
                started.add(self._start(job, kind, None if seen is None else now))
        return started

    def _start(self, job: Job, kind: JobKind, now: float | None) -> asyncio.Task[bool]:
        """Run `job` in its own task; its installation counts as writing until it ends."""
        installation = job.installation_id if kind.writes else None
        if installation is not None:
            self._writing.add(installation)
        task = asyncio.create_task(self._execute(job, kind, now), name=f"job-{job.id}")
        self._running[job.id] = task
        if installation is not None:
            self._serial.add(job.id)

        def ended(_: asyncio.Task[bool]) -> None:
            self._running.pop(job.id, None)
            self._serial.discard(job.id)
            if installation is not None:
                self._writing.discard(installation)
            self.wake.set()

        task.add_done_callback(ended)
        return task

    # -- one job ------------------------------------------------------------------------------

    async def _execute(self, job: Job, kind: JobKind, now: float | None) -> bool:
        """Run one job and record what came of it; whether its handler ran to an end."""
        run_id = job.payload.get("run_id")
        with log_context.bound(task_id=job.task_id,
                               run_id=run_id if isinstance(run_id, str) else None):
            try:
                return await self._run(job, kind, now)
            except Exception:  # the store failed us: the lease runs out and the job is retried
                log.exception("job %s (%s) could not be recorded", job.id, job.kind)
                return False

    async def _run(self, job: Job, kind: JobKind, fixed: float | None) -> bool:
        def now() -> float:
            return self._clock() if fixed is None else fixed

        installation = job.installation_id if kind.writes else None
        if installation is not None and installation in self._held:
            held = self._held[installation]
            if held > now():
                await self._store.reschedule_job(job, run_after=held, error=None,
                                                 count_attempt=False)
                self._tell_paced(installation, held - now(), "retry_after")
                return False
            del self._held[installation]
        started = time.perf_counter()
        try:
            result = await kind.run(JobContext(job, self._store, self._pacing, self._clock))
        except Paced as paced:
            await self._store.reschedule_job(job, run_after=now() + paced.wait, error=None,
                                             count_attempt=False)
            if job.installation_id is not None:  # always, as only those are paced
                self._tell_paced(job.installation_id, paced.wait, "bucket")
            return False
        except Exception as exc:
            await self._failed(job, kind, now(), exc)
            return True
        seconds = time.perf_counter() - started
        await self._store.finish_job(job, result=result)
        await self._tell(lambda o: o.job_finished(job, seconds))
        return True

    async def _failed(self, job: Job, kind: JobKind, now: float, exc: Exception) -> None:
        if isinstance(exc, PorterError):
            # Any Porter error may say it is worth retrying, and after how long.
            error = exc.message
            retryable = bool(getattr(exc, "retryable", False))
            retry_after: float | None = getattr(exc, "retry_after", None)
        else:  # a bug or an unforeseen outage: retried, and logged loudly
            log.error("job %s (%s) crashed", job.id, job.kind, exc_info=exc)
            error, retryable, retry_after = f"internal error: {type(exc).__name__}", True, None
        if retry_after is not None and kind.writes and job.installation_id is not None:
            self._held[job.installation_id] = max(
                self._held.get(job.installation_id, 0.0), now + retry_after)
        attempts = job.attempts + 1
        if not retryable or attempts >= self._backoff.max_attempts:
            why = error if not retryable else f"{error} (gave up after {attempts} attempts)"
            log.warning("job %s (%s) given up: %s", job.id, job.kind, why)
            await self._store.give_up_job(job, error=why)
            await self._tell(lambda o: o.job_given_up(job, why))
            if kind.on_give_up is not None:
                await kind.on_give_up(job, why)
            return
        delay = retry_after if retry_after is not None else self._backoff.delay(
            attempts, self._rng)
        log.info("job %s (%s) retried in %.1fs: %s", job.id, job.kind, delay, error)
        await self._store.reschedule_job(job, run_after=now + delay, error=error)
        await self._tell(lambda o: o.job_retried(job, error))

    # -- the observer: metrics must never break a job -----------------------------------------

    async def _tell(self, event: Callable[[JobObserver], Awaitable[None]]) -> None:
        if self._observer is None:
            return
        try:
            await event(self._observer)
        except Exception:
            log.exception("the job observer failed")

    def _tell_paced(self, installation_id: int, seconds: float, reason: str) -> None:
        if self._observer is None:
            return
        try:
            self._observer.paced(installation_id, seconds, reason)
        except Exception:
            log.exception("the job observer failed")


async def _cancel(tasks: set[asyncio.Task[bool]]) -> None:
    """Cancel jobs under way and wait for them: a cancelled job keeps its lease, and is taken
    again once that runs out (or at once by the next process, porter/runtime.py)."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def wait_for_wake(wake: asyncio.Event, seconds: float) -> None:
    """Until `wake` is set, or `seconds` pass. Not `asyncio.wait_for`: on Python 3.11 it can
    swallow a cancellation that arrives as the event is set (gh-86296), and a loop stopped then
    would run on for good."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await wake.wait()
