"""Jobs: durable side effects, claimed under a lease by one process and finished by generation.

Claims go by priority (porter/priorities.py, computed as each job is written), then due time.

`generation` makes finishing a compare-and-set: a job re-armed while it runs (a newer status to
render) stays pending, so the run under way cannot mark the newer request done.

`claimed_by` fences a claim: every write about a running job names the process that claimed it.
A process whose lease ran out (paused, cut off from the database) and whose job another process
took meanwhile can no longer finish, reschedule, give up or checkpoint that job; the runner learns
it lost the claim when it renews its leases (`renew_leases`), and stops the job.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection
from typing import Any

from porter.models import Job
from porter.states import JobState
from porter.store import pg_claims
from porter.store.base import StoreBase, marks, matching, put_job
from porter.store.rows import to_job
from porter.store.tasks import append_event

# A job this process claimed is still its own while running, or pending again because it was
# re-armed as it ran (its lease then keeps other processes off it until the run here ends).
HELD = (JobState.RUNNING, JobState.PENDING)

# Due to be claimed: pending and due, unless another process holds its lease (it was re-armed
# while running there), or running under a lease that ran out (its runner died).
DUE = ("(state = :pending AND run_after <= :now AND (locked_until"
       " IS NULL OR locked_until < :now OR claimed_by = :me))"
       " OR (state = :running AND locked_until < :now)")


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
        (one of its jobs runs here now) or with one running under a live lease in any process.
        `serial` takes only serial jobs (True) or only the others (False). Jobs in `skip` (this
        runner's own, still running) are left alone, as is a job re-armed while another process
        runs it (its lease keeps it there until that run ends).

        On SQLite this is one statement under the database's write lock. On PostgreSQL it takes
        no writers' lock: it passes over the rows and installations other replicas are claiming
        this instant (porter/store/pg_claims.py), so replicas claim side by side.
        """
        params = {"running": JobState.RUNNING, "pending": JobState.PENDING, "until": now + lease,
                  "me": self.process.id, "now": now, "limit": limit,
                  "serial_kinds": json.dumps(sorted(serial_kinds)),
                  "busy": json.dumps(sorted(busy)), "skip": json.dumps(sorted(skip))}
        if self.dialect == "postgresql":
            # The due condition again: PostgreSQL checks it on each row as it locks it.
            where = f"id IN ({claimable(serial)}) AND ({DUE})"
            rows = await self._write(lambda db: pg_claims.claim(
                db, where, params, limit=limit, skip=skip,
                serial_kinds=serial_kinds, busy=busy, serial=serial), exclusive=False)
        else:
            rows = await self._write(lambda db: db.execute(
                "UPDATE jobs SET state = :running, locked_until = :until, claimed_by = :me,"
                f" updated_at = :now WHERE id IN ({claimable(serial)}"
                " ORDER BY priority, run_after, id LIMIT :limit) RETURNING *", params).fetchall())
        ranked = sorted(rows, key=lambda r: (r["priority"], r["run_after"], r["id"]))
        return [to_job(row) for row in ranked]

    async def next_job_due(self, *, after: float | None = None) -> float | None:
        """When the next pending job is due (of those due after `after`, if given)."""
        rows = list(await self._read(
            "SELECT MIN(run_after) FROM jobs WHERE state = ? AND run_after > ?",
            (JobState.PENDING, float("-inf") if after is None else after)))
        return rows[0][0] if rows and rows[0][0] is not None else None

    async def finish_job(self, job: Job, *, result: dict[str, Any] | None = None) -> bool:
        """Mark done unless the job was re-armed meanwhile (then it stays pending)."""

        me = self.process.id

        def finish(db: sqlite3.Connection) -> bool:
            done = db.execute(
                "UPDATE jobs SET state = ?, result = ?, last_error = NULL, locked_until = NULL,"
                " updated_at = ? WHERE id = ? AND generation = ? AND state = ? AND claimed_by = ?",
                (JobState.DONE, json.dumps(result or {}), self._clock(), job.id, job.generation,
                 JobState.RUNNING, me),
            ).rowcount == 1
            if not done:  # re-armed meanwhile: free for any process to run again
                db.execute(f"UPDATE jobs SET state = ?, locked_until = NULL WHERE id = ?"
                           f" AND claimed_by = ? AND state IN ({marks(HELD)})",
                           (JobState.PENDING, job.id, me, *HELD))
            return done

        return await self._write(finish)

    async def reschedule_job(self, job: Job, *, run_after: float, error: str | None,
                             count_attempt: bool = True) -> None:
        def later(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE jobs SET state = ?, run_after = ?, last_error = COALESCE(?,"
                " last_error), attempts = attempts + ?, locked_until = NULL, updated_at = ?"
                f" WHERE id = ? AND claimed_by = ? AND state IN ({marks(HELD)})",
                (JobState.PENDING, run_after, error, int(count_attempt), self._clock(), job.id,
                 self.process.id, *HELD),
            )

        await self._write(later)

    async def give_up_job(self, job: Job, *, error: str) -> None:
        """Stop retrying; the task's timeline says what was not done and why."""
        now = self._clock()

        me = self.process.id

        def stop(db: sqlite3.Connection) -> None:
            given_up = db.execute(
                "UPDATE jobs SET state = ?, last_error = ?, attempts = attempts + 1,"
                " locked_until = NULL, updated_at = ? WHERE id = ? AND generation = ?"
                " AND state = ? AND claimed_by = ?",
                (JobState.GIVEN_UP, error, now, job.id, job.generation, JobState.RUNNING, me),
            ).rowcount == 1
            if not given_up:  # re-armed while it ran: the new request deserves its own tries
                db.execute(f"UPDATE jobs SET state = ?, attempts = 0, locked_until = NULL"
                           f" WHERE id = ? AND claimed_by = ? AND state IN ({marks(HELD)})",
                           (JobState.PENDING, job.id, me, *HELD))
                return
            if job.task_id is not None:
                append_event(db, job.task_id, "job.given_up", f"{job.kind}: {error}",
                             {"job": job.key}, now)

        await self._write(stop)

    async def save_progress(self, job: Job, progress: dict[str, Any]) -> None:
        """Checkpoint a multi-step job, so a rerun after a crash skips what is done."""
        await self._write(lambda db: db.execute(
            "UPDATE jobs SET progress = ?, updated_at = ? WHERE id = ? AND claimed_by = ?",
            (json.dumps(progress), self._clock(), job.id, self.process.id),
        ) and None)

    async def renew_leases(self, job_ids: Collection[int], *, until: float) -> set[int]:
        """Extend this process's claims on `job_ids` to `until`; the ids whose claim it lost
        (its lease ran out and another process took the job, or declared this one gone)."""
        if not job_ids:
            return set()
        me, ids = self.process.id, json.dumps(sorted(job_ids))

        def renew(db: sqlite3.Connection) -> set[int]:
            db.execute(
                "UPDATE jobs SET locked_until = ? WHERE claimed_by = ? AND locked_until IS NOT"
                f" NULL AND state IN ({marks(HELD)})"
                " AND id IN (SELECT CAST(value AS BIGINT) FROM json_each(?))",
                (until, me, *HELD, ids))
            return {int(row[0]) for row in db.execute(
                "SELECT id FROM jobs WHERE id IN (SELECT CAST(value AS BIGINT) FROM"
                " json_each(?)) AND (claimed_by IS NULL OR claimed_by != ?)", (ids, me))}

        return await self._write(renew)


def claimable(serial: bool | None) -> str:
    """The ids of the jobs a claim may take (unordered): the due ones not in `:skip`, serial ones
    (of `:serial_kinds`, with an installation) only the first of their installation and none of
    an installation in `:busy` or with a serial job running under a live lease (or re-armed as it
    runs: pending under one); `serial` keeps only serial jobs (True) or only the others
    (False)."""
    # Written out rather than bound: PostgreSQL can type neither `:serial IS NULL` nor a
    # flag bound as 0 or 1 against the boolean `serial`.
    only = {None: "", True: " AND serial", False: " AND NOT serial"}[serial]
    return (
        "SELECT id FROM ("
        "  SELECT id, priority, run_after, serial, ROW_NUMBER() OVER ("
        "   PARTITION BY serial, CASE WHEN serial THEN installation_id END"
        "   ORDER BY priority, run_after, id) AS place FROM ("
        "    SELECT id, priority, run_after, installation_id, installation_id IS NOT NULL"
        "     AND kind IN (SELECT value FROM json_each(:serial_kinds)) AS serial"
        f"    FROM jobs WHERE ({DUE})"
        "     AND id NOT IN (SELECT CAST(value AS BIGINT) FROM json_each(:skip))) AS due"
        "  WHERE NOT (serial AND (installation_id IN"
        "   (SELECT CAST(value AS BIGINT) FROM json_each(:busy)) OR installation_id IN"
        "   (SELECT installation_id FROM jobs WHERE state IN (:running, :pending)"
        "    AND locked_until >= :now AND installation_id IS NOT NULL"
        "    AND kind IN (SELECT value FROM json_each(:serial_kinds)))))"
        f"{only}) AS placed"
        " WHERE NOT serial OR place = 1")


def release_claims(db: sqlite3.Connection, process_id: str, now: float) -> int:
    """Jobs a process holds go back to pending, free for any process now; how many."""
    return db.execute(
        "UPDATE jobs SET state = ?, locked_until = NULL, claimed_by = NULL, updated_at = ?"
        " WHERE state = ? AND claimed_by = ?",
        (JobState.PENDING, now, JobState.RUNNING, process_id),
    ).rowcount
