"""Reads for the web app's pages and live streams: tasks among the repositories a viewer sees,
what changed since a moment, and a run's log after a chunk.

A viewer's repositories are bound as one JSON array (`json_each`), so a user who reaches
thousands of repositories never runs into SQLite's limit on bound values.
"""

from __future__ import annotations

import json
from typing import Any

from porter.models import Task
from porter.store.base import StoreBase, matching
from porter.store.rows import to_task

# `repos` below: a viewer's repositories, or None for every repository (admins).
Repos = tuple[str, ...] | None
_AMONG = "repo IN (SELECT value FROM json_each(?))"


class FeedStore(StoreBase):
    async def tasks_changed_since(self, repos: Repos, since: float, *, limit: int = 50
                                  ) -> list[Task]:
        """Tasks among `repos` changed at or after `since`, oldest change first."""
        if repos is not None and not repos:
            return []
        clause, params = matching({"updated_at >= ?": since, _AMONG: _bound(repos)})
        rows = await self._read(
            f"SELECT * FROM tasks{clause} ORDER BY updated_at, id LIMIT ?",
            [*params, max(1, min(limit, 1000))])
        return [to_task(row) for row in rows]

    async def last_event_id(self, task_id: int) -> int:
        """The id of the task's latest event (0: none): whether its timeline grew."""
        rows = list(await self._read(
            "SELECT MAX(id) FROM task_events WHERE task_id = ?", (task_id,)))
        return int(rows[0][0] or 0)

    async def run_logs_after(self, run_id: str, after: int, *, limit: int = 64
                             ) -> list[tuple[int, str]]:
        """The run's log chunks with a seq above `after`, in order, `limit` at most."""
        rows = await self._read(
            "SELECT seq, text FROM run_logs WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (run_id, after, limit))
        return [(int(row[0]), str(row[1])) for row in rows]

    async def run_log_tail(self, run_id: str, *, max_chars: int) -> tuple[str, int]:
        """The last `max_chars` (about) of the run's log and the seq of its last chunk (-1 when
        there is none): what a page shows before live chunks follow."""
        chunks: list[str] = []
        size, last = 0, -1
        before: int | None = None
        while size < max_chars:
            clause, params = matching({"run_id = ?": run_id, "seq < ?": before})
            rows = list(await self._read(
                f"SELECT seq, text FROM run_logs{clause} ORDER BY seq DESC LIMIT 32", params))
            if not rows:
                break
            if last < 0:
                last = int(rows[0][0])
            for row in rows:
                chunks.append(str(row[1]))
                size += len(row[1])
                if size >= max_chars:
                    break
            before = int(rows[-1][0])
        text = "".join(reversed(chunks))
        return text[-max_chars:], last

    async def run_details(self, run_id: str) -> dict[str, Any]:
        """What the task page shows of a run beyond AgentRun: the redacted prompt the agent was
        sent, and whose Fly account started its machine."""
        rows = list(await self._read(
            "SELECT prompt, runner_owner FROM runs WHERE id = ?", (run_id,)))
        if not rows:
            return {"prompt": None, "runner_owner": None}
        return {"prompt": rows[0][0], "runner_owner": rows[0][1]}


def _bound(repos: Repos) -> str | None:
    return None if repos is None else json.dumps(list(repos))
