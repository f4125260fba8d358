"""Artifacts of runs (porter/artifacts.py): kept in the database, where every replica reads them.

Content reaches the store already redacted by its caller and is stored as given, cut to the
bound: the store never holds a secret it could serve.
"""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Any

from porter.artifacts import NAMES, Artifact, ArtifactInfo, Name, bounded, media_type
from porter.store.base import StoreBase

_INFO = "id, task_id, run_id, name, media_type, size, length(content), sha256, created_at"


class ArtifactStore(StoreBase):
    async def put_artifact(self, task_id: int, run_id: str, name: Name, media: str | None,
                           content: bytes) -> int:
        """Keep `content` (already redacted by the caller: it is served as stored) as the
        artifact `name` of the run; its id. Once per run and name: a second put (a re-sent
        completion) changes nothing and answers the first's id. Content over the bound is cut,
        with a marker, and its `size` stays the given one."""
        if name not in NAMES:
            raise ValueError(f"not an artifact name: {name!r}")
        stored = bounded(name, bytes(content))
        row = (task_id, run_id, name, media_type(name, media), len(content),
               hashlib.sha256(stored).hexdigest(), self._clock(), stored)

        def put(db: sqlite3.Connection) -> int:
            db.execute(
                "INSERT INTO artifacts (task_id, run_id, name, media_type, size, sha256,"
                " created_at, content) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (run_id, name) DO NOTHING", row)
            found = db.execute("SELECT id FROM artifacts WHERE run_id = ? AND name = ?",
                               (run_id, name)).fetchone()
            return int(found[0])

        return await self._write(put)

    async def artifacts(self, task_id: int) -> list[ArtifactInfo]:
        """The task's artifacts, oldest first, without their content."""
        rows = await self._read(
            f"SELECT {_INFO} FROM artifacts WHERE task_id = ? ORDER BY id", (task_id,))
        return [_info(row) for row in rows]

    async def artifact(self, artifact_id: int) -> Artifact | None:
        """One artifact with its content, or None when there is none (or it was pruned)."""
        rows = await self._read(
            f"SELECT {_INFO}, content FROM artifacts WHERE id = ?", (artifact_id,))
        if not rows:
            return None
        return Artifact(_info(rows[0]), bytes(rows[0]["content"]))  # bytes on both stores

    async def prune_artifacts(self, older_than: float, *, limit: int) -> int:
        """Delete at most `limit` artifacts made before `older_than`, oldest first, in one
        transaction; how many went (fewer than `limit`: none older is left)."""

        def prune(db: sqlite3.Connection) -> int:
            return int(db.execute(
                "DELETE FROM artifacts WHERE id IN (SELECT id FROM artifacts"
                " WHERE created_at < ? ORDER BY created_at, id LIMIT ?)",
                (older_than, limit)).rowcount)

        return await self._write(prune)


def _info(row: Any) -> ArtifactInfo:
    return ArtifactInfo(id=int(row[0]), task_id=int(row[1]), run_id=str(row[2]),
                        name=str(row[3]), media_type=str(row[4]), size=int(row[5]),
                        stored=int(row[6]), sha256=str(row[7]), created_at=float(row[8]))
