"""The record behind content-creation pacing (porter/pacing.py, migration 0011).

Reading an installation's recent creations, deciding, and recording the new one happen in one
write transaction: the store's single writer orders this process's callers, and SQLite's write
lock orders processes, so no two admissions can both see a budget with room for one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from porter.pacing import Window, creation_wait, span
from porter.store.base import StoreBase


class PacingStore(StoreBase):
    async def take_creation(self, installation_id: int, *, now: float, urgent: bool,
                            windows: Sequence[Window]) -> float:
        """Record one content creation at `now` and return 0, or return the seconds until one
        would fit and record nothing. Forgets the installation's creations past every window."""
        since = now - span(windows)

        def take(db: sqlite3.Connection) -> float:
            times = [row[0] for row in db.execute(
                "SELECT at FROM creations WHERE installation_id = ? AND at > ? ORDER BY at",
                (installation_id, since))]
            wait = creation_wait(times, now, windows, urgent=urgent)
            if wait <= 0:
                db.execute("INSERT INTO creations (installation_id, at) VALUES (?, ?)",
                           (installation_id, now))
            db.execute("DELETE FROM creations WHERE installation_id = ? AND at <= ?",
                       (installation_id, since))
            return wait

        return await self._write(take)
