"""Every task state change commits what it owes the requester in the same transaction: the
status comment's job (re-armed), and on a final state the final reaction. Neither can exist
without the other, so no crash can leave a status comment showing a state the task has left."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from porter.models import AgentRun, Task
from porter.states import REACT_JOB, STATUS_JOB, TaskState
from porter.store import Store
from tests.store_helpers import queued

S = TaskState


@pytest.fixture
async def store(store_database: Path | str) -> Store:
    opened = await Store.open(store_database)
    yield opened  # type: ignore[misc]
    await opened.close()


async def renders(store: Store, task_id: int) -> int:
    jobs = await store.jobs(kind=STATUS_JOB, task_id=task_id)
    return jobs[0].generation + 1 if jobs else 0


async def run_of(store: Store, task: Task) -> AgentRun:
    run = await store.current_run(task.id)
    assert run is not None
    return run


async def test_each_kind_of_state_change_asks_for_one_render(store: Store) -> None:
    task = await queued(store)
    assert await renders(store, task.id) == 0  # queued, not yet acknowledged: nothing owed
    launch = ("machine.launch", "launch:r1", {"run_id": "r1"})
    assert await store.start_run(task, run_id="r1", token_hash="h", runner="local", job=launch)
    assert await renders(store, task.id) == 1
    assert [j.key for j in await store.jobs(kind="machine.launch")] == ["launch:r1"]
    run = await run_of(store, task)
    await store.run_contact(run, stage="clone")  # starting → running, and a stage
    assert await renders(store, task.id) == 2
    await store.run_contact(run, stage="clone")  # nothing new: nothing owed
    assert await renders(store, task.id) == 2
    assert await store.complete_run(run, result={}, target=S.FAILED, message="gave up",
                                    stage="agent", reason="gave up")
    assert await renders(store, task.id) == 3
    assert [j.key for j in await store.jobs(kind=REACT_JOB, task_id=task.id)] == [
        f"react:{task.id}:1:final"]
    assert await store.retry(task.id) == 2
    assert await renders(store, task.id) == 4
    assert await store.finish_task(task.id, expected=[S.QUEUED], target=S.CANCELLED,
                                   message="cancelled") is S.QUEUED
    assert await renders(store, task.id) == 5
    assert len(await store.jobs(kind=REACT_JOB, task_id=task.id)) == 1  # cancelled: no 😕


@pytest.mark.parametrize("when", ["inserted", "re-armed"])
async def test_a_state_change_whose_status_job_cannot_be_written_does_not_happen(
    store: Store, store_database: Path | str, when: str
) -> None:
    task = await queued(store)
    if when == "re-armed":
        assert await store.transition(task.id, expected=S.QUEUED, target=S.STARTING)
    # Make writing the status job fail inside the transaction, as a crash mid-way would.
    if isinstance(store_database, str):
        with psycopg.connect(store_database, autocommit=True) as pg:
            pg.execute("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                       " RAISE EXCEPTION 'no' USING ERRCODE = 'integrity_constraint_violation';"
                       " END $$")
            pg.execute(f"CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON jobs FOR EACH ROW"
                       f" WHEN (NEW.kind = '{STATUS_JOB}') EXECUTE FUNCTION refuse()")
    else:
        with sqlite3.connect(store_database) as db:
            for event in ("INSERT", "UPDATE"):
                db.execute(f"CREATE TRIGGER refuse_{event.lower()} BEFORE {event} ON jobs"
                           f" WHEN NEW.kind = '{STATUS_JOB}'"
                           " BEGIN SELECT RAISE(ABORT, 'no'); END")
    before = (await store.get_task(task.id), await store.task_events(task.id))
    expected = S.QUEUED if when == "inserted" else S.STARTING
    with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError)):
        await store.finish_task(task.id, expected=[expected], target=S.FAILED, message="x")
    assert (await store.get_task(task.id), await store.task_events(task.id)) == before
