"""Retention: old run logs and task events of finished tasks are deleted; task rows stay.

Pruning walks a table in id order, one window of rows per transaction, so the writer is never
held for more than a window however large the backlog. Both tables are appended with the
store's clock, so ids follow time: the walk stops at the first window with nothing old in it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from typing import Literal

from porter.states import LIVE_RUN, TERMINAL
from porter.store.base import StoreBase, marks

Pruned = Literal["run_logs", "task_events"]
PRUNED: tuple[Pruned, ...] = ("run_logs", "task_events")
WINDOW = 1000  # rows looked at per transaction: a few milliseconds of the writer

# A row may go only when its task has finished: a live or queued task keeps its history.
_FINISHED_OWNER: dict[Pruned, str] = {
    "run_logs": "EXISTS (SELECT 1 FROM runs r JOIN tasks t ON t.id = r.task_id"
                f" WHERE r.id = run_logs.run_id AND t.state IN ({marks(TERMINAL)}))",
    "task_events": "EXISTS (SELECT 1 FROM tasks t"
                   f" WHERE t.id = task_events.task_id AND t.state IN ({marks(TERMINAL)}))",
}


class RetentionStore(StoreBase):
    async def prune_window(self, table: Pruned, *, after: int, before: float,
                           window: int = WINDOW) -> tuple[int | None, int]:
        """Among the `window` rows of `table` after id `after`, delete those stamped before
        `before` whose task has finished. Returns (the last id looked at, or None when the
        window held nothing that old: the walk is over; how many rows were deleted)."""

        def prune(db: sqlite3.Connection) -> tuple[int | None, int]:
            last, oldest = db.execute(
                f"SELECT max(id), min(at) FROM (SELECT id, at FROM {table}"
                " WHERE id > ? ORDER BY id LIMIT ?) AS window_rows", (after, window)).fetchone()
            if last is None or oldest >= before:
                return None, 0
            deleted = db.execute(
                f"DELETE FROM {table} WHERE id > ? AND id <= ? AND at < ?"
                f" AND {_FINISHED_OWNER[table]}", (after, last, before, *TERMINAL)).rowcount
            return int(last), deleted

        return await self._write(prune)

    async def prunable_runs(self, run_ids: Collection[str], *, before: float) -> set[str]:
        """Of `run_ids`, the runs that ended before `before` and whose task has finished:
        their machine's log files may go too. Ids of no run here are never in the answer."""
        ids, found = list(run_ids), set[str]()
        for start in range(0, len(ids), WINDOW):  # within SQLite's limit of bound values
            chunk = ids[start:start + WINDOW]
            rows = await self._read(
                "SELECT r.id FROM runs r JOIN tasks t ON t.id = r.task_id"
                f" WHERE r.id IN ({', '.join('?' * len(chunk))})"
                f" AND r.state NOT IN ({marks(LIVE_RUN)}) AND t.state IN ({marks(TERMINAL)})"
                " AND COALESCE(r.completed_at, r.updated_at) < ?",
                [*chunk, *LIVE_RUN, *TERMINAL, before])
            found.update(str(row[0]) for row in rows)
        return found
