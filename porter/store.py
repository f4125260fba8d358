"""The store: every SQL statement Porter runs lives in this module (and its migrations).

SQLite in WAL mode through aiosqlite. One connection writes, one reads, so reads never queue behind
a write transaction. Durability: `synchronous=FULL`. In WAL mode NORMAL would not fsync the log at
each commit, so a power cut could lose a delivery we already acknowledged, and GitHub never
redelivers on its own (docs/platform-notes.md §B.4). FULL costs one fsync per commit, and intake
commits concurrent deliveries in one transaction (group commit), so the fsync is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import stat
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiosqlite

from porter.commands import Control, Reply, Run
from porter.errors import PorterError
from porter.identity import ProcessIdentity
from porter.models import TASK_FIELDS, AgentRun, IntakeResult, Job, Task, TaskEvent, TaskFilter
from porter.states import (
    FINAL_REACTION,
    REACT_JOB,
    STATUS_JOB,
    TaskState,
    can_retry,
    can_transition,
    event_kind,
)
from porter.webhooks import Trigger

log = logging.getLogger(__name__)
Clock = Callable[[], float]
T = TypeVar("T")
MAX_BATCH = 200  # keeps a batch's bound parameters far under SQLite's limit


class StoreError(PorterError):
    """The database could not do what was asked."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


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


