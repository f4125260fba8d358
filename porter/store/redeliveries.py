"""What the lost-delivery reconciler (porter/deliveries.py) reads and remembers.

Which delivery guids Porter recorded (and what became of them), and, per guid, what the
reconciler decided and how often it asked GitHub to redeliver (migration 0010).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass

from porter.store.base import StoreBase


@dataclass(frozen=True)
class Recorded:
    """A delivery intake recorded: the task it became, or the job of a command or reply."""

    task_id: int | None
    task_state: str | None
    job_id: int | None


@dataclass(frozen=True)
class RedeliveryMark:
    verdict: str | None  # porter/deliveries.py's LOST, IGNORED or DUPLICATE; None: undecided
    requests: int
    last_requested_at: float | None
    gave_up_at: float | None


class RedeliveryStore(StoreBase):
    async def recorded_deliveries(self, guids: Collection[str]) -> dict[str, Recorded]:
        """Of these delivery guids, the ones intake recorded, with what each became."""
        rows = await self._read(
            "SELECT d.delivery_id, t.id, t.state, j.id FROM deliveries AS d"
            " LEFT JOIN tasks AS t ON t.delivery_id = d.delivery_id"
            " LEFT JOIN jobs AS j ON j.key = 'command:' || d.comment_key"
            " WHERE d.delivery_id IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted(guids)),))
        return {row[0]: Recorded(row[1], row[2], row[3]) for row in rows}

    async def comment_recorded(self, comment_key: str) -> bool:
        """Whether a delivery of this comment was recorded, under whatever guid."""
        rows = list(await self._read(
            "SELECT 1 FROM deliveries WHERE comment_key = ?", (comment_key,)))
        return bool(rows)

    async def redelivery_marks(self, guids: Collection[str]) -> dict[str, RedeliveryMark]:
        rows = await self._read(
            "SELECT guid, verdict, requests, last_requested_at, gave_up_at FROM redeliveries"
            " WHERE guid IN (SELECT value FROM json_each(?))", (json.dumps(sorted(guids)),))
        return {row[0]: RedeliveryMark(row[1], row[2], row[3], row[4]) for row in rows}

    async def note_verdict(self, guid: str, event: str, verdict: str) -> None:
        now = self._clock()
        await self._write(lambda db: db.execute(
            "INSERT INTO redeliveries (guid, event, verdict, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT(guid) DO UPDATE SET verdict = excluded.verdict,"
            " updated_at = excluded.updated_at", (guid, event, verdict, now, now)))

    async def note_redelivery_request(self, guid: str, event: str, verdict: str) -> int:
        """Count one more redelivery asked for; how many have been, this one included."""
        now = self._clock()

        def note(db: sqlite3.Connection) -> int:
            row = db.execute(
                "INSERT INTO redeliveries (guid, event, verdict, requests, last_requested_at,"
                " created_at, updated_at) VALUES (?, ?, ?, 1, ?, ?, ?) ON CONFLICT(guid)"
                " DO UPDATE SET requests = redeliveries.requests + 1, verdict = excluded.verdict,"
                " last_requested_at = excluded.last_requested_at,"
                " updated_at = excluded.updated_at RETURNING requests",
                (guid, event, verdict, now, now, now)).fetchone()
            return int(row[0])

        return await self._write(note)

    async def note_gave_up(self, guid: str) -> None:
        now = self._clock()
        await self._write(lambda db: db.execute(
            "UPDATE redeliveries SET gave_up_at = ?, updated_at = ? WHERE guid = ?",
            (now, now, guid)))

    async def prune_redeliveries(self, before: float) -> int:
        """Forget guids untouched since `before`: GitHub can no longer redeliver them."""
        return await self._write(lambda db: db.execute(
            "DELETE FROM redeliveries WHERE updated_at < ?", (before,)).rowcount)
