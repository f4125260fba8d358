"""Jobs: durable side effects, claimed under a lease by one process and finished by generation.

Claims go by priority (porter/priorities.py, computed as each job is written), then due time.

`generation` makes finishing a compare-and-set: a job re-armed while it runs (a newer status to
render) stays pending, so the run under way cannot mark the newer request done.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from typing import Any

from porter.models import Job
from porter.states import JobState
from porter.store.base import StoreBase, matching, put_job
from porter.store.rows import to_job
from porter.store.tasks import append_event


class JobStore(StoreBase):
    async def jobs(self, *, kind: str | None = None, task_id: int | None = None) -> list[Job]:
        clause, params = matching({"kind = ?": kind, "task_id = ?": task_id})
        rows = await self._read(
            f"SELECT * FROM jobs{clause} ORDER BY id", params)
        return [to_job(row) for row in rows]

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

        def add(db: sqlite3.Connection) -> tuple[int, bool]:
            added = put_job(db, kind, key, payload or {}, task_id=task_id,
                            installation_id=installation_id, now=now, run_after=run_after,
                            rearm=rearm, again_when_finished=again_when_finished)
            job_id = int(db.execute("SELECT id FROM jobs WHERE key = ?", (key,)).fetchone()[0])
            return job_id, added

        job_id, added = await self._write(add)
        self._changed_if(added, jobs_only=True)  # a job asked again (keyed) wakes no one
        return job_id

    async def claim_jobs(self, *, now: float, limit: int, lease: float,
                         serial_kinds: Collection[str] = (), busy: Collection[int] = (),
                         skip: Collection[int] = (), serial: bool | None = None) -> list[Job]:
        """Take due jobs (and ones whose runner died mid-lease) for this runner: by priority,
        then due time, then age.

        A serial job (of a `serial_kinds` kind, with an installation) runs alone in its
        installation: at most one per installation is taken, none for an installation in `busy`
        (one of its jobs runs now). `serial` takes only serial jobs (True) or only the others
        (False). Jobs in `skip` (this runner's own, still running) are left alone.
        """
        # Written out rather than bound: PostgreSQL can type neither `:serial IS NULL` nor a
        # flag bound as 0 or 1 against the boolean `serial`.
        only = {None: "", True: " AND serial", False: " AND NOT serial"}[serial]

        def claim(db: sqlite3.Connection) -> list[Job]:
            rows = db.execute(
                "UPDATE jobs SET state = :running, locked_until = :until, claimed_by = :me,"
                " updated_at = :now WHERE id IN (SELECT id FROM ("
                "  SELECT id, priority, run_after, serial, ROW_NUMBER() OVER ("
                "   PARTITION BY serial, CASE WHEN serial THEN installation_id END"
                "   ORDER BY priority, run_after, id) AS place FROM ("
                "    SELECT id, priority, run_after, installation_id, installation_id IS NOT NULL"
                "     AND kind IN (SELECT value FROM json_each(:serial_kinds)) AS serial"
                "    FROM jobs WHERE ((state = :pending AND run_after <= :now)"
                "     OR (state = :running AND locked_until < :now))"
                "     AND id NOT IN (SELECT CAST(value AS BIGINT) FROM json_each(:skip))) AS due"
                "  WHERE NOT (serial AND installation_id IN"
                "   (SELECT CAST(value AS BIGINT) FROM json_each(:busy)))"
                f"{only}) AS placed"
                " WHERE NOT serial OR place = 1 ORDER BY priority, run_after, id LIMIT :limit)"
                " RETURNING *",
                {"running": JobState.RUNNING, "pending": JobState.PENDING, "until": now + lease,
                 "me": self.process.id, "now": now, "limit": limit,
                 "serial_kinds": json.dumps(sorted(serial_kinds)),
                 "busy": json.dumps(sorted(busy)), "skip": json.dumps(sorted(skip))},
            ).fetchall()
            ranked = sorted(rows, key=lambda r: (r["priority"], r["run_after"], r["id"]))
            return [to_job(row) for row in ranked]

        return await self._write(claim)

    async def next_job_due(self, *, after: float | None = None) -> float | None:
        """When the next pending job is due (of those due after `after`, if given)."""
        rows = list(await self._read(
            "SELECT MIN(run_after) FROM jobs WHERE state = ? AND run_after > ?",
            (JobState.PENDING, float("-inf") if after is None else after)))
        return rows[0][0] if rows and rows[0][0] is not None else None

    async def finish_job(self, job: Job, *, result: dict[str, Any] | None = None) -> bool:
        """Mark done unless the job was re-armed meanwhile (then it stays pending)."""

        def finish(db: sqlite3.Connection) -> bool:
            done = db.execute(
                "UPDATE jobs SET state = ?, result = ?, last_error = NULL, updated_at = ?"
                " WHERE id = ? AND generation = ? AND state = ?",
                (JobState.DONE, json.dumps(result or {}), self._clock(), job.id, job.generation,
                 JobState.RUNNING),
            ).rowcount == 1
            if not done:
                db.execute("UPDATE jobs SET state = ? WHERE id = ? AND state = ?",
                           (JobState.PENDING, job.id, JobState.RUNNING))
            return done

        return await self._write(finish)

    async def reschedule_job(self, job: Job, *, run_after: float, error: str | None,
                             count_attempt: bool = True) -> None:
        def later(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE jobs SET state = ?, run_after = ?, last_error = COALESCE(?,"
                " last_error), attempts = attempts + ?, updated_at = ? WHERE id = ?",
                (JobState.PENDING, run_after, error, int(count_attempt), self._clock(), job.id),
            )

        await self._write(later)

    async def give_up_job(self, job: Job, *, error: str) -> None:
        """Stop retrying; the task's timeline says what was not done and why."""
        now = self._clock()

        def stop(db: sqlite3.Connection) -> None:
            given_up = db.execute(
                "UPDATE jobs SET state = ?, last_error = ?, attempts = attempts + 1,"
                " updated_at = ? WHERE id = ? AND generation = ?",
                (JobState.GIVEN_UP, error, now, job.id, job.generation),
            ).rowcount == 1
            if not given_up:  # re-armed while it ran: the new request deserves its own tries
                db.execute("UPDATE jobs SET state = ?, attempts = 0 WHERE id = ?",
                           (JobState.PENDING, job.id))
                return
            if job.task_id is not None:
                append_event(db, job.task_id, "job.given_up", f"{job.kind}: {error}",
                             {"job": job.key}, now)

        await self._write(stop)

    async def save_progress(self, job: Job, progress: dict[str, Any]) -> None:
        """Checkpoint a multi-step job, so a rerun after a crash skips what is done."""
        await self._write(lambda db: db.execute(
            "UPDATE jobs SET progress = ?, updated_at = ? WHERE id = ?",
            (json.dumps(progress), self._clock(), job.id),
        ) and None)


def release_claims(db: sqlite3.Connection, process_id: str, now: float) -> int:
    """Jobs a process holds go back to pending, free for any process now; how many."""
    return db.execute(
        "UPDATE jobs SET state = ?, locked_until = NULL, claimed_by = NULL, updated_at = ?"
        " WHERE state = ? AND claimed_by = ?",
        (JobState.PENDING, now, JobState.RUNNING, process_id),
    ).rowcount
