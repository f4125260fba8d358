"""What every area of the store shares: the backend (its reads and its single writer), the
listeners.

The backend is SQLite's (here: two aiosqlite connections) or PostgreSQL's
(porter/store/pg_backend.py); the areas only ever call `_read` and `_write`, so the SQL and the
closures are the same on both.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Collection
from enum import StrEnum
from typing import Any, Literal, Protocol, TypeVar

import aiosqlite

from porter.errors import PorterError
from porter.identity import ProcessIdentity
from porter.priorities import priority
from porter.states import FINISHED_JOB, JobState
from porter.store.pg_notify import Change

Clock = Callable[[], float]
T = TypeVar("T")


class StoreError(PorterError):
    """The database could not do what was asked."""


class Backend(Protocol):
    """Where the store's SQL runs: reads on a connection of their own, and write transactions
    (closures `work(db)`) one at a time on the writer, each taking the database's write lock."""

    dialect: Literal["sqlite", "postgresql"]

    async def read(self, sql: str, params: Any) -> list[sqlite3.Row]: ...

    async def write(self, work: Callable[[sqlite3.Connection], T], *,
                    exclusive: bool = True) -> T: ...

    def announce(self, change: Change) -> None:
        """Tell other processes on this database what changed (porter/store/pg_notify.py)."""

    def listen(self, on_change: Callable[[Change], None]) -> None:
        """Hear what other processes announce."""

    async def close(self) -> None: ...


class SqliteBackend:
    """SQLite through aiosqlite: one connection writes, one reads (WAL: reads never wait)."""

    dialect: Literal["sqlite", "postgresql"] = "sqlite"

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self.writer = writer
        self.reader = reader

    async def read(self, sql: str, params: Any) -> list[sqlite3.Row]:
        return list(await self.reader.execute_fetchall(sql, params))

    async def write(self, work: Callable[[sqlite3.Connection], T], *,
                    exclusive: bool = True) -> T:
        """One thread hop per transaction: under load the event loop is busy, and each extra hop
        (BEGIN, every statement, COMMIT) would wait its turn behind the HTTP traffic.
        aiosqlite's public API costs a hop per statement, so this uses its queue-a-function
        primitive. `exclusive` changes nothing here: SQLite has one writer at a time anyway."""
        result: T = await self.writer._execute(  # type: ignore[no-untyped-call]
            _in_transaction, self.writer._conn, work
        )
        return result

    def announce(self, change: Change) -> None:
        """Nothing to do: processes sharing a SQLite file find each other's work by polling."""

    def listen(self, on_change: Callable[[Change], None]) -> None:
        """Nothing to hear (see `announce`)."""

    async def close(self) -> None:
        await self.writer.close()
        await self.reader.close()


