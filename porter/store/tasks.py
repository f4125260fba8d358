"""Tasks: reads, compare-and-set state changes, events, and what each change owes the requester.

A state change enqueues its side effects (the status comment, the final reaction) in the same
transaction (`task_changed`), so a crash between the two cannot leave a stale status comment.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from typing import Any

from porter.models import TASK_FIELDS, Task, TaskEvent, TaskFilter
from porter.notices import NOTIFIED, NotifyJob, ReactJob, StatusJob
from porter.states import (
    FINAL_REACTION,
    LIVE,
    REACT_JOB,
    STATUS_JOB,
    TaskState,
    can_retry,
    can_transition,
    event_kind,
)
from porter.store.base import StoreBase, StoreError, marks, put_job
from porter.store.listing import (
    BRANCH_NAMES,
    BRANCH_NAMES_IN,
    PG_BRANCH_NAMES,
    PG_BRANCH_NAMES_IN,
    PG_REPO_NAMES,
    REPO_NAMES,
    VISIBLE_REPO_NAMES,
    page_query,
    ranked,
)
from porter.store.rows import to_event, to_task

# Type-ahead reads at most this many distinct names before matching what was typed.
MAX_NAMES = 10_000


class TaskStore(StoreBase):
    async def get_task(self, task_id: int) -> Task | None:
        rows = list(await self._read(
            "SELECT * FROM tasks WHERE id = ?", (task_id,)
        ))
        return to_task(rows[0]) if rows else None

    async def list_tasks(
        self, where: TaskFilter | None = None, *, before: int | None = None,
        after: int | None = None, limit: int = 50,
    ) -> list[Task]:
        """Newest first; `before` is the keyset cursor (the last id of the previous page),
        `after` the first id of the next page, to go back to the newer one. `where.repos`
        keeps to the repositories a viewer sees (the query is planned in listing.py)."""
        query = page_query(where or TaskFilter(), before=before, after=after, limit=limit,
                           hints=self.dialect == "sqlite")
        if query is None:
            return []
        rows = await self._read(*query)
        return [to_task(row) for row in rows]

    async def suggest_repos(self, typed: str, *, repos: tuple[str, ...] | None,
                            limit: int = 20) -> list[str]:
        """Repositories with tasks whose name contains `typed`, among `repos` (None: all)."""
        if repos is None:
            names = REPO_NAMES if self.dialect == "sqlite" else PG_REPO_NAMES
            rows = await self._read(names, (MAX_NAMES,))
        else:
            rows = await self._read(VISIBLE_REPO_NAMES, (json.dumps(repos),))
        return ranked((str(row[0]) for row in rows), typed, limit=limit)

    async def suggest_branches(self, typed: str, *, repos: tuple[str, ...] | None,
                               limit: int = 20) -> list[str]:
        """Base branches of tasks in `repos` (None: any repository) containing `typed`."""
        if repos is None:
            names = BRANCH_NAMES if self.dialect == "sqlite" else PG_BRANCH_NAMES
            rows = await self._read(names, (MAX_NAMES,))
        else:
            names = BRANCH_NAMES_IN if self.dialect == "sqlite" else PG_BRANCH_NAMES_IN
            rows = await self._read(names, (json.dumps(repos), MAX_NAMES))
        return ranked((str(row[0]) for row in rows), typed, limit=limit)

    async def tasks_in_states(self, states: Collection[TaskState], *, limit: int = 500
                              ) -> list[Task]:
        """Oldest first: the order in which waiting tasks are served."""
        rows = await self._read(
            f"SELECT * FROM tasks WHERE state IN ({marks(states)})"
            " ORDER BY id LIMIT ?", [*states, limit],
        )
        return [to_task(row) for row in rows]

    async def live_count(self) -> tuple[int, dict[int, int], set[tuple[str, int]]]:
        """Tasks holding a machine: the total, per installation, and the issues they occupy."""
        rows = list(await self._read(
            "SELECT installation_id, repo, issue_number FROM tasks"
            f" WHERE state IN ({marks(LIVE)})", [*LIVE]))
        per: dict[int, int] = {}
        issues: set[tuple[str, int]] = set()
        for row in rows:
            per[row[0] or 0] = per.get(row[0] or 0, 0) + 1
            issues.add((row[1], int(row[2])))
        return len(rows), per, issues

    async def task_events(self, task_id: int) -> list[TaskEvent]:
        rows = await self._read(
            "SELECT * FROM task_events WHERE task_id = ? ORDER BY id", (task_id,)
        )
        return [to_event(row) for row in rows]

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
            append_event(db, task_id, event_kind(target), message, data or {}, now)
            task_changed(db, task_id, now, notify=self.notify_channels)
            return True

        return self._changed_if(await self._write(change))

    async def finish_task(self, task_id: int, *, expected: Collection[TaskState],
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
            append_event(db, task_id, event_kind(target), message, {}, now)
            task_changed(db, task_id, now, notify=self.notify_channels)
            return current

        return self._changed_if(await self._write(finish))

    async def retry(self, task_id: int, *, message: str = "") -> int | None:
        """Start the next attempt of a finished task; the new attempt number, or None."""
        now = self._clock()

        def again(db: sqlite3.Connection) -> int | None:
            row = db.execute("SELECT state, attempt FROM tasks WHERE id = ?",
                             (task_id,)).fetchone()
            if row is None or not can_retry(TaskState(row[0])):
                return None
            attempt = int(row[1]) + 1
            # authorized_at cleared: each attempt is checked (and acknowledged) afresh. The base
            # too: an attempt builds on the branch as it is then (after the one the last
            # attempt worked on moved, say), resolved again at its dispatch and launch.
            db.execute(
                "UPDATE tasks SET state = ?, attempt = ?, stage = NULL, reason = NULL,"
                " authorized_at = NULL, finished_at = NULL, base_ref = NULL, base_sha = NULL,"
                " updated_at = ? WHERE id = ?",
                (TaskState.QUEUED.value, attempt, now, task_id),
            )
            append_event(db, task_id, "retry", message or f"attempt {attempt}",
                         {"attempt": attempt}, now)
            task_changed(db, task_id, now, notify=self.notify_channels)
            return attempt

        return self._changed_if(await self._write(again))

    async def add_event(self, task_id: int, kind: str, message: str = "",
                        data: dict[str, Any] | None = None) -> None:
        now = self._clock()
        await self._write(lambda db: append_event(db, task_id, kind, message, data or {}, now))

    async def update_task(self, task_id: int, **fields: Any) -> None:
        """Set result and reporting columns; never the state (see `transition`)."""
        check_settable(fields)
        if not fields:
            return
        columns = ", ".join(f"{name} = ?" for name in fields)
        values = [*fields.values(), self._clock(), task_id]
        await self._write(lambda db: db.execute(
            f"UPDATE tasks SET {columns}, updated_at = ? WHERE id = ?",
            values) and None)

    async def update_context(self, task_id: int, **values: Any) -> None:
        """Merge keys into the task's context (what dispatch learned about its target)."""
        patch = json.dumps(values)
        # jsonb's `||` replaces top-level keys, as json_patch does for the flat, non-null values
        # given here (docs/postgres-port.md, section 2).
        merged = ("(context::jsonb || CAST(? AS jsonb))::text" if self.dialect == "postgresql"
                  else "json_patch(context, ?)")
        await self._write(lambda db: db.execute(
            f"UPDATE tasks SET context = {merged}, updated_at = ? WHERE id = ?",
            (patch, self._clock(), task_id)) and None)


