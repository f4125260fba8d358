"""Job claims on PostgreSQL: replicas claim side by side, none waiting for another (issue 12).

On SQLite a claim is one statement under the database's write lock (porter/store/jobs.py). Here
it runs without the writers' lock (`exclusive=False`, porter/store/pg_backend.py) and takes the
locks it needs without ever waiting, so it neither queues behind another replica's claim nor
can deadlock with the writers:

- the candidate rows `FOR UPDATE SKIP LOCKED`: a row another replica is claiming right now is
  passed over, not waited for; PostgreSQL checks the due condition again on each row it locks,
  so a job another replica claimed and committed meanwhile is not taken twice;
- a serial job's installation `pg_try_advisory_xact_lock`: refused, another replica is claiming
  for that installation this instant; granted, a statement begun after the grant (so seeing
  every claim committed before it) checks that none of its serial jobs runs under a live lease.

Candidates are locked in batches of what is still wanted, not more: a row locked here is hidden
from the other replicas until this claim commits, so locking many would starve them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, NamedTuple

# The advisory lock keys of installations: this namespace in the top 16 bits ("pi"), the
# installation id in the other 48 (far above GitHub's ids; two installations sharing a key would
# only be claimed for one at a time). Porter's other keys ("porter-w", "porter-m") start "po".
INSTALLATIONS = int.from_bytes(b"pi", "big") << 48

# The most candidate rows one claim locks, however many of them it turns down.
MOST_CANDIDATES = 500


def installation_key(installation_id: int) -> int:
    """The advisory lock key under which one installation's serial jobs are claimed."""
    return INSTALLATIONS | (installation_id & 0xFFFF_FFFF_FFFF)


class Candidate(NamedTuple):
    id: int
    kind: str
    installation_id: int | None


class Choice:
    """Which candidates, offered in claiming order, a claim takes: up to `limit`; a serial job
    (of `serial_kinds`, with an installation) only if its installation is not in `busy`, has
    had no serial job offered yet in this claim (taken or not), and `grant`s it. `serial` keeps
    only serial jobs (True) or only the others (False). Apart from the database, so the rules
    are tested on their own."""

    def __init__(self, *, limit: int, serial_kinds: Collection[str], busy: Collection[int],
                 serial: bool | None, grant: Callable[[int], bool]) -> None:
        self.limit = limit
        self.taken: list[int] = []
        self._serial_kinds = frozenset(serial_kinds)
        self._serial = serial
        self._grant = grant
        # Installations no further serial job may come from in this claim.
        self._closed = set(busy)

    @property
    def wanted(self) -> int:
        return max(0, self.limit - len(self.taken))

    def offer(self, candidates: Iterable[Candidate]) -> None:
        for job in candidates:
            if not self.wanted:
                return
            installation = job.installation_id
            serial = installation is not None and job.kind in self._serial_kinds
            if self._serial is not None and serial != self._serial:
                continue
            if installation is not None and serial:
                if installation in self._closed:
                    continue
                # Asked once: a refused installation stays refused for this claim.
                self._closed.add(installation)
                if not self._grant(installation):
                    continue
            self.taken.append(job.id)


def claim(db: sqlite3.Connection, claimable: str, params: Mapping[str, Any], *, limit: int,
          skip: Collection[int], serial_kinds: Collection[str], busy: Collection[int],
          serial: bool | None) -> list[Any]:
    """Claim as `JobStore.claim_jobs` does (porter/store/jobs.py), in the caller's transaction
    (READ COMMITTED, without the writers' lock): the rows claimed, in no order. `claimable`, a
    condition on `jobs` bound by `params`, holds for the jobs a claim may take; it is checked
    again on each row as it is locked."""
    choice = Choice(limit=limit, serial_kinds=serial_kinds, busy=busy, serial=serial,
                    grant=lambda installation: _granted(db, installation, params))
    passed = set(skip)  # this runner's own, and the candidates offered already
    locked = 0
    while choice.wanted and locked < MOST_CANDIDATES:
        wanted = min(choice.wanted, MOST_CANDIDATES - locked)
        rows = db.execute(
            f"SELECT id, kind, installation_id FROM jobs WHERE {claimable}"
            " ORDER BY priority, run_after, id LIMIT :wanted"
            " FOR UPDATE SKIP LOCKED",
            {**params, "skip": json.dumps(sorted(passed)), "wanted": wanted}).fetchall()
        choice.offer(Candidate(*row) for row in rows)
        locked += len(rows)
        passed.update(row[0] for row in rows)
        if len(rows) < wanted:
            break  # nothing more is due (or all of it is being claimed elsewhere)
    if not choice.taken:
        return []
    return db.execute(
        "UPDATE jobs SET state = :running, locked_until = :until, claimed_by = :me,"
        " updated_at = :now WHERE id IN (SELECT CAST(value AS BIGINT) FROM json_each(:ids))"
        " RETURNING *", {**params, "ids": json.dumps(choice.taken)}).fetchall()


def _granted(db: sqlite3.Connection, installation: int, params: Mapping[str, Any]) -> bool:
    """Whether this claim may take a serial job of `installation`: no other replica is claiming
    for it now, and none of its serial jobs runs under a live lease (pending under one: re-armed
    while it runs)."""
    if not db.execute("SELECT pg_try_advisory_xact_lock(:key)",
                      {"key": installation_key(installation)}).fetchone()[0]:
        return False
    # A statement of its own, begun after the grant: under READ COMMITTED it sees the claim of a
    # replica that held this lock a moment ago and has committed since.
    return db.execute(
        "SELECT 1 FROM jobs WHERE installation_id = :installation"
        " AND state IN (:running, :pending) AND locked_until >= :now"
        " AND kind IN (SELECT value FROM json_each(:serial_kinds))"
        " LIMIT 1", {**params, "installation": installation}).fetchone() is None