class StoreBase:
    """The store's areas (tasks, runs, jobs, intake) are mixins of this; `Store` joins them."""

    def __init__(self, backend: Backend, *, clock: Clock) -> None:
        self._backend = backend
        self._clock = clock
        self.process = ProcessIdentity.current()
        self.instance_id = ""  # this Porter's, kept in the database; set once migrated
        # The notification channels configured (porter/notifications.py), told by the runtime:
        # a task's end enqueues one job per channel, and none when there is none.
        self.notify_channels: tuple[str, ...] = ()
        self._lock = asyncio.Lock()
        self._listeners: dict[str, list[Callable[[], None]]] = {"jobs": [], "tasks": []}

    @property
    def clock(self) -> Clock:
        """The store's time source: whoever stamps rows it compares with uses the same."""
        return self._clock

    def subscribe(self, listener: Callable[[], None], *, to: Literal["jobs", "tasks"]) -> None:
        """Call `listener` after every commit that added or re-armed a job (`jobs`: to wake the
        job runner), or that moved a task (`tasks`: to wake the dispatcher, as a slot may be
        free). Services need not tell each other, and on PostgreSQL other replicas' commits
        call them too (porter/store/pg_notify.py)."""
        self._listeners[to].append(listener)
        self._backend.listen(self._woken)

    def _changed_if(self, result: T, *, jobs_only: bool = False) -> T:
        """Tell the listeners here and the other processes, when `result` says the commit
        changed something."""
        if result:
            change: Change = "jobs" if jobs_only else "tasks"
            self._woken(change)
            self._backend.announce(change)
        return result

    def _woken(self, change: Change) -> None:
        if change != "recorded":
            for listener in self._listeners["jobs"]:
                listener()
        if change != "jobs":
            for listener in self._listeners["tasks"]:
                listener()

    @property
    def dialect(self) -> Literal["sqlite", "postgresql"]:
        """Which database this store is on: the few statements that differ ask."""
        return self._backend.dialect

    async def _read(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        """The rows of one query, on the reading connection (never queued behind a write)."""
        return await self._backend.read(sql, params)

    async def _write(self, work: Callable[[sqlite3.Connection], T], *,
                     exclusive: bool = True) -> T:
        """Run `work` as one transaction on the writer's thread, holding the write lock.

        `exclusive=False` (PostgreSQL): without the writers' lock, for a closure that locks
        what it needs itself and never waits for a lock (porter/store/pg_claims.py)."""
        async with self._lock:
            return await self._backend.write(work, exclusive=exclusive)


def _in_transaction(db: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    db.execute("BEGIN IMMEDIATE")
    try:
        result = work(db)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return result


def on_postgres(db: object) -> bool:
    """Whether a closure's connection is PostgreSQL's (porter/store/pg_connection.py): the few
    statements with no portable form ask (docs/postgres-port.md)."""
    return not isinstance(db, sqlite3.Connection)


def matching(conditions: dict[str, Any]) -> tuple[str, list[Any]]:
    """` WHERE …` joining the conditions (each a fixed `column op ?`) whose value is not None,
    and those values to bind; empty when none is set."""
    used = {condition: value for condition, value in conditions.items() if value is not None}
    return (" WHERE " + " AND ".join(used) if used else ""), list(used.values())


def marks(group: Collection[StrEnum]) -> str:
    """The `?, ?` of `state IN (…)` for a state group (porter/states.py), whose values are
    bound after it: the SQL never spells a state group out again."""
    return ", ".join("?" * len(group))


def put_job(db: sqlite3.Connection, kind: str, key: str, payload: dict[str, Any], *,
            task_id: int | None, installation_id: int | None, now: float,
            run_after: float | None = None, rearm: bool = False,
            again_when_finished: bool = False) -> bool:
    """Add a job once per key, inside the caller's transaction; whether a row changed.

    `rearm`: the job runs again even if it is running now (bumping `generation`, so the run
    under way cannot mark it done). `again_when_finished`: a finished job runs once more, a
    pending or running one is left as it is. Its claim priority comes from porter/priorities.py.
    """
    values: list[Any] = [kind, key, task_id, installation_id, json.dumps(payload),
                         now if run_after is None else run_after, now, now,
                         priority(kind, payload)]
    if rearm:
        on_conflict = (
            "DO UPDATE SET state = ?, generation = jobs.generation + 1, attempts = 0,"
            " run_after = CASE WHEN excluded.run_after < jobs.run_after"
            " THEN excluded.run_after ELSE jobs.run_after END, payload = excluded.payload,"
            " priority = excluded.priority, updated_at = excluded.updated_at")
        values.append(JobState.PENDING)
    elif again_when_finished:
        on_conflict = (
            "DO UPDATE SET state = ?, attempts = 0, run_after = excluded.run_after,"
            f" updated_at = excluded.updated_at WHERE jobs.state IN ({marks(FINISHED_JOB)})")
        values.extend([JobState.PENDING, *FINISHED_JOB])
    else:
        on_conflict = "DO NOTHING"
    return db.execute(
        "INSERT INTO jobs (kind, key, task_id, installation_id, payload, run_after, created_at,"
        f" updated_at, priority) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) {on_conflict}",
        values,
    ).rowcount > 0
