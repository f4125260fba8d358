"""Wake-ups across Porter replicas sharing one PostgreSQL database, through LISTEN/NOTIFY.

A commit that added a job or moved a task wakes this process's job runner, dispatcher and live
pages directly (porter/store/base.py). On PostgreSQL it is also announced on one channel, and
every other replica's listener wakes the same services there: a task recorded by replica B
shows on a page served by replica A at once, and a job B enqueued is claimed by whichever
replica is free.

A wake-up carries only which services to wake: "jobs" (a job was added or re-armed: job runners),
"tasks" (a task moved: dispatchers and live pages, and job runners, as a move enqueues jobs) or
"recorded" (intake recorded new tasks: dispatchers and live pages). They then read what changed
from the database. So a notification lost (a listener reconnecting, a
server restart) costs only a poll interval: every service still polls, more slowly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Literal

import psycopg

log = logging.getLogger(__name__)

CHANNEL = "porter_changes"
Change = Literal["jobs", "tasks", "recorded"]
CHANGES: tuple[Change, ...] = ("jobs", "tasks", "recorded")
RECONNECT_DELAY = 1.0  # seconds between attempts while the server is unreachable


class Announcer:
    """Sends this process's changes, coalesced: a burst of commits is one notification."""

    def __init__(self, send: Callable[[str], Awaitable[None]]) -> None:
        self._send = send  # `SELECT pg_notify(…)` on an autocommit connection
        self._pending: set[Change] = set()
        self._flushing: asyncio.Task[None] | None = None

    def announce(self, change: Change) -> None:
        self._pending.add(change)
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        await asyncio.sleep(0)  # the commits finishing on this turn of the loop share it
        changes, self._pending = self._pending, set()
        if not changes:
            return
        try:
            await self._send(",".join(sorted(changes)))
        except (psycopg.Error, OSError) as exc:  # the others notice by polling
            log.warning("could not announce a change to other replicas: %s", exc)

    async def close(self) -> None:
        if self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)


class Listener:
    """A thread holding its own connection, LISTENing, and calling `on_change` on the event
    loop for every other process's notification. It reconnects after losing the server."""

    def __init__(self, url: str, on_change: Callable[[Change], None], *,
                 own_pid: Callable[[], int | None]) -> None:
        self._url = url
        self._on_change = on_change
        self._own_pid = own_pid  # the server pid our own notifications come from
        self._loop = asyncio.get_running_loop()
        self._stopped = threading.Event()
        self.listening = threading.Event()  # set while LISTEN is in force (tests wait on it)
        self._thread = threading.Thread(target=self._run, name="porter-pg-listener",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                with psycopg.connect(self._url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    while not self._stopped.is_set():
                        for note in conn.notifies(timeout=0.5):
                            self._deliver(note)
            except (psycopg.Error, OSError) as exc:
                if not self._stopped.is_set():
                    log.warning("lost the wake-up channel (%s); polling until it is back", exc)
            finally:
                self.listening.clear()
            self._stopped.wait(RECONNECT_DELAY)

    def _deliver(self, note: psycopg.Notify) -> None:
        if note.pid == self._own_pid():
            return
        for change in CHANGES:
            if change in note.payload.split(","):
                with contextlib.suppress(RuntimeError):  # the loop has closed: we are stopping
                    self._loop.call_soon_threadsafe(self._on_change, change)

    async def close(self) -> None:
        self._stopped.set()
        await asyncio.to_thread(self._thread.join, 5)
