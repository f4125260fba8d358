"""The store on PostgreSQL (issue 12): the same reads and write closures as on SQLite.

The writer is one `PgConnection` whose closures run on a thread of their own, one at a time, as
aiosqlite runs SQLite's; each is one transaction that first takes `pg_advisory_xact_lock` on
`WRITER_KEY`. So writers take turns across every Porter process sharing the database exactly as
SQLite's `BEGIN IMMEDIATE` makes them, and every closure that reads, decides in Python and then
writes stays correct unchanged (docs/postgres-port.md, section 5). The one exception is job
claims (`exclusive=False`, porter/store/pg_claims.py): they lock only the rows and installations
they take, never waiting, so replicas claim side by side. Readers take no lock: they never wait
for a writer. The reader is a second `PgConnection` on a thread of its own.

What SQLite's open sets up has no PostgreSQL counterpart to set: foreign keys are always
enforced, readers never block writers (WAL), durability is the server's `synchronous_commit`,
and who may read the data is the server's roles, not a file mode. What SQLite's `busy_timeout`
does, `lock_timeout` does on the writer: a write that waits longer than `LOCK_TIMEOUT` seconds for
a lock (the writers' or a row's) fails as a `StoreError` instead of waiting for ever.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar, cast

import psycopg

from porter.store.base import StoreError
from porter.store.pg_connection import PgConnection
from porter.store.pg_notify import CHANNEL, Announcer, Change, Listener

T = TypeVar("T")

# The writers' advisory lock: any fixed 64-bit number, the same in every Porter ("porter-w"),
# other than the migration runner's ("porter-m", porter/store/pg_migrations.py).
WRITER_KEY = int.from_bytes(b"porter-w", "big") & 0x7FFF_FFFF_FFFF_FFFF

# How long a write waits for a lock before it fails, as SQLite's busy_timeout (5 s).
LOCK_TIMEOUT = 5.0


def is_postgres(database: object) -> bool:
    """Whether `PORTER_DATABASE` names a PostgreSQL database rather than a SQLite file."""
    return isinstance(database, str) and database.startswith(("postgresql://", "postgres://"))


class PgBackend:
    """The store's reads and writes on PostgreSQL, over two connections on two threads."""

    dialect: Literal["sqlite", "postgresql"] = "postgresql"

    def __init__(self, url: str, writer: PgConnection, reader: PgConnection,
                 writer_thread: ThreadPoolExecutor, reader_thread: ThreadPoolExecutor) -> None:
        self.url = url
        self._writer = writer
        self._reader = reader
        self._writer_thread = writer_thread
        self._reader_thread = reader_thread
        self._announcer = Announcer(self._notify)
        self._listener: Listener | None = None

    @classmethod
    async def connect(cls, url: str, *, lock_timeout: float = LOCK_TIMEOUT) -> PgBackend:
        writer_thread = ThreadPoolExecutor(1, thread_name_prefix="porter-pg-writer")
        reader_thread = ThreadPoolExecutor(1, thread_name_prefix="porter-pg-reader")
        loop = asyncio.get_running_loop()
        try:
            options = f"-c lock_timeout={max(1, round(lock_timeout * 1000))}"
            writer = await loop.run_in_executor(
                writer_thread, lambda: PgConnection.connect(url, options=options))
            try:
                reader = await loop.run_in_executor(reader_thread, PgConnection.connect, url)
            except BaseException:
                writer.close()
                raise
        except BaseException:
            writer_thread.shutdown(wait=False)
            reader_thread.shutdown(wait=False)
            raise
        return cls(url, writer, reader, writer_thread, reader_thread)

    async def read(self, sql: str, params: Any) -> list[sqlite3.Row]:
        def fetch() -> list[sqlite3.Row]:
            return cast(list[sqlite3.Row], self._reader.execute(sql, params or None).fetchall())

        return await asyncio.get_running_loop().run_in_executor(self._reader_thread, fetch)

    async def write(self, work: Callable[[sqlite3.Connection], T], *,
                    exclusive: bool = True) -> T:
        """Run `work` as one transaction; `exclusive=False` skips the writers' lock, for a
        closure that takes the locks it needs without ever waiting (porter/store/pg_claims.py)."""
        return await asyncio.get_running_loop().run_in_executor(
            self._writer_thread, _in_transaction, self._writer, work, exclusive)

    def announce(self, change: Change) -> None:
        """Tell the other processes on this database that jobs or tasks changed."""
        self._announcer.announce(change)

    def listen(self, on_change: Callable[[Change], None]) -> None:
        """Call `on_change` for every other process's announcement, from now until closed."""
        if self._listener is None:
            self._listener = Listener(self.url, on_change,
                                      own_pid=lambda: self._reader.raw.info.backend_pid)

    async def _notify(self, changes: str) -> None:
        await asyncio.get_running_loop().run_in_executor(
            self._reader_thread, lambda: self._reader.raw.execute(
                "SELECT pg_notify(%s, %s)", (CHANNEL, changes)))

    async def close(self) -> None:
        await self._announcer.close()
        if self._listener is not None:
            await self._listener.close()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer_thread, self._writer.close)
        await loop.run_in_executor(self._reader_thread, self._reader.close)
        self._writer_thread.shutdown()
        self._reader_thread.shutdown()


def _in_transaction(db: PgConnection, work: Callable[[sqlite3.Connection], T],
                    exclusive: bool = True) -> T:
    # READ COMMITTED whatever the server's default: a non-exclusive closure relies on each
    # statement seeing what other processes committed before it began.
    db.raw.execute("BEGIN ISOLATION LEVEL READ COMMITTED" if not exclusive else "BEGIN")
    try:
        if exclusive:
            db.raw.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_KEY,))
        # The closures are written against sqlite3's surface, which PgConnection gives.
        result = work(cast(sqlite3.Connection, db))
    except BaseException as exc:
        if not db.raw.closed:
            db.raw.execute("ROLLBACK")
        if isinstance(exc, psycopg.errors.LockNotAvailable):
            raise StoreError(f"the database stayed locked: {exc}") from exc
        raise
    db.raw.execute("COMMIT")
    return result
