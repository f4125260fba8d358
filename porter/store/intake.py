"""Intake: deliveries recorded with their task or command job, concurrent ones in one commit.

Each commit costs an fsync (`synchronous=FULL`, see porter/store/__init__.py); deliveries that
arrive while one commits share the next (group commit), so the fsync is shared too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from porter.commands import CommandJob, ControlCommand, Reply, Run
from porter.models import IntakeResult
from porter.states import TaskState, event_kind
from porter.store.base import StoreBase, StoreError, on_postgres
from porter.webhooks import Trigger

MAX_BATCH = 200  # keeps a batch's bound parameters far under SQLite's limit


class IntakeStore(StoreBase):
    _intake: IntakeWriter | None = None  # made on first use, stopped when the store closes

    def intake(self, *, default_agent: str) -> IntakeWriter:
        if self._intake is None:
            self._intake = IntakeWriter(self, default_agent=default_agent)
        return self._intake

    async def record_triggers(
        self, triggers: Sequence[Trigger], *, default_agent: str
    ) -> list[IntakeResult]:
        """Record deliveries with their task or command job, all in one transaction."""
        batch = _PreparedIntake.build(triggers, default_agent=default_agent, now=self._clock())
        # Not exclusive: every insert is keyed (ON CONFLICT), so on PostgreSQL the replicas'
        # intakes commit side by side instead of taking turns under the writers' lock.
        results = await self._write(lambda db: _record_triggers(db, batch), exclusive=False)
        if any(result.task_id is not None for result in results):
            # Other replicas' dispatchers and live pages see the new tasks at once
            # (porter/store/pg_notify.py); here the runtime is told by intake itself
            # (porter/web/intake.py).
            self._backend.announce("recorded")
        # A command is a job: any job runner may take it now.
        return self._changed_if(results, jobs_only=True) if any(
            result.job_id is not None for result in results) else results


class IntakeWriter:
    """Group commit: deliveries that arrive while a batch commits share the next transaction.

    Each caller is answered only after the transaction holding its delivery has committed.
    """

    def __init__(self, store: IntakeStore, *, default_agent: str) -> None:
        self._store = store
        self._default_agent = default_agent
        self._queue: asyncio.Queue[tuple[Trigger, asyncio.Future[IntakeResult]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def submit(self, trigger: Trigger) -> IntakeResult:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        future: asyncio.Future[IntakeResult] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((trigger, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await self._store.record_triggers(
                    [trigger for trigger, _ in batch], default_agent=self._default_agent
                )
            except Exception as exc:  # every waiter learns the batch failed; none is left hanging
                for _, future in batch:
                    if not future.done():
                        future.set_exception(StoreError(f"could not record delivery: {exc}"))
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


@dataclass(frozen=True)
class _PreparedIntake:
    """A batch's rows, built on the event loop so the writer thread runs almost no Python.

    Python code on the writer thread competes with the event loop for the GIL, and every time
    the loop releases it (hashing a body, writing a socket) it can wait a whole switch interval
    to get it back. Keeping the thread in SQLite's C code keeps the loop fast.
    """

    deliveries: list[Any]
    delivery_ids: list[str]
    tasks: list[tuple[Any, ...] | None]
    jobs: list[tuple[Any, ...] | None]
    now: float
    # Which tasks' comments named no agent: their requester's own default applies, if set.
    defaulted: list[bool]

    @classmethod
    def build(cls, triggers: Sequence[Trigger], *, default_agent: str,
              now: float) -> _PreparedIntake:
        return cls(
            # In key order, as the jobs below: concurrent intakes (replicas on PostgreSQL) then
            # lock keys in one order, and never deadlock on a delivery both received.
            deliveries=[v for t in sorted(triggers, key=lambda t: t.delivery_id)
                        for v in (t.delivery_id, t.event, t.comment_key, now)],
            delivery_ids=[t.delivery_id for t in triggers],
            tasks=[_task_values(t, default_agent, now) if isinstance(t.command, Run) else None
                   for t in triggers],
            jobs=[None if isinstance(t.command, Run) else (
                CommandJob.kind, f"command:{t.comment_key}", t.installation_id,
                json.dumps(_command_payload(t)), now, now, now,
            ) for t in triggers],
            now=now,
            defaulted=[isinstance(t.command, Run) and t.command.agent is None for t in triggers],
        )


def _record_triggers(db: sqlite3.Connection, batch: _PreparedIntake) -> list[IntakeResult]:
    count = len(batch.delivery_ids)
    fresh = {row[0] for row in db.execute(
        "INSERT INTO deliveries (delivery_id, event, comment_key, received_at) VALUES "
        + _placeholders(count, 4) + " ON CONFLICT DO NOTHING RETURNING delivery_id",
        batch.deliveries,
    ).fetchall()}
    chosen = []
    for index, delivery_id in enumerate(batch.delivery_ids):
        if delivery_id in fresh:  # the first of any in-batch twins wins
            fresh.discard(delivery_id)
            chosen.append(index)
    results = [IntakeResult(duplicate=True)] * count
    runs = [i for i in chosen if batch.tasks[i] is not None]
    jobs = sorted((i for i in chosen if batch.jobs[i] is not None),
                  key=lambda i: (batch.jobs[i] or ("", ""))[1])
    if runs:
        ids = dict(db.execute(
            "INSERT INTO tasks (delivery_id, comment_key, repo, installation_id, issue_number,"
            " is_pull_request, comment_kind, comment_id, comment_url, requester, requester_id,"
            " agent, model, instruction, context, state, attempt, created_at, updated_at)"
            " VALUES " + _placeholders(len(runs), 19) + " RETURNING delivery_id, id",
            [v for i in runs for v in batch.tasks[i] or ()],
        ).fetchall())
        data = ("jsonb_build_object('delivery_id', delivery_id)::text" if on_postgres(db)
                else "json_object('delivery_id', delivery_id)")
        db.execute(
            "INSERT INTO task_events (task_id, attempt, at, kind, message, data)"
            " SELECT id, 1, ?, ?, 'queued from '"
            " || CASE WHEN comment_url = '' THEN comment_key ELSE comment_url END,"
            f" {data} FROM tasks WHERE id IN (SELECT CAST(value AS BIGINT) FROM json_each(?))",
            (batch.now, event_kind(TaskState.QUEUED), json.dumps(sorted(ids.values()))),
        )
        for i in runs:
            results[i] = IntakeResult(duplicate=False, task_id=ids[batch.delivery_ids[i]])
        defaulted = [ids[batch.delivery_ids[i]] for i in runs if batch.defaulted[i]]
        if defaulted:
            # A requester who signed in may have chosen their own default agent and model
            # (/settings); matched by GitHub user id, never by login.
            db.execute(
                "UPDATE tasks SET agent = COALESCE(u.default_agent, tasks.agent),"
                # A comment's --model (with no agent) still beats the requester's default.
                " model = COALESCE(tasks.model, u.default_model) FROM users AS u"
                " WHERE tasks.id IN (SELECT CAST(value AS BIGINT) FROM json_each(?))"
                " AND u.id = tasks.requester_id"
                " AND (u.default_agent IS NOT NULL OR u.default_model IS NOT NULL)",
                (json.dumps(defaulted),))
    if jobs:
        job_ids = dict(db.execute(
            "INSERT INTO jobs (kind, key, installation_id, payload, run_after, created_at,"
            " updated_at) VALUES " + _placeholders(len(jobs), 7)
            + " ON CONFLICT DO NOTHING RETURNING key, id",
            [v for i in jobs for v in batch.jobs[i] or ()],
        ).fetchall())
        for i in jobs:
            job = batch.jobs[i]
            job_id = job_ids.get(job[1]) if job else None
            results[i] = IntakeResult(duplicate=job_id is None, job_id=job_id)
    return results


def _task_values(t: Trigger, default_agent: str, now: float) -> tuple[Any, ...]:
    assert isinstance(t.command, Run)
    return (
        t.delivery_id, t.comment_key, t.repo, t.installation_id, t.issue_number,
        int(t.is_pull_request), t.comment_kind, t.comment_id, t.comment_url, t.requester,
        t.requester_id, t.command.agent or default_agent, t.command.model, t.command.instruction,
        json.dumps(_context(t.context, t.command)), TaskState.QUEUED.value, 1, now, now,
    )


def _context(context: dict[str, Any], run: Run) -> dict[str, Any]:
    """What the comment itself chose, marked: a repository's `.porter.yml` gives way to a
    comment's choice but not to a requester's defaults (porter/repo_settings.py)."""
    if run.agent is None and run.model is None:
        return context
    named = {"agent_named": True} if run.agent is not None else {}
    return {**context, **named, **({"model_named": True} if run.model is not None else {})}


def _command_payload(t: Trigger) -> dict[str, Any]:
    """Intake writes a job only for control comments and for replies (never for a run)."""
    if isinstance(t.command, Reply):
        action, text = "reply", t.command.text
    else:
        assert isinstance(t.command, ControlCommand)
        action, text = t.command.action, None
    return CommandJob(repo=t.repo, issue_number=t.issue_number, comment_kind=t.comment_kind,
                      comment_id=t.comment_id, requester=t.requester,
                      delivery_id=t.delivery_id, action=action, text=text).dump()


def _placeholders(rows: int, columns: int) -> str:
    row = "(" + ", ".join("?" * columns) + ")"
    return ", ".join([row] * rows)