def check_settable(fields: dict[str, Any]) -> None:
    """Only result and reporting columns are set by name (TASK_FIELDS); never the state."""
    unknown = set(fields) - TASK_FIELDS
    if unknown:
        raise StoreError(f"not a settable task field: {', '.join(sorted(unknown))}")


def append_event(db: sqlite3.Connection, task_id: int, kind: str, message: str,
                 data: dict[str, Any], now: float) -> None:
    db.execute(
        "INSERT INTO task_events (task_id, attempt, at, kind, message, data)"
        " SELECT id, attempt, ?, ?, ?, ? FROM tasks WHERE id = ?",
        (now, kind, message, json.dumps(data), task_id),
    )


def insert_job(db: sqlite3.Connection, task_id: int, job: tuple[str, str, dict[str, Any]],
               now: float) -> None:
    """Enqueue a task's job (kind, key, payload) under the task's installation, once per key."""
    kind, key, payload = job
    installation_id = db.execute("SELECT installation_id FROM tasks WHERE id = ?",
                                 (task_id,)).fetchone()[0]
    put_job(db, kind, key, payload, task_id=task_id, installation_id=installation_id, now=now)


def task_changed(db: sqlite3.Connection, task_id: int, now: float, *,
                 notify: Collection[str]) -> None:
    """What a state change owes the requester, in its own transaction (states.py): the status
    comment re-rendered (re-armed even while a render runs), and the final reaction; and the
    operator, on an end: a notification per channel in `notify` (Store.notify_channels)."""
    row = db.execute(
        "SELECT state, attempt, status_comment_id, installation_id, repo, comment_kind,"
        " comment_id FROM tasks WHERE id = ?", (task_id,)).fetchone()
    state = TaskState(row[0])
    if state in NOTIFIED:
        for channel in notify:  # no installation: not a GitHub write, not paced as one
            note = NotifyJob(task_id, attempt=row[1], channel=channel, state=state.value)
            put_job(db, note.kind, note.key, note.dump(), task_id=task_id, installation_id=None,
                    now=now)
    if state is TaskState.REJECTED and row[2] is None:
        return  # refused before it was acknowledged: the reply said it all
    status = StatusJob(task_id)
    put_job(db, STATUS_JOB, status.key, status.dump(), task_id=task_id, installation_id=row[3],
            now=now, rearm=True)
    final = FINAL_REACTION.get(state)
    if final is not None:
        react = ReactJob(repo=row[4], comment_kind=row[5], comment_id=row[6], content=final)
        put_job(db, REACT_JOB, f"react:{task_id}:{row[1]}:final", react.dump(), task_id=task_id,
                installation_id=row[3], now=now)
