"""The store: every SQL statement Porter runs lives in this module (and its migrations).

SQLite in WAL mode through aiosqlite. One connection writes, one reads, so reads never queue behind
a write transaction. Durability: `synchronous=FULL`. In WAL mode NORMAL would not fsync the log at
each commit, so a power cut could lose a delivery we already acknowledged, and GitHub never
redelivers on its own (PLATFORM_NOTES B.4). FULL costs one fsync per commit, and intake commits
concurrent deliveries in one transaction (group commit), so the fsync is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

from porter.commands import Control, Reply, Run
from porter.errors import PorterError
from porter.models import IntakeResult, Job, Task, TaskEvent, TaskFilter
from porter.states import TaskState, can_retry, can_transition, event_kind
from porter.webhooks import Trigger

Clock = Callable[[], float]
MAX_BATCH = 200  # keeps a batch's bound parameters far under SQLite's limit


class StoreError(PorterError):
    """The database could not do what was asked."""


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


class Store:
    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection,
                 *, clock: Clock) -> None:
        self._writer = writer
        self._reader = reader
        self._clock = clock
        self._lock = asyncio.Lock()
        self._intake: IntakeWriter | None = None

    @classmethod
    async def open(cls, path: Path | str, *, clock: Clock = time.time,
                   migrate: bool = True) -> Store:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
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
        return store

    async def close(self) -> None:
        if self._intake is not None:
            await self._intake.stop()
        await self._writer.close()
        await self._reader.close()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            await self._writer.execute("COMMIT")

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
            async with self._transaction() as db:
                for statement in _statements(migration.sql):
                    await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, self._clock()),
                )
        return pending

    async def ping(self) -> bool:
        try:
            rows = await self._reader.execute_fetchall("SELECT 1")
        except sqlite3.Error:
            return False
        return list(rows) == [(1,)] or bool(rows)

    # -- intake -------------------------------------------------------------------------------

    def intake(self, *, default_agent: str) -> IntakeWriter:
        if self._intake is None:
            self._intake = IntakeWriter(self, default_agent=default_agent)
        return self._intake

    async def record_triggers(
        self, triggers: Sequence[Trigger], *, default_agent: str
    ) -> list[IntakeResult]:
        """Record deliveries with their task or command job, all in one transaction."""
        now = self._clock()
        results: list[IntakeResult] = [IntakeResult(duplicate=True) for _ in triggers]
        async with self._transaction() as db:
            rows = await _fetch(
                db,
                "INSERT INTO deliveries (delivery_id, event, comment_key, received_at) VALUES "
                + _placeholders(len(triggers), 4)
                + " ON CONFLICT DO NOTHING RETURNING delivery_id",
                [v for t in triggers for v in (t.delivery_id, t.event, t.comment_key, now)],
            )
            fresh = {row[0] for row in rows}
            chosen: list[tuple[int, Trigger]] = []
            for index, trigger in enumerate(triggers):
                if trigger.delivery_id in fresh:  # first of any in-batch twins wins
                    fresh.discard(trigger.delivery_id)
                    chosen.append((index, trigger))
            runs = [(i, t) for i, t in chosen if isinstance(t.command, Run)]
            others = [(i, t) for i, t in chosen if not isinstance(t.command, Run)]
            if runs:
                task_rows = await _fetch(
                    db,
                    "INSERT INTO tasks (delivery_id, comment_key, repo, installation_id,"
                    " issue_number, is_pull_request, comment_kind, comment_id, comment_url,"
                    " requester, requester_id, agent, model, instruction, context, state,"
                    " attempt, created_at, updated_at) VALUES "
                    + _placeholders(len(runs), 19)
                    + " RETURNING id, delivery_id",
                    [v for _, t in runs for v in _task_values(t, default_agent, now)],
                )
                ids = {row[1]: int(row[0]) for row in task_rows}
                await db.execute(
                    "INSERT INTO task_events (task_id, attempt, at, kind, message, data) VALUES "
                    + _placeholders(len(runs), 6),
                    [v for _, t in runs for v in (
                        ids[t.delivery_id], 1, now, event_kind(TaskState.QUEUED),
                        f"queued from {t.comment_url or t.comment_key}",
                        json.dumps({"delivery_id": t.delivery_id}),
                    )],
                )
                for index, t in runs:
                    results[index] = IntakeResult(duplicate=False, task_id=ids[t.delivery_id])
            if others:
                job_rows = await _fetch(
                    db,
                    "INSERT INTO jobs (kind, key, installation_id, payload, run_after,"
                    " created_at, updated_at) VALUES "
                    + _placeholders(len(others), 7)
                    + " ON CONFLICT DO NOTHING RETURNING id, key",
                    [v for _, t in others for v in (
                        "command", f"command:{t.comment_key}", t.installation_id,
                        json.dumps(_command_payload(t)), now, now, now,
                    )],
                )
                job_ids = {row[1]: int(row[0]) for row in job_rows}
                for index, t in others:
                    job_id = job_ids.get(f"command:{t.comment_key}")
                    results[index] = IntakeResult(duplicate=job_id is None, job_id=job_id)
        return results

    # -- tasks --------------------------------------------------------------------------------

    async def get_task(self, task_id: int) -> Task | None:
        rows = list(await self._reader.execute_fetchall(
            "SELECT * FROM tasks WHERE id = ?", (task_id,)
        ))
        return _task(rows[0]) if rows else None

    async def list_tasks(
        self, where: TaskFilter = TaskFilter(), *, before: int | None = None, limit: int = 50
    ) -> list[Task]:
        """Newest first; `before` is the keyset cursor (the last id of the previous page)."""
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
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE tasks SET state = ?, stage = COALESCE(?, stage),"
                " reason = COALESCE(?, reason), updated_at = ? WHERE id = ? AND state = ?",
                (target.value, stage, reason, now, task_id, expected.value),
            )
            if cursor.rowcount != 1:
                return False
            await self._append_event(db, task_id, event_kind(target), message, data or {}, now)
        return True

    async def retry(self, task_id: int, *, message: str = "") -> int | None:
        """Start the next attempt of a finished task; the new attempt number, or None."""
        now = self._clock()
        async with self._transaction() as db:
            rows = await _fetch(db, "SELECT state, attempt FROM tasks WHERE id = ?", [task_id])
            if not rows or not can_retry(TaskState(rows[0][0])):
                return None
            attempt = int(rows[0][1]) + 1
            cursor = await db.execute(
                "UPDATE tasks SET state = ?, attempt = ?, stage = NULL, reason = NULL,"
                " updated_at = ? WHERE id = ? AND state = ?",
                (TaskState.QUEUED.value, attempt, now, task_id, rows[0][0]),
            )
            if cursor.rowcount != 1:
                return None
            await self._append_event(db, task_id, "retry", message or f"attempt {attempt}",
                                     {"attempt": attempt}, now)
        return attempt

    async def add_event(self, task_id: int, kind: str, message: str = "",
                        data: dict[str, Any] | None = None) -> None:
        async with self._transaction() as db:
            await self._append_event(db, task_id, kind, message, data or {}, self._clock())

    async def _append_event(self, db: aiosqlite.Connection, task_id: int, kind: str,
                            message: str, data: dict[str, Any], now: float) -> None:
        await db.execute(
            "INSERT INTO task_events (task_id, attempt, at, kind, message, data)"
            " SELECT id, attempt, ?, ?, ?, ? FROM tasks WHERE id = ?",
            (now, kind, message, json.dumps(data), task_id),
        )

    # -- jobs ---------------------------------------------------------------------------------

    async def jobs(self, *, kind: str | None = None) -> list[Job]:
        sql, params = "SELECT * FROM jobs", []
        if kind is not None:
            sql, params = sql + " WHERE kind = ?", [kind]
        rows = await self._reader.execute_fetchall(sql + " ORDER BY id", params)
        return [_job(row) for row in rows]


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


def _task_values(t: Trigger, default_agent: str, now: float) -> Iterable[Any]:
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


async def _fetch(db: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> list[sqlite3.Row]:
    cursor = await db.execute(sql, params)
    rows = await cursor.fetchall()
    await cursor.close()
    return list(rows)


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
    )


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"], kind=row["kind"], key=row["key"], task_id=row["task_id"],
        installation_id=row["installation_id"], payload=json.loads(row["payload"]),
        state=row["state"], attempts=row["attempts"], run_after=row["run_after"],
        last_error=row["last_error"],
        result=json.loads(row["result"]) if row["result"] else None,
    )
