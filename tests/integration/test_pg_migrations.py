"""PostgreSQL migrations (porter/store/pg_migrations.py), on a real cluster: once per database,
under an advisory lock, to a schema with every table and column of SQLite's."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import psycopg
import pytest

from porter.states import JobState
from porter.store import Store
from porter.store.base import put_job
from porter.store.connection import migrations
from porter.store.pg_connection import PgConnection
from porter.store.pg_migrations import LOCK_KEY, migrate, postgres_migrations
from porter.store.pg_migrations import applied_versions as pg_applied

# How SQLite's declared types are spelled in PostgreSQL (information_schema.data_type).
PG_TYPE = {"INTEGER": "bigint", "REAL": "double precision", "TEXT": "text", "BLOB": "bytea"}


async def sqlite_database(path: Path) -> sqlite3.Connection:
    """A SQLite database as the store makes it (every migration, schema_migrations)."""
    store = await Store.open(path / "porter.db")
    await store.close()
    return sqlite3.connect(path / "porter.db")


def sqlite_schema(db: sqlite3.Connection) -> dict[str, dict[str, tuple[str, bool, bool]]]:
    """SQLite's tables: column -> (declared type, NOT NULL, in the primary key)."""
    tables = [r[0] for r in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    return {table: {c[1]: (c[2], bool(c[3]), bool(c[5]))
                    for c in db.execute(f"PRAGMA table_info({table})")} for table in tables}


def pg_schema(url: str) -> dict[str, dict[str, tuple[str, bool, bool]]]:
    with psycopg.connect(url) as conn:
        keys = {(r[0], r[1]) for r in conn.execute(
            "SELECT tc.table_name, k.column_name FROM information_schema.table_constraints tc"
            " JOIN information_schema.key_column_usage k USING (constraint_name, table_schema)"
            " WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = 'public'")}
        schema: dict[str, dict[str, tuple[str, bool, bool]]] = {}
        for table, column, kind, nullable in conn.execute(
                "SELECT table_name, column_name, data_type, is_nullable"
                " FROM information_schema.columns WHERE table_schema = 'public'"):
            schema.setdefault(table, {})[column] = (kind, nullable == "NO",
                                                    (table, column) in keys)
        return schema


def index_names(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}


def test_the_postgres_migrations_are_sqlites_numbered_and_named_alike() -> None:
    assert [(m.version, m.name) for m in postgres_migrations()] == [
        (m.version, m.name) for m in migrations()]


async def test_the_schema_has_every_table_and_column_of_sqlites(postgres_database: str,
                                                               tmp_path: Path) -> None:
    migrate(postgres_database)
    lite_db = await sqlite_database(tmp_path)
    lite, pg = sqlite_schema(lite_db), pg_schema(postgres_database)
    assert set(pg) == set(lite)
    for table, columns in lite.items():
        assert set(pg[table]) == set(columns), table
        for column, (kind, not_null, primary) in columns.items():
            pg_kind, pg_not_null, pg_primary = pg[table][column]
            assert pg_kind == PG_TYPE[kind], (table, column)
            # SQLite lets a lone INTEGER PRIMARY KEY be NULL in its declaration; PG never does.
            assert pg_not_null == (not_null or primary), (table, column)
            assert pg_primary == primary, (table, column)
    lite_indexes = {r[0] for r in lite_db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    assert lite_indexes <= index_names(postgres_database)


def test_migrations_apply_once(postgres_database: str) -> None:
    first = migrate(postgres_database)
    assert [m.version for m in first] == [m.version for m in postgres_migrations()]
    assert migrate(postgres_database) == []
    with psycopg.connect(postgres_database) as conn:
        assert pg_applied(conn) == {m.version for m in first}


def test_three_racing_runners_apply_each_migration_once(postgres_database: str) -> None:
    """Three runners start together; the lock makes one apply everything while the others
    wait, then find nothing pending. A slow first migration widens the window for a race."""
    start = threading.Barrier(3)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def slow(migration: object) -> None:
        time.sleep(0.05)

    def runner() -> None:
        try:
            start.wait()
            results.append([m.version for m in migrate(postgres_database, before_apply=slow)])
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=runner) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    applied = sorted(version for result in results for version in result)
    assert applied == [m.version for m in postgres_migrations()]  # each once, by someone
    assert sorted(len(result) > 0 for result in results) == [False, False, True]
    with psycopg.connect(postgres_database) as conn:
        count = conn.execute("SELECT count(*), count(DISTINCT version)"
                             " FROM schema_migrations").fetchone()
        assert count == (len(applied), len(applied))


def test_a_runner_waits_while_another_holds_the_lock(postgres_database: str) -> None:
    with psycopg.connect(postgres_database, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        done = threading.Event()

        def run() -> None:
            migrate(postgres_database)
            done.set()

        thread = threading.Thread(target=run)
        thread.start()
        assert not done.wait(0.5)  # blocked on the lock, nothing applied meanwhile
        exists = holder.execute("SELECT to_regclass('public.tasks')").fetchone()
        assert exists == (None,)
        holder.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        assert done.wait(30)
        thread.join()
    assert migrate(postgres_database) == []


def test_a_failing_migration_leaves_nothing_of_itself(postgres_database: str) -> None:
    migrate(postgres_database)
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute("DELETE FROM schema_migrations WHERE version = 11")
        # 0011 again: its CREATE TABLE fails (the table exists), and its record is not written.
        with pytest.raises(psycopg.errors.DuplicateTable):
            migrate(postgres_database)
        assert 11 not in pg_applied(conn)
        # The lock went with the failed runner: another can take it at once.
        assert conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone() == (True,)


def test_a_store_closure_runs_on_the_migrated_schema(postgres_database: str) -> None:
    """The store's own `put_job` (SQLite placeholders, StrEnum states, ON CONFLICT, rowcount),
    unchanged, through PgConnection on the migrated schema."""
    migrate(postgres_database)
    with PgConnection.connect(postgres_database) as db:
        with db.transaction():
            assert put_job(db, "react", "k1", {"content": "eyes"},  # type: ignore[arg-type]
                           task_id=None, installation_id=7, now=100.0)
            assert not put_job(db, "react", "k1", {"content": "eyes"},  # type: ignore[arg-type]
                               task_id=None, installation_id=7, now=101.0)
        db.execute("UPDATE jobs SET state = ? WHERE key = ?", (JobState.DONE, "k1"))
        assert put_job(db, "react", "k1", {}, task_id=None,  # type: ignore[arg-type]
                       installation_id=7, now=102.0, again_when_finished=True)
        row = db.execute("SELECT * FROM jobs WHERE key = :key", {"key": "k1"}).fetchone()
    assert row is not None
    assert (row["state"], row["priority"], row["installation_id"]) == ("pending", 0, 7)
    assert row["id"] == 1 and row["run_after"] == 102.0 and row["updated_at"] == 102.0
