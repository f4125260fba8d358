from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import psycopg
import pytest

from porter.commands import ControlCommand
from porter.models import TaskFilter
from porter.states import TaskState
from porter.store import Store, StoreError, migrations
from porter.store.pg_migrations import postgres_migrations
from tests.conftest import trigger


@pytest.fixture
async def store(store_database: Path | str) -> Store:
    opened = await Store.open(store_database)
    yield opened  # type: ignore[misc]
    await opened.close()


async def test_migrations_apply_from_empty_and_are_recorded(store_database: Path | str) -> None:
    store = await Store.open(store_database, migrate=False)
    every = postgres_migrations() if store.dialect == "postgresql" else migrations()
    try:
        assert [m.version for m in await store.pending_migrations()] == [m.version for m in every]
        await store.migrate()
        assert await store.pending_migrations() == []
        assert await store.migrate() == []
    finally:
        await store.close()
    if isinstance(store_database, str):
        with psycopg.connect(store_database) as pg:
            tables = {row[0] for row in pg.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")}
    else:
        db = sqlite3.connect(store_database)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # SQLite's only
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"deliveries", "tasks", "task_events", "jobs", "schema_migrations"} <= tables


async def test_a_trigger_becomes_a_queued_task_with_an_event(store: Store) -> None:
    [result] = await store.record_triggers([trigger("d1", 11, "@porter codex do it")],
                                           default_agent="claude")
    assert not result.duplicate and result.task_id is not None
    task = await store.get_task(result.task_id)
    assert task is not None
    assert (task.state, task.agent, task.instruction, task.attempt) == (
        TaskState.QUEUED, "codex", "do it", 1)
    events = await store.task_events(task.id)
    assert [e.kind for e in events] == ["state.queued"]


async def test_default_agent_fills_in(store: Store) -> None:
    [result] = await store.record_triggers([trigger("d1", 11)], default_agent="claude")
    assert result.task_id is not None
    task = await store.get_task(result.task_id)
    assert task is not None and task.agent == "claude"


async def test_duplicates_by_delivery_and_by_comment_in_and_across_batches(store: Store) -> None:
    results = await store.record_triggers(
        [trigger("d1", 11), trigger("d1", 11), trigger("d2", 11), trigger("d3", 12)],
        default_agent="claude",
    )
    assert [r.duplicate for r in results] == [False, True, True, False]
    again = await store.record_triggers([trigger("d1", 11), trigger("d9", 12)],
                                        default_agent="claude")
    assert all(r.duplicate for r in again)
    assert len(await store.list_tasks()) == 2


async def test_control_commands_become_jobs_not_tasks(store: Store) -> None:
    [result] = await store.record_triggers([trigger("d1", 11, "@porter cancel")],
                                           default_agent="claude")
    assert result.job_id is not None and result.task_id is None
    [job] = await store.jobs(kind="command")
    assert job.payload["action"] == ControlCommand("cancel").action
    assert await store.list_tasks() == []


async def test_group_commit_answers_each_caller(store: Store) -> None:
    intake = store.intake(default_agent="claude")
    results = await asyncio.gather(*(intake.submit(trigger(f"d{i}", i)) for i in range(50)))
    assert sorted(r.task_id for r in results if r.task_id) == sorted(
        t.id for t in await store.list_tasks(limit=100))
    assert len({r.task_id for r in results}) == 50


async def test_transitions_are_compare_and_set(store: Store) -> None:
    [result] = await store.record_triggers([trigger("d1", 11)], default_agent="claude")
    task_id = result.task_id
    assert task_id is not None
    racers = await asyncio.gather(*(
        store.transition(task_id, expected=TaskState.QUEUED, target=TaskState.STARTING,
                         message=f"racer {i}")
        for i in range(5)
    ))
    assert sorted(racers) == [False, False, False, False, True]
    events = [e.kind for e in await store.task_events(task_id)]
    assert events == ["state.queued", "state.starting"]
    with pytest.raises(StoreError):
        await store.transition(task_id, expected=TaskState.STARTING,
                               target=TaskState.SUCCEEDED)


async def test_retry_makes_a_new_attempt_only_from_a_failure(store: Store) -> None:
    [result] = await store.record_triggers([trigger("d1", 11)], default_agent="claude")
    task_id = result.task_id
    assert task_id is not None
    assert await store.retry(task_id) is None
    await store.transition(task_id, expected=TaskState.QUEUED, target=TaskState.FAILED,
                           stage="dispatch", reason="boom", data={"why": "test"})
    assert await store.retry(task_id) == 2
    task = await store.get_task(task_id)
    assert task is not None
    assert (task.state, task.attempt, task.reason) == (TaskState.QUEUED, 2, None)
    events = await store.task_events(task_id)
    assert [(e.kind, e.attempt) for e in events] == [
        ("state.queued", 1), ("state.failed", 1), ("retry", 2)]
    assert json.dumps(events[1].data) == '{"why": "test"}'


async def test_filters_and_keyset_pagination(store: Store) -> None:
    triggers = [
        trigger(f"d{i}", i, repo="a/x" if i % 2 else "b/y", requester="al" if i < 5 else "bo")
        for i in range(1, 11)
    ]
    await store.record_triggers(triggers, default_agent="claude")
    page1 = await store.list_tasks(limit=4)
    page2 = await store.list_tasks(before=page1[-1].id, limit=4)
    page3 = await store.list_tasks(before=page2[-1].id, limit=4)
    ids = [t.id for t in page1 + page2 + page3]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == 10
    assert {t.repo for t in await store.list_tasks(TaskFilter(repo="a/x"))} == {"a/x"}
    assert len(await store.list_tasks(TaskFilter(repo="a/x", requester="al"))) == 2


