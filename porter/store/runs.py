"""Runs: one attempt of a task on a machine, from its start to its completion or abandonment.

Every call from the machine is fenced by the run's attempt and state, so a late or repeated call
from an earlier attempt, or after the end, changes nothing.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from porter.admission import Limits
from porter.models import AgentRun, Task
from porter.states import LIVE, LIVE_RUN, ON_MACHINE, RunState, TaskState, event_kind
from porter.store.base import StoreBase, marks
from porter.store.rows import to_run
from porter.store.tasks import append_event, check_settable, insert_job, task_changed


class RunStore(StoreBase):
    async def start_run(self, task: Task, *, run_id: str, token_hash: str, runner: str,
                        job: tuple[str, str, dict[str, Any]],
                        limits: Limits | None = None) -> bool:
        """queued → starting for this attempt, with its run and the job that launches its
        machine, in one transaction: a crash cannot leave a starting task with no launch.

        With `limits`, the task starts only if what is live in the database still leaves it a
        slot and its issue free: several replicas decide (porter/admission.py) at once, each
        from what it read, and this is where the limits hold across all of them."""
        now = self._clock()

        def start(db: sqlite3.Connection) -> bool:
            if limits is not None and not _slot_free(db, task, limits):
                return False
            cursor = db.execute(
                "UPDATE tasks SET state = ?, started_at = ?,"
                " updated_at = ? WHERE id = ? AND state = ? AND attempt = ?",
                (TaskState.STARTING, now, now, task.id, TaskState.QUEUED, task.attempt),
            )
            if cursor.rowcount != 1:
                return False
            db.execute(  # the schema's default state: launching
                "INSERT INTO runs (id, task_id, attempt, token_hash, runner, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, task.id, task.attempt, token_hash, runner, now, now),
            )
            append_event(db, task.id, event_kind(TaskState.STARTING),
                         f"starting a {runner} machine", {"run_id": run_id}, now)
            insert_job(db, task.id, job, now)
            task_changed(db, task.id, now, notify=self.notify_channels)
            return True

        return self._changed_if(await self._write(start))

    async def get_run(self, run_id: str) -> AgentRun | None:
        rows = list(await self._read(
            "SELECT * FROM runs WHERE id = ?", (run_id,)))
        return to_run(rows[0]) if rows else None

    async def current_run(self, task_id: int) -> AgentRun | None:
        rows = list(await self._read(
            "SELECT * FROM runs WHERE task_id = ? ORDER BY attempt DESC LIMIT 1", (task_id,)))
        return to_run(rows[0]) if rows else None

    async def live_runs(self) -> list[AgentRun]:
        rows = await self._read(
            f"SELECT * FROM runs WHERE state IN ({marks(LIVE_RUN)})"
            " ORDER BY created_at", [*LIVE_RUN])
        return [to_run(row) for row in rows]

    async def set_machine(self, run_id: str, machine_id: str, *,
                          owner: int | None = None) -> None:
        """Record the run's machine and whose Fly account holds it (None: the operator's)."""
        now = self._clock()
        await self._write(lambda db: db.execute(
            "UPDATE runs SET machine_id = ?, runner_owner = ?, updated_at = ? WHERE id = ?",
            (machine_id, owner, now, run_id)) and None)

    async def set_prompt(self, run_id: str, prompt: str) -> None:
        """The prompt the machine was sent, already redacted, for the task page."""
        now = self._clock()
        await self._write(lambda db: db.execute(
            "UPDATE runs SET prompt = ?, updated_at = ? WHERE id = ?",
            (prompt, now, run_id)) and None)

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
                "UPDATE runs SET state = CASE WHEN state = ? THEN ? ELSE state END,"
                " last_heartbeat_at = ?, stage = COALESCE(?, stage),"
                " message = COALESCE(?, message), updated_at = ? WHERE id = ?",
                (RunState.LAUNCHING, RunState.RUNNING, now, stage, message, now, run.id),
            )
            moved = db.execute(
                "UPDATE tasks SET state = ?, updated_at = ? WHERE id = ? AND state = ?"
                " AND attempt = ?",
                (TaskState.RUNNING, now, run.task_id, TaskState.STARTING, run.attempt),
            ).rowcount == 1
            if moved:
                append_event(db, run.task_id, event_kind(TaskState.RUNNING),
                             "the machine is up", {"run_id": run.id}, now)
            if changed:
                append_event(db, run.task_id, f"stage.{stage}", message or "",
                             {"run_id": run.id}, now)
            if moved or changed:  # the status comment shows the state and the stage
                task_changed(db, run.task_id, now, notify=self.notify_channels)
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
        rows = await self._read(
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
        fields = fields or {}
        check_settable(fields)

        def complete(db: sqlite3.Connection) -> tuple[bool, bool]:
            closed = db.execute(
                "UPDATE runs SET state = ?, result = ?, completed_at = ?,"
                f" updated_at = ? WHERE id = ? AND state IN ({marks(LIVE_RUN)})",
                (RunState.COMPLETED, json.dumps(result), now, now, run.id, *LIVE_RUN),
            ).rowcount == 1
            if not closed:
                return False, False
            sets = "".join(f", {name} = ?" for name in fields)
            moved = db.execute(
                f"UPDATE tasks SET state = ?, stage = COALESCE(?, stage),"
                f" reason = COALESCE(?, reason), updated_at = ?{sets}"
                f" WHERE id = ? AND attempt = ? AND state IN ({marks(ON_MACHINE)})",
                (target.value, stage, reason, now, *fields.values(), run.task_id,
                 run.attempt, *ON_MACHINE),
            ).rowcount == 1
            if moved:
                append_event(db, run.task_id, event_kind(target), message,
                             {"run_id": run.id}, now)
                if job is not None:
                    insert_job(db, run.task_id, job, now)
                task_changed(db, run.task_id, now, notify=self.notify_channels)
            return True, moved

        closed, moved = await self._write(complete)
        self._changed_if(moved)
        return closed

    async def abandon_run(self, run_id: str) -> None:
        """The machine is gone and will not call back: nothing from it is accepted any more."""
        now = self._clock()
        await self._write(lambda db: db.execute(
            "UPDATE runs SET state = ?, completed_at = ?, updated_at = ?"
            f" WHERE id = ? AND state IN ({marks(LIVE_RUN)})",
            (RunState.ABANDONED, now, now, run_id, *LIVE_RUN)) and None)

    async def request_cancel(self, task_id: int) -> None:
        now = self._clock()
        await self._write(lambda db: db.execute(
            "UPDATE runs SET cancel_requested = 1, updated_at = ? WHERE task_id = ?"
            f" AND state IN ({marks(LIVE_RUN)})", (now, task_id, *LIVE_RUN)) and None)


def _slot_free(db: sqlite3.Connection, task: Task, limits: Limits) -> bool:
    """Whether `task` may start beside the tasks live now (inside the starting transaction)."""
    total, same_installation, same_issue = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(CASE WHEN COALESCE(installation_id, 0) = ? THEN 1"
        " ELSE 0 END), 0), COALESCE(SUM(CASE WHEN repo = ? AND issue_number = ? THEN 1"
        f" ELSE 0 END), 0) FROM tasks WHERE state IN ({marks(LIVE)})",
        (task.installation_id or 0, task.repo, task.issue_number, *LIVE),
    ).fetchone()
    return bool(total < limits.total and same_installation < limits.per_installation
                and same_issue == 0)
