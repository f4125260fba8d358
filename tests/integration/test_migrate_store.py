"""`porter migrate-store`: a SQLite Porter database, filled through the store, moved into a
fresh PostgreSQL database, and read back through the store there.

The command as users run it (`porter.cli.main`, and once as a subprocess), a real SQLite file,
a real PostgreSQL cluster (tests/postgres.py).
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from porter.cli import main
from porter.crypto import KeyRing, open_sealed, seal
from porter.models import Task, TaskEvent
from porter.states import JobState, TaskState
from porter.store import Store
from porter.store.connection import migrations
from porter.store.llm import LlmCall
from porter.store.transfer import converter, copy_order
from tests.conftest import trigger

PASSWORD = "s3cret-Pw-for-the-move"
RING = KeyRing.generate()


@dataclass
class Source:
    """The SQLite database to move, with a Porter still open on it, and what it holds."""

    path: Path
    store: Store
    tasks: list[Task]
    events: dict[int, list[TaskEvent]]
    running_job: int  # a job claimed by the open Porter
    run_id: str
    instance_id: str


def with_password(url: str) -> str:
    # The throwaway cluster trusts loopback, so it never asks for the password the URL carries.
    return url.replace("postgresql://porter@", f"postgresql://porter:{PASSWORD}@", 1)


@pytest.fixture
async def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Source]:
    monkeypatch.delenv("PORTER_SECRET_KEYS", raising=False)
    monkeypatch.delenv("PORTER_DATA_DIR", raising=False)
    monkeypatch.delenv("PORTER_DATABASE", raising=False)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "old" / "porter.db"
    store = await Store.open(path)
    path.with_name("porter.db.keys").write_text(RING.serialize() + "\n")  # as load_keyring does
    try:
        results = await store.record_triggers(
            [trigger(f"d-{n}", n, f"@porter task {n}") for n in (1, 2, 3)],
            default_agent="claude")
        ids = [r.task_id for r in results if r.task_id is not None]
        first = await store.get_task(ids[0])
        assert first is not None
        run_id = "run-1"
        assert await store.start_run(first, run_id=run_id, token_hash="h" * 64, runner="local",
                                     job=("machine.launch", f"launch:{run_id}", {"run": run_id}))
        run = await store.get_run(run_id)
        assert run is not None
        await store.run_contact(run, stage="agent", message="thinking")
        assert await store.append_log(run, seq=0, text="hello from the machine",
                                      max_bytes=10_000)
        await store.record_call(LlmCall(
            run_id=run_id, task_id=first.id, user_id=7, provider="anthropic", model="m",
            status=200, input_tokens=10, output_tokens=5, cache_read_tokens=0,
            cache_write_tokens=0, cost_usd=0.25, started_at=time.time(), duration_ms=120))
        await store.transition(ids[2], expected=TaskState.QUEUED, target=TaskState.FAILED,
                               stage="dispatch", reason="no slot", data={"why": "test"})
        await store.sign_in(
            user_id=42, login="octocat", name="Octo", avatar_url=None,
            secrets={"github_token": (seal(RING, "ghu_token", user_id="42",
                                           name="github_token"), "oken")},
            token_expires_at=None, session_hash="s" * 64, csrf="c",
            session_expires_at=time.time() + 3600)
        await store.audit(actor="octocat", actor_id=42, action="settings.save",
                          source="page", detail={"fields": ["model"]})
        [claimed] = await store.claim_jobs(now=time.time(), limit=1, lease=600)
        tasks = [t for t in [await store.get_task(i) for i in ids] if t is not None]
        events = {t.id: await store.task_events(t.id) for t in tasks}
        yield Source(path, store, tasks, events, claimed.id, run_id, store.instance_id)
    finally:
        await store.close()


def migrate_store(source: Path | str, target: str) -> int:
    return main(["migrate-store", "--from", str(source), "--to", target])


def rows_in(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608 - ours
        assert row is not None
        return int(row[0])


async def test_the_moved_database_reads_back_the_same_through_the_store(
    source: Source, postgres_database: str, capsys: pytest.CaptureFixture[str],
) -> None:
    assert migrate_store(f"sqlite:{source.path}", with_password(postgres_database)) == 0
    out, err = capsys.readouterr()
    assert PASSWORD not in out + err
    assert re.search(r"^  tasks +3 rows$", out, re.MULTILINE), out
    events = sum(len(e) for e in source.events.values())
    assert re.search(rf"^  task_events +{events} rows$", out, re.MULTILINE), out
    assert "skipped 1 row (processes of the old host)" in out
    assert "jobs put back to pending (their process is gone): 1" in out
    # The operator is told to bring the key ring: sealed secrets are unreadable without it.
    assert f"copy {source.path}.keys to " in err and "PORTER_SECRET_KEYS" in err
    assert "run logs" in err

    moved = await Store.open(postgres_database)
    try:
        assert moved.instance_id == source.instance_id  # machines carry it: the same Porter
        assert [await moved.get_task(t.id) for t in source.tasks] == source.tasks
        for task in source.tasks:
            assert await moved.task_events(task.id) == source.events[task.id]
        assert await moved.get_run(source.run_id) == await source.store.get_run(source.run_id)
        assert await moved.run_logs(source.run_id) == [(0, "hello from the machine")]
        assert await moved.run_cost(source.run_id) == 0.25
        [sealed] = (await moved.sealed_secrets(42)).values()
        assert open_sealed(RING, sealed[0], user_id="42", name="github_token") == "ghu_token"
        user = await moved.get_user(42)
        assert user is not None and user.login == "octocat"
        [entry] = await moved.audit_entries()
        assert (entry.action, entry.detail) == ("settings.save", {"fields": ["model"]})

        # The job the old process held is the new Porter's to run, at once.
        jobs = {job.id: job for job in await moved.jobs()}
        assert jobs.keys() == {job.id for job in await source.store.jobs()}
        assert jobs[source.running_job].state == JobState.PENDING
        [taken] = await moved.claim_jobs(now=time.time(), limit=1, lease=60)
        assert taken.id == source.running_job

        # New rows get ids after the old ones, in every table numbered by the database.
        [result] = await moved.record_triggers([trigger("d-new", 99)], default_agent="claude")
        assert result.task_id is not None
        assert result.task_id > max(t.id for t in source.tasks)
        events = await moved.task_events(result.task_id)
        old_events = [e.id for es in source.events.values() for e in es]
        assert min(e.id for e in events) > max(old_events)
    finally:
        await moved.close()


async def test_a_second_run_refuses_and_leaves_the_target_as_it_was(
    source: Source, postgres_database: str, capsys: pytest.CaptureFixture[str],
) -> None:
    assert migrate_store(source.path, postgres_database) == 0
    store = await Store.open(postgres_database)
    try:
        await store.record_triggers([trigger("d-new", 99)], default_agent="claude")
    finally:
        await store.close()
    capsys.readouterr()

    assert migrate_store(source.path, postgres_database) == 1
    err = capsys.readouterr().err
    assert "already holds Porter data" in err and "never merges" in err
    assert rows_in(postgres_database, "tasks") == 4
    assert rows_in(postgres_database, "task_events") == \
        sum(len(e) for e in source.events.values()) + 1


async def test_a_row_the_target_refuses_rolls_back_the_whole_copy(
    source: Source, postgres_database: str, capsys: pytest.CaptureFixture[str],
) -> None:
    # An event of a task that is not there: SQLite takes it on a connection without
    # foreign keys on; PostgreSQL refuses it, after every task was copied.
    with contextlib.closing(sqlite3.connect(source.path, isolation_level=None)) as db:
        db.execute("INSERT INTO task_events (task_id, attempt, at, kind) VALUES (999, 1, 0, 'x')")
    assert migrate_store(source.path, postgres_database) == 1
    err = capsys.readouterr().err
    assert "task_events" in err and "nothing was copied" in err
    assert rows_in(postgres_database, "tasks") == 0
    assert rows_in(postgres_database, "deliveries") == 0


async def test_an_unmigrated_source_is_refused_and_nothing_is_copied(
    tmp_path: Path, postgres_database: str, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "old.db"
    store = await Store.open(path, migrate=False)
    try:
        await store.applied_versions()  # schema_migrations exists, nothing is applied
    finally:
        await store.close()
    assert migrate_store(path, postgres_database) == 1
    err = capsys.readouterr().err
    assert "not at the latest migration" in err and "porter migrate" in err
    with psycopg.connect(postgres_database) as conn:
        assert conn.execute("SELECT to_regclass('tasks')").fetchone() == (None,)


async def test_a_missing_source_is_refused_and_not_created(
    tmp_path: Path, postgres_database: str, capsys: pytest.CaptureFixture[str],
) -> None:
    missing = tmp_path / "nowhere.db"
    assert migrate_store(missing, postgres_database) == 1
    assert f"no SQLite database at {missing}" in capsys.readouterr().err
    assert not missing.exists()


@pytest.mark.parametrize(("source", "target", "says"), [
    ("postgresql://porter:{pw}@127.0.0.1/x", "postgresql://porter@127.0.0.1/y",
     "--from postgresql://porter:***@127.0.0.1/x: a SQLite file"),
    ("porter.db", "sqlite:other.db", "--to other.db: a postgresql:// or postgres:// URL"),
    ("porter.db", "mysql://porter:{pw}@db/porter",
     "--to mysql://porter:***@db/porter: not a SQLite"),
])
def test_arguments_of_the_wrong_kind_are_refused_in_one_line(
    source: str, target: str, says: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    code = migrate_store(source.format(pw=PASSWORD), target.format(pw=PASSWORD))
    err = capsys.readouterr().err
    assert code == 1
    assert says in err and PASSWORD not in err
    assert len(err.splitlines()) == 1


async def test_the_command_itself_moves_a_live_database_without_printing_the_password(
    source: Source, postgres_database: str, tmp_path: Path,
) -> None:
    url = with_password(postgres_database)
    # The Porter of the fixture still has the source open: the copy is a snapshot of it.
    done = subprocess.run(  # noqa: ASYNC221 - the test waits for the command and nothing else
        [sys.executable, "-m", "porter.cli", "migrate-store", "--from", str(source.path),
         "--to", url],
        env={"PATH": "/usr/bin:/bin", "PORTER_DATA_DIR": str(tmp_path / "data")},
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    assert "postgresql://porter:***@" in done.stdout
    assert f"copy {source.path}.keys to {tmp_path / 'data' / 'porter.keys'}" in done.stderr
    assert f"move {source.path.parent / 'runs'} " in done.stderr
    assert f"to {tmp_path / 'data' / 'runs'}\n" in done.stderr
    with contextlib.closing(sqlite3.connect(f"file:{source.path}?mode=ro", uri=True)) as db:
        for table in ("tasks", "task_events", "jobs", "runs", "run_logs", "users"):
            count = int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
            assert rows_in(postgres_database, table) == count, table
        versions = {int(r[0]) for r in db.execute("SELECT version FROM schema_migrations")}
    assert versions == {m.version for m in migrations()}


def test_tables_come_after_the_tables_they_reference(tmp_path: Path) -> None:
    """The order is read from the schema's foreign keys, so a table added later is placed."""
    order = copy_order(["llm_calls", "runs", "tasks", "deliveries", "notes"],
                       {"llm_calls": {"runs", "tasks"}, "runs": {"tasks"},
                        "tasks": {"deliveries"}, "notes": {"notes", "gone"}})
    assert order == ["deliveries", "notes", "tasks", "runs", "llm_calls"]


def test_values_take_the_type_of_their_postgresql_column() -> None:
    """SQLite keeps a whole REAL as an integer, a flag as 0 or 1, JSON as text."""
    assert converter("double precision")(3) == 3.0 and isinstance(
        converter("double precision")(3), float)
    assert converter("bigint")(4.0) == 4 and isinstance(converter("bigint")(4.0), int)
    assert converter("boolean")(1) is True
    assert converter("jsonb")('{"a": [1]}').obj == {"a": [1]}
    assert converter("text") is None


async def test_with_the_ring_in_the_environment_it_says_to_keep_that(
    source: Source, postgres_database: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PORTER_SECRET_KEYS", RING.serialize())
    assert migrate_store(source.path, postgres_database) == 0
    err = capsys.readouterr().err
    assert "keep PORTER_SECRET_KEYS as it is" in err and ".keys" not in err
    assert RING.serialize() not in err