def migrations() -> list[Migration]:
    found = []
    for entry in resources.files("porter.migrations").iterdir():
        stem = entry.name.removesuffix(".sql")
        if entry.name.endswith(".sql") and stem[:4].isdigit():
            found.append(Migration(int(stem[:4]), stem[5:], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


class Store:
    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection,
                 *, clock: Clock) -> None:
        self._writer = writer
        self._reader = reader
        self._clock = clock
        self.process = ProcessIdentity.current()
        self.instance_id = ""  # this Porter's, kept in the database; set once migrated
        self._lock = asyncio.Lock()
        self._intake: IntakeWriter | None = None
        self._listeners: dict[str, list[Callable[[], None]]] = {"jobs": [], "tasks": []}

    @classmethod
    async def open(cls, path: Path | str, *, clock: Clock = time.time,
                   migrate: bool = True) -> Store:
        path = Path(path)
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
        store = cls(writer, reader, clock=clock)
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
            db.execute("INSERT INTO processes (id, host, boot_id, pid, pid_start, started_at)"
                       " VALUES (?, ?, ?, ?, ?, ?)",
                       (me.id, me.host, me.boot_id, me.pid, me.pid_start, now))
            return str(db.execute("SELECT id FROM instance").fetchone()[0])

        self.instance_id = await self._write(identify)

    async def reclaim_from_dead(self) -> int:
        """Take back at once the jobs held by processes known to be gone (see identity.py),
        instead of waiting out their lease; how many were taken back."""
        me, now = self.process, self._clock()

        def reclaim(db: sqlite3.Connection) -> int:
            rows = db.execute("SELECT id, host, boot_id, pid, pid_start FROM processes"
                              " WHERE id != ?", (me.id,)).fetchall()
            released = 0
            for row in rows:
                if not me.knows_gone(ProcessIdentity(*row)):
                    continue
                released += db.execute(
                    "UPDATE jobs SET state = 'pending', locked_until = NULL, claimed_by = NULL,"
                    " updated_at = ? WHERE state = 'running' AND claimed_by = ?",
                    (now, row[0])).rowcount
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
                db.execute("UPDATE jobs SET state = 'pending', locked_until = NULL,"
                           " claimed_by = NULL, updated_at = ? WHERE state = 'running'"
                           " AND claimed_by = ?", (now, me))
                db.execute("DELETE FROM processes WHERE id = ?", (me,))

            with contextlib.suppress(sqlite3.Error, ValueError):
                await self._write(leave)
        await self._writer.close()
        await self._reader.close()

    def subscribe(self, listener: Callable[[], None], *, to: Literal["jobs", "tasks"]) -> None:
        """Call `listener` after every commit that added or re-armed a job (`jobs`: to wake the
        job runner), or that moved a task (`tasks`: to wake the dispatcher, as a slot may be
        free). Services need not tell each other."""
        self._listeners[to].append(listener)

    def _changed_if(self, result: T, *, jobs_only: bool = False) -> T:
        """Tell the listeners, when `result` says the commit changed something."""
        if result:
            for listener in self._listeners["jobs"]:
                listener()
            if not jobs_only:
                for listener in self._listeners["tasks"]:
                    listener()
        return result

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` as one transaction on the writer's thread.

        One thread hop per transaction: under load the event loop is busy, and each extra hop
        (BEGIN, every statement, COMMIT) would wait its turn behind the HTTP traffic. aiosqlite's
        public API costs a hop per statement, so this uses its queue-a-function primitive.
        """
        async with self._lock:
            result: T = await self._writer._execute(  # type: ignore[no-untyped-call]
                _in_transaction, self._writer._conn, work
            )
            return result

    # -- migrations ---------------------------------------------------------------------------

    async def applied_versions(self) -> set[int]:
        await self._writer.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        rows = await self._writer.execute_fetchall("SELECT version FROM schema_migrations")
        return {int(row[0]) for row in rows}

    async def pending_migrations(self) -> list[Migration]:
        applied = await self.applied_versions()
        return [m for m in migrations() if m.version not in applied]

    async def migrate(self) -> list[Migration]:
        """Apply every pending migration, each in its own transaction."""
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

    async def ping(self) -> bool:
        try:
            rows = list(await self._reader.execute_fetchall("SELECT 1"))
        except sqlite3.Error:
            return False
        return bool(rows) and rows[0][0] == 1

    # -- intake -------------------------------------------------------------------------------

    def intake(self, *, default_agent: str) -> IntakeWriter:
        if self._intake is None:
            self._intake = IntakeWriter(self, default_agent=default_agent)
        return self._intake

    async def record_triggers(
        self, triggers: Sequence[Trigger], *, default_agent: str
    ) -> list[IntakeResult]:
        """Record deliveries with their task or command job, all in one transaction."""
        batch = _PreparedIntake.build(triggers, default_agent=default_agent, now=self._clock())
        return await self._write(lambda db: _record_triggers(db, batch))

    # -- tasks --------------------------------------------------------------------------------

    async def get_task(self, task_id: int) -> Task | None:
        rows = list(await self._reader.execute_fetchall(
            "SELECT * FROM tasks WHERE id = ?", (task_id,)
        ))
        return _task(rows[0]) if rows else None

    async def list_tasks(
        self, where: TaskFilter | None = None, *, before: int | None = None, limit: int = 50
    ) -> list[Task]:
        """Newest first; `before` is the keyset cursor (the last id of the previous page)."""
        where = where or TaskFilter()
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("repo", where.repo), ("state", where.state), ("agent", where.agent),
            ("requester", where.requester), ("issue_number", where.issue),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if before is not None:
            clauses.append("id < ?")
            params.append(before)
        sql = "SELECT * FROM tasks"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(max(1, min(limit, 500)))
        rows = await self._reader.execute_fetchall(sql, params)
        return [_task(row) for row in rows]

    async def task_events(self, task_id: int) -> list[TaskEvent]:
        rows = await self._reader.execute_fetchall(
            "SELECT * FROM task_events WHERE task_id = ? ORDER BY id", (task_id,)
        )
        return [
            TaskEvent(row["id"], row["task_id"], row["attempt"], row["at"], row["kind"],
                      row["message"], json.loads(row["data"]))
            for row in rows
        ]

    async def transition(
        self,
        task_id: int,
        *,
        expected: TaskState,
        target: TaskState,
        message: str = "",
        data: dict[str, Any] | None = None,
        stage: str | None = None,
        reason: str | None = None,
    ) -> bool:
        """Compare-and-set the task's state; True when this call made the change."""
        if not can_transition(expected, target):
            raise StoreError(f"no transition from {expected} to {target}")
        now = self._clock()

        def change(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE tasks SET state = ?, stage = COALESCE(?, stage),"
                " reason = COALESCE(?, reason), updated_at = ? WHERE id = ? AND state = ?",
                (target.value, stage, reason, now, task_id, expected.value),
            )
            if cursor.rowcount != 1:
                return False
            _append_event(db, task_id, event_kind(target), message, data or {}, now)
            _task_changed(db, task_id, now)
            return True

        return self._changed_if(await self._write(change))

    async def retry(self, task_id: int, *, message: str = "") -> int | None:
        """Start the next attempt of a finished task; the new attempt number, or None."""
        now = self._clock()

        def again(db: sqlite3.Connection) -> int | None:
            row = db.execute("SELECT state, attempt FROM tasks WHERE id = ?",
                             (task_id,)).fetchone()
            if row is None or not can_retry(TaskState(row[0])):
                return None
            attempt = int(row[1]) + 1
            # authorized_at cleared: each attempt is checked (and acknowledged) afresh.
            db.execute(
                "UPDATE tasks SET state = ?, attempt = ?, stage = NULL, reason = NULL,"
                " authorized_at = NULL, finished_at = NULL, updated_at = ? WHERE id = ?",
                (TaskState.QUEUED.value, attempt, now, task_id),
            )
            _append_event(db, task_id, "retry", message or f"attempt {attempt}",
                          {"attempt": attempt}, now)
            _task_changed(db, task_id, now)
            return attempt

        return self._changed_if(await self._write(again))

    async def add_event(self, task_id: int, kind: str, message: str = "",
                        data: dict[str, Any] | None = None) -> None:
        now = self._clock()
        await self._write(lambda db: _append_event(db, task_id, kind, message, data or {}, now))

    # -- jobs ---------------------------------------------------------------------------------

    async def jobs(self, *, kind: str | None = None, task_id: int | None = None) -> list[Job]:
        clauses: list[str] = []
        params: list[Any] = []
        if kind is not None:
            clauses.append("kind = ?")
            params.append(kind)
        if task_id is not None:
            clauses.append("task_id = ?")
            params.append(task_id)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        rows = await self._reader.execute_fetchall(sql + " ORDER BY id", params)
        return [_job(row) for row in rows]

    async def enqueue(self, kind: str, key: str, payload: dict[str, Any] | None = None, *,
                      task_id: int | None = None, installation_id: int | None = None,
                      run_after: float | None = None, rearm: bool = False,
                      again_when_finished: bool = False) -> int:
        """Add a job once per key.

        `rearm`: the job runs again even if it is running now (bumping `generation`, so the run
        under way cannot mark it done). `again_when_finished`: a finished job runs once more, a
        pending or running one is left as it is.
        """
        now = self._clock()
        due = now if run_after is None else run_after

        def add(db: sqlite3.Connection) -> tuple[int, bool]:
            on_conflict = (
                "DO UPDATE SET state = 'pending', generation = generation + 1, attempts = 0,"
                " run_after = MIN(run_after, excluded.run_after), payload = excluded.payload,"
                " updated_at = excluded.updated_at"
                if rearm else
                "DO UPDATE SET state = 'pending', attempts = 0, run_after = excluded.run_after,"
                " updated_at = excluded.updated_at WHERE jobs.state IN ('done', 'given_up')"
                if again_when_finished else "DO NOTHING"
            )
            added = db.execute(
                "INSERT INTO jobs (kind, key, task_id, installation_id, payload, run_after,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                f" ON CONFLICT(key) {on_conflict}",
                (kind, key, task_id, installation_id, json.dumps(payload or {}), due, now, now),
            ).rowcount > 0
            job_id = int(db.execute("SELECT id FROM jobs WHERE key = ?", (key,)).fetchone()[0])
            return job_id, added

        job_id, added = await self._write(add)
        self._changed_if(added, jobs_only=True)  # a job asked again (keyed) wakes no one
        return job_id

    async def claim_jobs(self, *, now: float, limit: int, lease: float) -> list[Job]:
        """Take due jobs (and ones whose runner died mid-lease) for this runner."""

        def claim(db: sqlite3.Connection) -> list[Job]:
            rows = db.execute(
                "UPDATE jobs SET state = 'running', locked_until = ?, claimed_by = ?,"
                " updated_at = ? WHERE id IN (SELECT id FROM jobs WHERE (state = 'pending' AND"
                " run_after <= ?) OR (state = 'running' AND locked_until < ?)"
                " ORDER BY run_after, id LIMIT ?) RETURNING *",
                (now + lease, self.process.id, now, now, now, limit),
            ).fetchall()
            return sorted((_job(row) for row in rows), key=lambda j: (j.run_after, j.id))

        return await self._write(claim)

    async def next_job_due(self) -> float | None:
        rows = list(await self._reader.execute_fetchall(
            "SELECT MIN(run_after) FROM jobs WHERE state = 'pending'"))
        return rows[0][0] if rows and rows[0][0] is not None else None

    async def finish_job(self, job: Job, *, result: dict[str, Any] | None = None) -> bool:
        """Mark done unless the job was re-armed meanwhile (then it stays pending)."""

        def finish(db: sqlite3.Connection) -> bool:
            done = db.execute(
                "UPDATE jobs SET state = 'done', result = ?, last_error = NULL, updated_at = ?"
                " WHERE id = ? AND generation = ? AND state = 'running'",
                (json.dumps(result or {}), self._clock(), job.id, job.generation),
            ).rowcount == 1
            if not done:
                db.execute("UPDATE jobs SET state = 'pending' WHERE id = ? AND state = 'running'",
                           (job.id,))
            return done

        return await self._write(finish)

    async def reschedule_job(self, job: Job, *, run_after: float, error: str | None,
                             count_attempt: bool = True) -> None:
        def later(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE jobs SET state = 'pending', run_after = ?, last_error = COALESCE(?,"
                " last_error), attempts = attempts + ?, updated_at = ? WHERE id = ?",
                (run_after, error, int(count_attempt), self._clock(), job.id),
            )

        await self._write(later)

    async def give_up_job(self, job: Job, *, error: str) -> None:
        """Stop retrying; the task's timeline says what was not done and why."""
        now = self._clock()

        def stop(db: sqlite3.Connection) -> None:
            given_up = db.execute(
                "UPDATE jobs SET state = 'given_up', last_error = ?, attempts = attempts + 1,"
                " updated_at = ? WHERE id = ? AND generation = ?",
                (error, now, job.id, job.generation),
            ).rowcount == 1
            if not given_up:  # re-armed while it ran: the new request deserves its own tries
                db.execute("UPDATE jobs SET state = 'pending', attempts = 0 WHERE id = ?",
                           (job.id,))
                return
            if job.task_id is not None:
                _append_event(db, job.task_id, "job.given_up", f"{job.kind}: {error}",
                              {"job": job.key}, now)

        await self._write(stop)

    async def save_progress(self, job: Job, progress: dict[str, Any]) -> None:
        """Checkpoint a multi-step job, so a rerun after a crash skips what is done."""
        await self._write(lambda db: db.execute(
            "UPDATE jobs SET progress = ?, updated_at = ? WHERE id = ?",
            (json.dumps(progress), self._clock(), job.id),
        ) and None)

    # -- runs ---------------------------------------------------------------------------------

    async def start_run(self, task: Task, *, run_id: str, token_hash: str, runner: str,
                        job: tuple[str, str, dict[str, Any]]) -> bool:
        """queued → starting for this attempt, with its run and the job that launches its
        machine, in one transaction: a crash cannot leave a starting task with no launch."""
        now = self._clock()

        def start(db: sqlite3.Connection) -> bool:
            cursor = db.execute(
                "UPDATE tasks SET state = 'starting', started_at = ?,"
                " updated_at = ? WHERE id = ? AND state = 'queued' AND attempt = ?",
                (now, now, task.id, task.attempt),
            )
            if cursor.rowcount != 1:
                return False
            db.execute(
                "INSERT INTO runs (id, task_id, attempt, token_hash, runner, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, task.id, task.attempt, token_hash, runner, now, now),
            )
            _append_event(db, task.id, event_kind(TaskState.STARTING),
                          f"starting a {runner} machine", {"run_id": run_id}, now)
            _insert_job(db, task.id, job, now)
            _task_changed(db, task.id, now)
            return True

        return self._changed_if(await self._write(start))

    async def get_run(self, run_id: str) -> AgentRun | None:
        rows = list(await self._reader.execute_fetchall(
            "SELECT * FROM runs WHERE id = ?", (run_id,)))
        return _run(rows[0]) if rows else None

    async def current_run(self, task_id: int) -> AgentRun | None:
        rows = list(await self._reader.execute_fetchall(
            "SELECT * FROM runs WHERE task_id = ? ORDER BY attempt DESC LIMIT 1", (task_id,)))
        return _run(rows[0]) if rows else None

    async def live_runs(self) -> list[AgentRun]:
        rows = await self._reader.execute_fetchall(
            "SELECT * FROM runs WHERE state IN ('launching', 'running') ORDER BY created_at")
        return [_run(row) for row in rows]

    async def set_machine(self, run_id: str, machine_id: str) -> None:
        now = self._clock()
        await self._write(lambda db: db.execute(
            "UPDATE runs SET machine_id = ?, updated_at = ? WHERE id = ?",
            (machine_id, now, run_id)) and None)

    async def run_contact(self, run: AgentRun, *, stage: str | None = None,
                          message: str | None = None) -> tuple[bool, bool]:
        """A call from the machine: note it, and on first contact move the task to running.

        Returns (cancel requested, stage changed).
        """
        now = self._clock()

        def contact(db: sqlite3.Connection) -> tuple[bool, bool]:
            row = db.execute("SELECT stage, cancel_requested FROM runs WHERE id = ?",
                             (run.id,)).fetchone()
            changed = stage is not None and row[0] != stage
            db.execute(
                "UPDATE runs SET state = IIF(state = 'launching', 'running', state),"
                " last_heartbeat_at = ?, stage = COALESCE(?, stage),"
                " message = COALESCE(?, message), updated_at = ? WHERE id = ?",
                (now, stage, message, now, run.id),
            )
            moved = db.execute(
                "UPDATE tasks SET state = 'running', updated_at = ? WHERE id = ?"
                " AND state = 'starting' AND attempt = ?", (now, run.task_id, run.attempt),
            ).rowcount == 1
            if moved:
                _append_event(db, run.task_id, event_kind(TaskState.RUNNING),
                              "the machine is up", {"run_id": run.id}, now)
            if changed:
                _append_event(db, run.task_id, f"stage.{stage}", message or "",
                              {"run_id": run.id}, now)
            if moved or changed:  # the status comment shows the state and the stage
                _task_changed(db, run.task_id, now)
            return bool(row[1]), moved or changed

        cancel, changed = await self._write(contact)
        self._changed_if(changed)
        return cancel, changed

    async def append_log(self, run: AgentRun, *, seq: int, text: str, max_bytes: int) -> bool:
        """Store one (already redacted) chunk; False when it was a repeat or over the cap."""
        now = self._clock()
        size = len(text.encode())

        def append(db: sqlite3.Connection) -> bool:
            used = db.execute("SELECT log_bytes FROM runs WHERE id = ?", (run.id,)).fetchone()[0]
            if used + size > max_bytes:
                return False
            cursor = db.execute(
                "INSERT INTO run_logs (run_id, seq, at, text) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING", (run.id, seq, now, text))
            if cursor.rowcount == 1:
                db.execute("UPDATE runs SET log_bytes = log_bytes + ? WHERE id = ?",
                           (size, run.id))
            return cursor.rowcount == 1

        return await self._write(append)

    async def run_logs(self, run_id: str) -> list[tuple[int, str]]:
        rows = await self._reader.execute_fetchall(
            "SELECT seq, text FROM run_logs WHERE run_id = ? ORDER BY seq", (run_id,))
        return [(int(row[0]), str(row[1])) for row in rows]

    async def complete_run(
        self,
        run: AgentRun,
        *,
        result: dict[str, Any],
        target: TaskState,
        message: str,
        stage: str | None = None,
        reason: str | None = None,
        fields: dict[str, Any] | None = None,
        job: tuple[str, str, dict[str, Any]] | None = None,
    ) -> bool:
        """Close the run and move its task (running → target) in one transaction.

        The task moves only if it is still on this attempt and running, so a late or repeated
        call changes nothing. `job` (kind, key, payload) is enqueued in the same transaction,
        so a crash can never leave a task publishing with nothing to publish it.
        """
        now = self._clock()
        unknown = set(fields or {}) - TASK_FIELDS
        if unknown:
            raise StoreError(f"not a settable task field: {', '.join(sorted(unknown))}")

        def complete(db: sqlite3.Connection) -> tuple[bool, bool]:
            closed = db.execute(
                "UPDATE runs SET state = 'completed', result = ?, completed_at = ?,"
                " updated_at = ? WHERE id = ? AND state IN ('launching', 'running')",
                (json.dumps(result), now, now, run.id),
            ).rowcount == 1
            if not closed:
                return False, False
            sets = "".join(f", {name} = ?" for name in fields or {})
            moved = db.execute(
                f"UPDATE tasks SET state = ?, stage = COALESCE(?, stage),"
                f" reason = COALESCE(?, reason), updated_at = ?{sets}"
                " WHERE id = ? AND attempt = ? AND state IN ('starting', 'running')",
                (target.value, stage, reason, now, *(fields or {}).values(), run.task_id,
                 run.attempt),
            ).rowcount == 1
            if moved:
                _append_event(db, run.task_id, event_kind(target), message,
                              {"run_id": run.id}, now)
                if job is not None:
                    _insert_job(db, run.task_id, job, now)
                _task_changed(db, run.task_id, now)
            return True, moved

        closed, moved = await self._write(complete)
        self._changed_if(moved)
        return closed

    async def abandon_run(self, run_id: str) -> None:
        """The machine is gone and will not call back: nothing from it is accepted any more."""
        now = self._clock()
        await self._write(lambda db: db.execute(
            "UPDATE runs SET state = 'abandoned', completed_at = ?, updated_at = ?"
            " WHERE id = ? AND state IN ('launching', 'running')", (now, now, run_id)) and None)

    async def request_cancel(self, task_id: int) -> None:
        now = self._clock()
        await self._write(lambda db: db.execute(
            "UPDATE runs SET cancel_requested = 1, updated_at = ? WHERE task_id = ?"
            " AND state IN ('launching', 'running')", (now, task_id)) and None)

    async def finish_task(self, task_id: int, *, expected: Sequence[TaskState],
                          target: TaskState, message: str, stage: str | None = None,
                          reason: str | None = None) -> TaskState | None:
        """Move a task from whichever of `expected` it is in, in one transaction; the state it
        left, or None when it was in none of them."""
        now = self._clock()

        def finish(db: sqlite3.Connection) -> TaskState | None:
            row = db.execute("SELECT state FROM tasks WHERE id = ?", (task_id,)).fetchone()
            current = TaskState(row[0]) if row else None
            if current is None or current not in expected \
                    or not can_transition(current, target):
                return None
            db.execute(
                "UPDATE tasks SET state = ?, stage = COALESCE(?, stage),"
                " reason = COALESCE(?, reason), finished_at = ?, updated_at = ? WHERE id = ?",
                (target.value, stage, reason, now, now, task_id),
            )
            _append_event(db, task_id, event_kind(target), message, {}, now)
            _task_changed(db, task_id, now)
            return current

        return self._changed_if(await self._write(finish))

    async def live_count(self) -> tuple[int, dict[int, int], set[tuple[str, int]]]:
        """Tasks holding a machine: the total, per installation, and the issues they occupy."""
        rows = list(await self._reader.execute_fetchall(
            "SELECT installation_id, repo, issue_number FROM tasks"
            " WHERE state IN ('starting', 'running', 'publishing')"))
        per: dict[int, int] = {}
        issues: set[tuple[str, int]] = set()
        for row in rows:
            per[row[0] or 0] = per.get(row[0] or 0, 0) + 1
            issues.add((row[1], int(row[2])))
        return len(rows), per, issues

    # -- task fields --------------------------------------------------------------------------

    async def update_task(self, task_id: int, **fields: Any) -> None:
        """Set result and reporting columns; never the state (see `transition`)."""
        unknown = set(fields) - TASK_FIELDS
        if unknown:
            raise StoreError(f"not a settable task field: {', '.join(sorted(unknown))}")
        if not fields:
            return
        columns = ", ".join(f"{name} = ?" for name in fields)
        values = [*fields.values(), self._clock(), task_id]
        await self._write(lambda db: db.execute(
            f"UPDATE tasks SET {columns}, updated_at = ? WHERE id = ?", values) and None)

    async def update_context(self, task_id: int, **values: Any) -> None:
        """Merge keys into the task's context (what dispatch learned about its target)."""
        patch = json.dumps(values)
        await self._write(lambda db: db.execute(
            "UPDATE tasks SET context = json_patch(context, ?), updated_at = ? WHERE id = ?",
            (patch, self._clock(), task_id)) and None)

    async def tasks_in_states(self, states: Sequence[TaskState], *, limit: int = 500
                              ) -> list[Task]:
        """Oldest first: the order in which waiting tasks are served."""
        marks = ", ".join("?" * len(states))
        rows = await self._reader.execute_fetchall(
            f"SELECT * FROM tasks WHERE state IN ({marks}) ORDER BY id LIMIT ?",
            [*(s.value for s in states), limit],
        )
        return [_task(row) for row in rows]


class IntakeWriter:
    """Group commit: deliveries that arrive while a batch commits share the next transaction.

    Each caller is answered only after the transaction holding its delivery has committed.
    """

    def __init__(self, store: Store, *, default_agent: str) -> None:
        self._store = store
        self._default_agent = default_agent
        self._queue: asyncio.Queue[tuple[Trigger, asyncio.Future[IntakeResult]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def submit(self, trigger: Trigger) -> IntakeResult:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        future: asyncio.Future[IntakeResult] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((trigger, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await self._store.record_triggers(
                    [trigger for trigger, _ in batch], default_agent=self._default_agent
                )
            except Exception as exc:  # every waiter learns the batch failed; none is left hanging
                for _, future in batch:
                    if not future.done():
                        future.set_exception(StoreError(f"could not record delivery: {exc}"))
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def _in_transaction(db: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    db.execute("BEGIN IMMEDIATE")
    try:
        result = work(db)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return result


def _insert_job(db: sqlite3.Connection, task_id: int, job: tuple[str, str, dict[str, Any]],
                now: float) -> None:
    kind, key, payload = job
    db.execute(
        "INSERT INTO jobs (kind, key, task_id, installation_id, payload, run_after, created_at,"
        " updated_at) SELECT ?, ?, id, installation_id, ?, ?, ?, ? FROM tasks WHERE id = ?"
        " ON CONFLICT(key) DO NOTHING",
        (kind, key, json.dumps(payload), now, now, now, task_id),
    )


def _task_changed(db: sqlite3.Connection, task_id: int, now: float) -> None:
    """What a state change owes the requester, in its own transaction (states.py): the status
    comment re-rendered (re-armed even while a render runs), and the final reaction."""
    row = db.execute(
        "SELECT state, attempt, status_comment_id, installation_id, repo, comment_kind,"
        " comment_id FROM tasks WHERE id = ?", (task_id,)).fetchone()
    state = TaskState(row[0])
    if state is TaskState.REJECTED and row[2] is None:
        return  # refused before it was acknowledged: the reply said it all
    db.execute(
        "INSERT INTO jobs (kind, key, task_id, installation_id, payload, run_after, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET"
        " state = 'pending', generation = generation + 1, attempts = 0,"
        " run_after = MIN(run_after, excluded.run_after), updated_at = excluded.updated_at",
        (STATUS_JOB, f"status:{task_id}", task_id, row[3], json.dumps({"task_id": task_id}),
         now, now, now),
    )
    final = FINAL_REACTION.get(state)
    if final is not None:
        payload = {"repo": row[4], "comment_kind": row[5], "comment_id": row[6],
                   "content": final}
        db.execute(
            "INSERT INTO jobs (kind, key, task_id, installation_id, payload, run_after,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(key) DO NOTHING",
            (REACT_JOB, f"react:{task_id}:{row[1]}:final", task_id, row[3],
             json.dumps(payload), now, now, now),
        )


def _append_event(db: sqlite3.Connection, task_id: int, kind: str, message: str,
                  data: dict[str, Any], now: float) -> None:
    db.execute(
        "INSERT INTO task_events (task_id, attempt, at, kind, message, data)"
        " SELECT id, attempt, ?, ?, ?, ? FROM tasks WHERE id = ?",
        (now, kind, message, json.dumps(data), task_id),
    )


@dataclass(frozen=True)
class _PreparedIntake:
    """A batch's rows, built on the event loop so the writer thread runs almost no Python.

    Python code on the writer thread competes with the event loop for the GIL, and every time
    the loop releases it (hashing a body, writing a socket) it can wait a whole switch interval
    to get it back. Keeping the thread in SQLite's C code keeps the loop fast.
    """

    deliveries: list[Any]
    delivery_ids: list[str]
    tasks: list[tuple[Any, ...] | None]
    jobs: list[tuple[Any, ...] | None]
    now: float

    @classmethod
    def build(cls, triggers: Sequence[Trigger], *, default_agent: str,
              now: float) -> _PreparedIntake:
        return cls(
            deliveries=[v for t in triggers for v in (t.delivery_id, t.event, t.comment_key, now)],
            delivery_ids=[t.delivery_id for t in triggers],
            tasks=[_task_values(t, default_agent, now) if isinstance(t.command, Run) else None
                   for t in triggers],
            jobs=[None if isinstance(t.command, Run) else (
                "command", f"command:{t.comment_key}", t.installation_id,
                json.dumps(_command_payload(t)), now, now, now,
            ) for t in triggers],
            now=now,
        )


def _record_triggers(db: sqlite3.Connection, batch: _PreparedIntake) -> list[IntakeResult]:
    count = len(batch.delivery_ids)
    fresh = {row[0] for row in db.execute(
        "INSERT INTO deliveries (delivery_id, event, comment_key, received_at) VALUES "
        + _placeholders(count, 4) + " ON CONFLICT DO NOTHING RETURNING delivery_id",
        batch.deliveries,
    ).fetchall()}
    chosen = []
    for index, delivery_id in enumerate(batch.delivery_ids):
        if delivery_id in fresh:  # the first of any in-batch twins wins
            fresh.discard(delivery_id)
            chosen.append(index)
    results = [IntakeResult(duplicate=True)] * count
    runs = [i for i in chosen if batch.tasks[i] is not None]
    jobs = [i for i in chosen if batch.jobs[i] is not None]
    if runs:
        newest = db.execute("SELECT COALESCE(MAX(id), 0) FROM tasks").fetchone()[0]
        ids = dict(db.execute(
            "INSERT INTO tasks (delivery_id, comment_key, repo, installation_id, issue_number,"
            " is_pull_request, comment_kind, comment_id, comment_url, requester, requester_id,"
            " agent, model, instruction, context, state, attempt, created_at, updated_at)"
            " VALUES " + _placeholders(len(runs), 19) + " RETURNING delivery_id, id",
            [v for i in runs for v in batch.tasks[i] or ()],
        ).fetchall())
        # Ids only grow (AUTOINCREMENT) and this transaction is the only writer.
        db.execute(
            "INSERT INTO task_events (task_id, attempt, at, kind, message, data)"
            " SELECT id, 1, ?, ?, 'queued from ' || IIF(comment_url = '', comment_key,"
            " comment_url), json_object('delivery_id', delivery_id) FROM tasks WHERE id > ?",
            (batch.now, event_kind(TaskState.QUEUED), newest),
        )
        for i in runs:
            results[i] = IntakeResult(duplicate=False, task_id=ids[batch.delivery_ids[i]])
    if jobs:
        job_ids = dict(db.execute(
            "INSERT INTO jobs (kind, key, installation_id, payload, run_after, created_at,"
            " updated_at) VALUES " + _placeholders(len(jobs), 7)
            + " ON CONFLICT DO NOTHING RETURNING key, id",
            [v for i in jobs for v in batch.jobs[i] or ()],
        ).fetchall())
        for i in jobs:
            job = batch.jobs[i]
            job_id = job_ids.get(job[1]) if job else None
            results[i] = IntakeResult(duplicate=job_id is None, job_id=job_id)
    return results


def _task_values(t: Trigger, default_agent: str, now: float) -> tuple[Any, ...]:
    assert isinstance(t.command, Run)
    return (
        t.delivery_id, t.comment_key, t.repo, t.installation_id, t.issue_number,
        int(t.is_pull_request), t.comment_kind, t.comment_id, t.comment_url, t.requester,
        t.requester_id, t.command.agent or default_agent, t.command.model, t.command.instruction,
        json.dumps(t.context), TaskState.QUEUED.value, 1, now, now,
    )


def _command_payload(t: Trigger) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "repo": t.repo, "issue_number": t.issue_number, "comment_kind": t.comment_kind,
        "comment_id": t.comment_id, "requester": t.requester, "delivery_id": t.delivery_id,
    }
    if isinstance(t.command, Control):
        payload["action"] = t.command.action
    elif isinstance(t.command, Reply):
        payload["action"] = "reply"
        payload["text"] = t.command.text
    return payload


def _placeholders(rows: int, columns: int) -> str:
    row = "(" + ", ".join("?" * columns) + ")"
    return ", ".join([row] * rows)


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


def _task(row: sqlite3.Row) -> Task:
    return Task(
        id=row["id"], repo=row["repo"], installation_id=row["installation_id"],
        issue_number=row["issue_number"], is_pull_request=bool(row["is_pull_request"]),
        comment_kind=row["comment_kind"], comment_id=row["comment_id"],
        comment_url=row["comment_url"], requester=row["requester"],
        requester_id=row["requester_id"], agent=row["agent"], model=row["model"],
        instruction=row["instruction"], state=TaskState(row["state"]), stage=row["stage"],
        reason=row["reason"], attempt=row["attempt"], created_at=row["created_at"],
        updated_at=row["updated_at"], delivery_id=row["delivery_id"],
        context=json.loads(row["context"]),
        **{name: row[name] for name in TASK_FIELDS if name != "installation_id"},
    )


def _run(row: sqlite3.Row) -> AgentRun:
    return AgentRun(
        id=row["id"], task_id=row["task_id"], attempt=row["attempt"],
        token_hash=row["token_hash"], runner=row["runner"], machine_id=row["machine_id"],
        state=row["state"], stage=row["stage"], message=row["message"],
        last_heartbeat_at=row["last_heartbeat_at"],
        cancel_requested=bool(row["cancel_requested"]), log_bytes=row["log_bytes"],
        result=json.loads(row["result"]) if row["result"] else None,
        created_at=row["created_at"], completed_at=row["completed_at"],
    )


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"], kind=row["kind"], key=row["key"], task_id=row["task_id"],
        installation_id=row["installation_id"], payload=json.loads(row["payload"]),
        state=row["state"], attempts=row["attempts"], run_after=row["run_after"],
        last_error=row["last_error"],
        result=json.loads(row["result"]) if row["result"] else None,
        generation=row["generation"], progress=json.loads(row["progress"]),
    )
