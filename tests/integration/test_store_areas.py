"""The store's smaller areas as one contract, on a SQLite file and on a PostgreSQL database
(`store_database`, issue 12): the redelivery marks, the feed, the /metrics gauges, users with
their sessions, sealed secrets and audit log, the LLM calls' accounting, intake's group commit,
and how long a write waits for the lock. The web and gateway tests drive the same methods through
the app, on SQLite only until `PORTER_DATABASE` accepts a URL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from porter.models import AgentRun
from porter.store import Store, StoreError
from porter.store.llm import LlmCall
from porter.store.pg_backend import WRITER_KEY, PgBackend
from tests.conftest import trigger
from tests.fakes.clock import Clock


@pytest.fixture
async def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(store_database: Path | str, clock: Clock) -> AsyncIterator[Store]:
    opened = await Store.open(store_database, clock=clock)
    try:
        yield opened
    finally:
        await opened.close()


async def new_task(store: Store, n: int, *, repo: str = "octo/one") -> int:
    [result] = await store.record_triggers([trigger(f"d-{n}", 500 + n, repo=repo)],
                                           default_agent="claude")
    assert result.task_id is not None
    return result.task_id


# -- redeliveries --------------------------------------------------------------------------


async def test_recorded_deliveries_and_redelivery_marks(store: Store, clock: Clock) -> None:
    task_id = await new_task(store, 1)
    recorded = await store.recorded_deliveries(["d-1", "never-seen"])
    assert list(recorded) == ["d-1"]
    assert recorded["d-1"].task_id == task_id and recorded["d-1"].task_state == "queued"
    assert await store.recorded_deliveries([]) == {}

    await store.note_verdict("g-1", "issue_comment", "ignored")
    assert await store.note_redelivery_request("g-2", "issue_comment", "lost") == 1
    clock.now += 10
    assert await store.note_redelivery_request("g-2", "issue_comment", "lost") == 2
    await store.note_gave_up("g-2")
    marks = await store.redelivery_marks(["g-1", "g-2", "g-3"])
    assert sorted(marks) == ["g-1", "g-2"]
    assert marks["g-1"].verdict == "ignored" and marks["g-1"].requests == 0
    assert marks["g-2"].requests == 2 and marks["g-2"].last_requested_at == clock.now
    assert marks["g-2"].gave_up_at == clock.now
    assert await store.prune_redeliveries(clock.now) == 1  # g-1, untouched since before
    assert list(await store.redelivery_marks(["g-1", "g-2"])) == ["g-2"]


# -- the feed and the gauges ---------------------------------------------------------------


async def test_the_feed_shows_a_viewer_their_repositories_changed_since(
        store: Store, clock: Clock) -> None:
    first = await new_task(store, 1, repo="octo/one")
    clock.now += 5
    second = await new_task(store, 2, repo="octo/two")
    since = clock.now
    clock.now += 5
    third = await new_task(store, 3, repo="octo/one")
    ids = [task.id for task in await store.tasks_changed_since(None, 0)]
    assert ids == [first, second, third]
    assert [t.id for t in await store.tasks_changed_since(("octo/one",), 0)] == [first, third]
    assert [t.id for t in await store.tasks_changed_since(("octo/two", "x/y"), since)] == [
        second]
    assert await store.tasks_changed_since((), 0) == []
    assert [t.id for t in await store.tasks_changed_since(None, 0, limit=1)] == [first]
    many = (*(f"owner{i}/repo{i}" for i in range(5000)), "octo/two")
    assert [t.id for t in await store.tasks_changed_since(many, 0)] == [second]


async def started(store: Store, task_id: int, run_id: str) -> AgentRun:
    task = await store.get_task(task_id)
    assert task is not None
    assert await store.start_run(task, run_id=run_id, token_hash="h", runner="local",
                                 job=("machine.launch", f"launch:{run_id}", {}))
    run = await store.current_run(task.id)
    assert run is not None
    return run


async def test_the_log_tail_and_the_chunks_after_it(store: Store) -> None:
    run = await started(store, await new_task(store, 1), "r-1")
    task = await store.get_task(run.task_id)
    assert task is not None
    for seq in range(5):
        assert await store.append_log(run, seq=seq, text=f"{seq}" * 10, max_bytes=1 << 20)
    assert await store.run_log_tail("r-1", max_chars=25) == ("2222233333333334444444444", 4)
    assert await store.run_log_tail("none", max_chars=25) == ("", -1)
    assert await store.run_logs_after("r-1", 2, limit=1) == [(3, "3" * 10)]
    assert await store.last_event_id(task.id) > 0
    assert await store.last_event_id(task.id + 1000) == 0
    assert (await store.run_details("r-1")).keys() == {"prompt", "runner_owner"}


async def test_gauges_are_plain_numbers(store: Store) -> None:
    """Integer sums come back as Decimal on PostgreSQL: the gauges hand out int and float."""
    for n in range(3):
        await store.update_task(await new_task(store, n), cost_usd=0.25)
    await new_task(store, 9)
    [total] = await store.task_totals()
    assert (total.state, total.agent, total.tasks, total.cost_usd) == ("queued", "claude", 4, 0.75)
    assert type(total.tasks) is int and type(total.cost_usd) is float
    count = await store.live_run_count()
    assert count == 0 and type(count) is int


# -- users, sessions, sealed secrets, audit ------------------------------------------------


async def test_sign_in_sessions_and_sealed_secrets(store: Store, clock: Clock) -> None:
    user = await store.sign_in(
        user_id=7, login="alice", name="Alice", avatar_url=None,
        secrets={"github_token": ("sealed-1", "abcd")}, token_expires_at=clock.now + 3600,
        session_hash="s-1", csrf="c-1", session_expires_at=clock.now + 60)
    assert (user.id, user.login, user.last_sign_in_at) == (7, "alice", clock.now)
    clock.now += 120  # s-1 expired; signing in again removes it
    again = await store.sign_in(
        user_id=7, login="alice2", name=None, avatar_url="https://a/b", secrets={},
        token_expires_at=None, session_hash="s-2", csrf="c-2",
        session_expires_at=clock.now + 60)
    assert (again.login, again.created_at, again.last_sign_in_at) == (
        "alice2", user.created_at, clock.now)
    assert await store.session("s-1") is None
    session = await store.session("s-2")
    assert session is not None and (session.user_id, session.csrf) == (7, "c-2")
    await store.end_session("s-2")
    assert await store.session("s-2") is None

    await store.update_user(7, default_agent="codex", fly_app="app-7")
    found = await store.get_user(7)
    assert found is not None and (found.default_agent, found.fly_app) == ("codex", "app-7")
    assert await store.get_user(8) is None
    with pytest.raises(ValueError):
        await store.update_user(7, login="mallory")

    await store.put_secrets(7, {"fly_token": ("sealed-2", "wxyz")})
    assert await store.sealed_secrets(7) == {"github_token": ("sealed-1", "abcd"),
                                             "fly_token": ("sealed-2", "wxyz")}
    assert await store.replace_sealed(7, "fly_token", "sealed-2", "sealed-3")
    assert not await store.replace_sealed(7, "fly_token", "sealed-2", "sealed-4")
    await store.put_secrets(7, {}, remove=("github_token",))
    assert await store.all_sealed() == [(7, "fly_token", "sealed-3")]


async def test_the_audit_log_pages_newest_first(store: Store) -> None:
    for n in range(5):
        await store.audit(actor="boss" if n % 2 else "alice", actor_id=n, action=f"a{n % 2}",
                          target=f"task {n}", source="web", detail={"n": n})
    entries = await store.audit_entries(limit=2)
    assert [entry.detail["n"] for entry in entries] == [4, 3]
    older = await store.audit_entries(before=entries[-1].id)
    assert [entry.detail["n"] for entry in older] == [2, 1, 0]
    assert [e.target for e in await store.audit_entries(actor="boss", action="a1")] == [
        "task 3", "task 1"]


# -- the LLM calls' accounting -------------------------------------------------------------


def call(task_id: int, run_id: str, cost: float | None, *, user: int = 7,
         at: float = 1000.0) -> LlmCall:
    return LlmCall(run_id=run_id, task_id=task_id, user_id=user, provider="anthropic",
                   model="m", status=200, input_tokens=100, output_tokens=20,
                   cache_read_tokens=3, cache_write_tokens=4, cost_usd=cost, started_at=at,
                   duration_ms=50)


async def test_llm_calls_sum_per_run_task_and_requester(store: Store) -> None:
    task_id = await new_task(store, 1)
    assert await store.task_calls(task_id) is None
    assert await store.run_cost("r-1") == 0.0
    await started(store, task_id, "r-1")
    other = await started(store, await new_task(store, 2), "r-2")
    await store.record_call(call(task_id, "r-1", 0.5))
    await store.record_call(call(task_id, "r-1", None))
    await store.record_call(call(other.task_id, "r-2", 0.25, at=2000.0))
    totals = await store.task_calls(task_id)
    assert totals is not None
    assert (totals.calls, totals.unpriced, totals.input_tokens, totals.output_tokens,
            totals.cache_read_tokens, totals.cache_write_tokens, totals.cost_usd) == (
        2, 1, 200, 40, 6, 8, 0.5)
    assert all(type(value) is int for value in (totals.calls, totals.input_tokens,
                                                 totals.cache_write_tokens))
    assert await store.run_cost("r-1") == 0.5
    assert await store.user_cost_since(7, 1500.0) == 0.25
    assert await store.user_cost_since(7, 0) == 0.75
    task = await store.get_task(task_id)
    assert task is not None and task.cost_usd == 0.5


# -- intake's group commit -----------------------------------------------------------------


async def test_deliveries_arriving_together_share_commits_and_each_is_answered(
        store: Store) -> None:
    writer = store.intake(default_agent="claude")
    triggers = [trigger(f"d-{n}", 700 + n) for n in range(40)]
    results = await asyncio.gather(*(writer.submit(t) for t in [*triggers, triggers[0]]))
    created = [r.task_id for r in results[:-1]]
    assert None not in created and len(set(created)) == 40
    assert results[-1].duplicate and results[-1].task_id is None
    assert len(await store.recorded_deliveries([f"d-{n}" for n in range(40)])) == 40


# -- the writer's lock timeout (PostgreSQL: SQLite's busy_timeout is its counterpart) ------


async def test_a_write_stuck_behind_a_held_lock_fails_as_a_store_error(
        postgres_database: str) -> None:
    backend = await PgBackend.connect(postgres_database, lock_timeout=0.2)
    store = Store(backend, clock=Clock())
    await store.migrate()
    try:
        with psycopg.connect(postgres_database) as other:
            other.execute("SELECT pg_advisory_lock(%s)", (WRITER_KEY,))
            with pytest.raises(StoreError, match="locked"):
                await store.audit(actor="a", actor_id=None, action="x", source="web")
            other.execute("SELECT pg_advisory_unlock(%s)", (WRITER_KEY,))
        await store.audit(actor="a", actor_id=None, action="x", source="web")
        assert len(await store.audit_entries()) == 1
    finally:
        await store.close()
