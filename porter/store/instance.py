"""This Porter's row in its database: what every process of the database must agree on.

That is the key ring: the fingerprints of every key the database's processes started with
(porter/key_check.py); and which hosts its processes run on.
"""

from __future__ import annotations

import json
import sqlite3

from porter.key_check import reconcile, refusal
from porter.store.base import StoreBase


class InstanceStore(StoreBase):
    async def key_fingerprints(self) -> dict[str, str]:
        """The fingerprints of every key this database's processes started with (none yet: {})."""
        rows = await self._read("SELECT key_fingerprints FROM instance")
        return dict(json.loads(rows[0][0])) if rows and rows[0][0] else {}

    async def record_key_ring(self, fingerprints: dict[str, str]) -> None:
        """Check a key ring's fingerprints against those this database has seen, and remember
        them; `ConfigError` if the ring is another one. One write transaction, so two processes
        starting at once with different rings cannot both be taken as the first."""

        def work(db: sqlite3.Connection) -> None:
            row = db.execute("SELECT key_fingerprints FROM instance").fetchone()
            stored = json.loads(row[0]) if row is not None and row[0] else None
            outcome = reconcile(stored, fingerprints)
            if isinstance(outcome, str):
                raise refusal(outcome)
            if outcome != stored:
                db.execute("UPDATE instance SET key_fingerprints = ?",
                           (json.dumps(outcome, sort_keys=True),))

        await self._write(work)

    async def hosts(self) -> set[str]:
        """The hosts of the Porter processes registered on this database (this one included)."""
        return {str(row[0]) for row in await self._read("SELECT DISTINCT host FROM processes")}
