"""The store on PostgreSQL (porter/store/pg_backend.py), on a real cluster: what only it has.

The behaviour both stores share is tested once for both (the `store_database` fixture, e.g.
tests/integration/test_store.py); here is what SQLite gives for free and PostgreSQL must be made
to: writers of several Porter processes taking turns, a failed transaction leaving the writer
usable, and `PORTER_DATABASE` choosing the store.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import psycopg
import pytest

from porter.store import Store
from porter.store.pg_backend import WRITER_KEY, is_postgres
from porter.store.pg_migrations import LOCK_KEY


def test_a_url_chooses_postgresql_and_anything_else_sqlite() -> None:
    assert is_postgres("postgresql://porter@127.0.0.1:5432/porter")
    assert is_postgres("postgres://porter@db/porter")
    assert not is_postgres("porter.db")
    assert not is_postgres(Path("postgresql:/porter.db"))  # a path is a file, whatever its name
    assert WRITER_KEY != LOCK_KEY


async def test_writers_of_two_processes_never_claim_one_job_twice(postgres_database: str) -> None:
    # Two stores on one database are two Porter processes: each has its own writer connection.
    first, second = Store.open(postgres_database), Store.open(postgres_database)
    stores = await asyncio.gather(first, second)
    try:
        for number in range(40):
            await stores[number % 2].enqueue("example", f"job:{number}")
        claimed: list[int] = []
        for _ in range(20):
            rounds = await asyncio.gather(*(
                store.claim_jobs(now=stores[0].clock() + 1, limit=1, lease=600)
                for store in stores))
            claimed += [job.id for jobs in rounds for job in jobs]
        assert len(claimed) == 40
        assert len(set(claimed)) == 40  # SKIP LOCKED: never one job twice
    finally:
        for store in stores:
            await store.close()


async def test_a_failed_transaction_rolls_back_and_the_writer_goes_on(
        postgres_database: str) -> None:
    store = await Store.open(postgres_database)
    try:
        def fail(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO jobs (kind, key, payload, run_after, created_at, updated_at)"
                       " VALUES ('example', 'k', '{}', 0, 0, 0)")
            db.execute("SELECT no_such_column FROM jobs")

        with pytest.raises(psycopg.errors.UndefinedColumn):
            await store._write(fail)
        assert await store.jobs() == []  # the insert before the error was rolled back
        await store.enqueue("example", "after")
        assert [job.key for job in await store.jobs()] == ["after"]
    finally:
        await store.close()


async def test_readers_do_not_wait_for_a_writer_holding_the_lock(postgres_database: str) -> None:
    store = await Store.open(postgres_database)
    try:
        with psycopg.connect(postgres_database) as other:  # another process, mid-transaction
            other.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_KEY,))
            assert await asyncio.wait_for(store.jobs(), 5) == []
            write = asyncio.create_task(store.enqueue("example", "waits"))
            await asyncio.sleep(0.3)
            assert not write.done()  # it waits its turn, as under SQLite's write lock
            other.rollback()
            await asyncio.wait_for(write, 5)
        assert [job.key for job in await store.jobs()] == ["waits"]
    finally:
        await store.close()
