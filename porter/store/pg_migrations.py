"""PostgreSQL migrations (issue 12): porter/migrations/postgres/NNNN_name.sql, applied once per
database, each in its own transaction, under an advisory lock.

The files are the PostgreSQL forms of SQLite's porter/migrations/NNNN_name.sql, numbered and
named alike, recorded in the same `schema_migrations` table. Several Porter processes may share
one PostgreSQL database and start at once: each takes `pg_advisory_lock` (a lock of this
database, held by the session) before it reads what is applied, so one applies what is pending
while the others wait, then find nothing left to do.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import resources

import psycopg

from porter.store.connection import Migration

# The advisory lock's key: any fixed 64-bit number, the same in every Porter ("porter-m").
LOCK_KEY = int.from_bytes(b"porter-m", "big") & 0x7FFF_FFFF_FFFF_FFFF

SCHEMA_MIGRATIONS = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
)


def postgres_migrations() -> list[Migration]:
    """Every PostgreSQL migration, in order."""
    found = []
    for entry in (resources.files("porter.migrations") / "postgres").iterdir():
        stem = entry.name.removesuffix(".sql")
        if entry.name.endswith(".sql") and stem[:4].isdigit():
            found.append(Migration(int(stem[:4]), stem[5:], entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def applied_versions(conn: psycopg.Connection[object]) -> set[int]:
    rows = conn.execute("SELECT version FROM schema_migrations").fetchall()
    return {int(row[0]) for row in rows}  # type: ignore[index]


def migrate(url: str, *, clock: Callable[[], float] = time.time,
            before_apply: Callable[[Migration], None] | None = None) -> list[Migration]:
    """Apply every pending migration to the database at `url`, each in its own transaction,
    holding the database's migration lock throughout; the migrations this call applied.

    `before_apply` is called (lock held) before each migration is applied: tests use it.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        try:
            return _apply_pending(conn, clock, before_apply)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


def _apply_pending(conn: psycopg.Connection[object], clock: Callable[[], float],
                   before_apply: Callable[[Migration], None] | None) -> list[Migration]:
    conn.execute(SCHEMA_MIGRATIONS)
    applied = applied_versions(conn)
    pending = [m for m in postgres_migrations() if m.version not in applied]
    for migration in pending:
        if before_apply is not None:
            before_apply(migration)
        with conn.transaction():
            # A whole file in one simple-protocol execute (no parameters): its statements
            # run in order, inside this transaction.
            conn.execute(migration.sql.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                (migration.version, migration.name, clock()),
            )
    return pending
