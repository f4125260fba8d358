"""The `Store`: opening the database, its migrations, and this process's identity in it.

The areas (tasks, runs, jobs, intake) are mixins over `StoreBase`, which owns the single writer;
`Store` joins them, so callers see one object with methods named for intent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import stat
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import aiosqlite
import psycopg

from porter.identity import ProcessIdentity
from porter.store.artifacts import ArtifactStore
from porter.store.base import Clock, SqliteBackend
from porter.store.feed import FeedStore
from porter.store.gauges import GaugeStore
from porter.store.instance import InstanceStore
from porter.store.intake import IntakeStore
from porter.store.jobs import JobStore, release_claims
from porter.store.llm import LlmStore
from porter.store.pacing import PacingStore
from porter.store.pg_backend import PgBackend, is_postgres
from porter.store.redeliveries import RedeliveryStore
from porter.store.retention import RetentionStore
from porter.store.runs import RunStore
from porter.store.tasks import TaskStore
from porter.store.users import UserStore

log = logging.getLogger(__name__)

# A process not seen for this long (it renews its row with its job leases, every few seconds) is
# gone wherever it ran: ten minutes, far past any pause a live process survives with its leases.
GONE_AFTER = 600.0


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    found = []
    for entry in resources.files("porter.migrations").iterdir():
        stem = entry.name.removesuffix(".sql")
        if entry.name.endswith(".sql") and stem[:4].isdigit():
            found.append(Migration(int(stem[:4]), stem[5:], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


class Store(IntakeStore, TaskStore, RunStore, JobStore, UserStore, FeedStore, LlmStore,
            RetentionStore, GaugeStore, RedeliveryStore, PacingStore, InstanceStore,
            ArtifactStore):
    @classmethod
    async def open(cls, path: Path | str, *, clock: Clock = time.time,
                   migrate: bool = True) -> Store:
        """The store in `path`: a `postgresql://` (or `postgres://`) URL is a PostgreSQL
        database (porter/store/pg_backend.py), anything else a SQLite file."""
        if is_postgres(path):
            store = cls(await PgBackend.connect(str(path)), clock=clock)
        else:
            store = cls(await _open_sqlite(Path(path)), clock=clock)
        if migrate:
            await store.migrate()
            await store._identify()
        return store

    async def _identify(self) -> None:
        """This Porter's instance id (made once per database) and this process's row."""
        me, now = self.process, self._clock()

        def identify(db: sqlite3.Connection) -> str:
            db.execute("INSERT INTO instance (id, created_at) SELECT ?, ?"
                       " WHERE NOT EXISTS (SELECT 1 FROM instance)", (uuid.uuid4().hex, now))
            seen(db, me, now)
            return str(db.execute("SELECT id FROM instance").fetchone()[0])

        self.instance_id = await self._write(identify)

    async def reclaim_from_dead(self) -> int:
        """Record this process as alive, and take back at once the jobs held by processes known
        to be gone instead of waiting out their lease; how many were taken back. Gone: on this
        host and no longer running (see identity.py), or anywhere and not seen for `GONE_AFTER`
        seconds (its row would otherwise stay for ever)."""
        me, now = self.process, self._clock()

        def reclaim(db: sqlite3.Connection) -> int:
            seen(db, me, now)
            rows = db.execute("SELECT id, host, boot_id, pid, pid_start, seen_at FROM processes"
                              " WHERE id != ?", (me.id,)).fetchall()
            released = 0
            for row in rows:
                silent = row[5] is not None and row[5] < now - GONE_AFTER
                if not silent and not me.knows_gone(ProcessIdentity(*row[:5])):
                    continue
                released += release_claims(db, row[0], now)
                db.execute("DELETE FROM processes WHERE id = ?", (row[0],))
            return released

        return self._changed_if(await self._write(reclaim), jobs_only=True)

    async def close(self) -> None:
        if self._intake is not None:
            await self._intake.stop()
        if self.instance_id:
            # Leaving cleanly: what this process still holds is free for the next one now.
            me, now = self.process.id, self._clock()

            def leave(db: sqlite3.Connection) -> None:
                release_claims(db, me, now)
                db.execute("DELETE FROM processes WHERE id = ?", (me,))

            with contextlib.suppress(sqlite3.Error, psycopg.Error, ValueError):
                await self._write(leave)
        await self._backend.close()

    async def ping(self) -> bool:
        try:
            rows = await self._read("SELECT 1")
        except (sqlite3.Error, psycopg.Error):
            return False
        return bool(rows) and rows[0][0] == 1

    # -- migrations ---------------------------------------------------------------------------

    # porter/store/pg_migrations.py imports this module: it is imported where it is used.

    async def applied_versions(self) -> set[int]:
        if isinstance(self._backend, PgBackend):
            from porter.store.pg_migrations import SCHEMA_MIGRATIONS
            create = SCHEMA_MIGRATIONS
        else:
            create = ("CREATE TABLE IF NOT EXISTS schema_migrations ("
                      " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)")
        await self._write(lambda db: db.execute(create))
        rows = await self._read("SELECT version FROM schema_migrations")
        return {int(row[0]) for row in rows}

    async def pending_migrations(self) -> list[Migration]:
        applied = await self.applied_versions()
        return [m for m in self.known_migrations() if m.version not in applied]

    def known_migrations(self) -> list[Migration]:
        """Every migration this Porter has for the store's database, in order."""
        if isinstance(self._backend, PgBackend):
            from porter.store.pg_migrations import postgres_migrations
            return postgres_migrations()
        return migrations()

    async def migrate(self) -> list[Migration]:
        """Apply every pending migration, each in its own transaction (on PostgreSQL under the
        migration runner's advisory lock, porter/store/pg_migrations.py)."""
        if isinstance(self._backend, PgBackend):
            from porter.store.pg_migrations import migrate
            return await asyncio.to_thread(migrate, self._backend.url, clock=self._clock)
        pending = await self.pending_migrations()
        for migration in pending:
            now = self._clock()

            def apply(db: sqlite3.Connection, migration: Migration = migration,
                      now: float = now) -> None:
                for statement in _statements(migration.sql):
                    db.execute(statement)
                db.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, now),
                )

            await self._write(apply)
        return pending


async def _open_sqlite(path: Path) -> SqliteBackend:
    path.parent.mkdir(parents=True, exist_ok=True)
    _make_private(path)
    writer = await aiosqlite.connect(path, isolation_level=None)
    reader = await aiosqlite.connect(path, isolation_level=None)
    for conn in (writer, reader):
        conn.row_factory = sqlite3.Row
        await conn.execute("PRAGMA busy_timeout = 5000")
        await conn.execute("PRAGMA foreign_keys = ON")
    await writer.execute("PRAGMA journal_mode = WAL")
    await writer.execute("PRAGMA synchronous = FULL")
    return SqliteBackend(writer, reader)


def _make_private(path: Path) -> None:
    """Only Porter's user may read the database: it holds private issue text and prompts.

    SQLite would create the file 0644 less the umask (which Porter does not control), and gives
    its -wal and -shm the main file's mode, so creating the main file 0600 first makes all three
    private. Files left looser by an older Porter are tightened.
    """
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
    for file in (path, *(path.with_name(path.name + suffix) for suffix in ("-wal", "-shm"))):
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & 0o077:
            os.chmod(file, mode & 0o700)
            log.warning("%s was open to other users (mode %04o); tightened it to %04o",
                        file, mode, mode & 0o700)


def _statements(sql: str) -> list[str]:
    statements, buffer = [], ""
    for line in sql.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements


def seen(db: sqlite3.Connection, me: ProcessIdentity, now: float) -> None:
    """This process's row, made or marked seen now (made again if another process, not having
    seen it for `GONE_AFTER`, took it for gone: its claims were released, and fenced)."""
    db.execute("INSERT INTO processes (id, host, boot_id, pid, pid_start, started_at, seen_at)"
               " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET seen_at ="
               " excluded.seen_at", (me.id, me.host, me.boot_id, me.pid, me.pid_start, now, now))
