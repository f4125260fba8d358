"""`porter migrate-store`: move a SQLite Porter database into an empty PostgreSQL database.

The source is read in one read transaction, so the copy is one consistent snapshot even if a
Porter still writes to it. The target gets its PostgreSQL migrations first (each in its own
transaction, porter/store/pg_migrations.py); then everything else happens in ONE transaction
holding the writers' lock (porter/store/pg_backend.py): the check that the target holds no data,
the rows of every table (parents before children, in batches), the identity sequences moved past
the copied ids, and the row counts compared. Any failure rolls it all back: the target is left
migrated and empty, never half copied, and a live database is never merged into.

What is planned from the two schemas (the order, the conversions, which rows change) is pure
and lives apart from the I/O below it.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from porter.errors import PorterError
from porter.settings import Settings
from porter.settings.database import DatabaseUrl
from porter.states import JobState
from porter.store.connection import migrations
from porter.store.pg_backend import WRITER_KEY
from porter.store.pg_migrations import migrate as migrate_postgres

BATCH = 1000  # rows read from SQLite at a time

# Tables whose rows stay behind, and why (the summary says).
SKIPPED = {
    # The PostgreSQL migrator recorded its own migrations in the target.
    "schema_migrations": "the PostgreSQL migrations record their own",
    # Processes of the old host: their claims are released below, and a new Porter registers
    # itself when it opens the database.
    "processes": "processes of the old host",
}

Convert = Callable[[Any], Any]


@dataclass(frozen=True)
class TableCopy:
    """One table's outcome: rows in the source snapshot, rows now in the target."""

    name: str
    source_rows: int
    copied: int
    skipped: str = ""  # why its rows stayed behind, for a table in SKIPPED


@dataclass(frozen=True)
class Transfer:
    source: Path
    target: str  # the target URL, password masked
    tables: tuple[TableCopy, ...]
    released_jobs: int  # running jobs put back to pending

    def summary(self) -> list[str]:
        width = max((len(t.name) for t in self.tables), default=0)
        lines = [f"copied {self.source} into {self.target}:"]
        for table in self.tables:
            done = f"skipped {_rows(table.source_rows)} ({table.skipped})" if table.skipped \
                else _rows(table.copied)
            lines.append(f"  {table.name:<{width}}  {done}")
        if self.released_jobs:
            lines.append("running jobs put back to pending (their process is gone): "
                         f"{self.released_jobs}; the new Porter runs them")
        return lines


def _rows(count: int) -> str:
    return "1 row" if count == 1 else f"{count} rows"


# -- planning (pure) --------------------------------------------------------------------------


def copy_order(tables: Sequence[str], parents: Mapping[str, set[str]]) -> list[str]:
    """`tables` with every table after the tables its foreign keys reference (parents outside
    `tables`, and a table's references to itself, are ignored); otherwise in the given order."""
    remaining = list(tables)
    placed: list[str] = []
    while remaining:
        ready = [t for t in remaining
                 if not (parents.get(t, set()) & set(remaining)) - {t}]
        if not ready:
            raise PorterError("the source's foreign keys form a cycle among "
                              f"{', '.join(remaining)}: no order copies them")
        placed.extend(ready)
        remaining = [t for t in remaining if t not in ready]
    return placed


def _to_int(value: Any) -> Any:
    # Anything but a whole number reaches PostgreSQL as it is, which refuses what does not fit.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _to_float(value: Any) -> Any:
    return float(value) if isinstance(value, int) else value


def _to_bool(value: Any) -> Any:
    return bool(value) if isinstance(value, int) else value


def _to_json(value: Any) -> Any:
    # SQLite keeps JSON as text; PostgreSQL's json types are filled from the parsed value.
    return Jsonb(json.loads(value)) if isinstance(value, str | bytes) else value


def converter(pg_type: str) -> Convert | None:
    """How a SQLite value becomes one of a PostgreSQL column type (None: as it is). SQLite
    stores a whole REAL as an integer and a flag as 0 or 1; its JSON is text."""
    if pg_type in ("bigint", "integer", "smallint"):
        return _to_int
    if pg_type in ("double precision", "real", "numeric"):
        return _to_float
    if pg_type == "boolean":
        return _to_bool
    if pg_type in ("json", "jsonb"):
        return _to_json
    return None


def carried(table: str, columns: Sequence[str]) -> Callable[[Sequence[Any]], list[Any]]:
    """What a source row of `table` becomes in the target: a running job's claim belonged to a
    process of the old host, which is gone, so the job is pending again and unclaimed."""
    if table != "jobs":
        return list
    state, claimed, until = (columns.index(c) for c in ("state", "claimed_by", "locked_until"))

    def release(row: Sequence[Any]) -> list[Any]:
        values = list(row)
        if values[state] == JobState.RUNNING:
            values[state], values[claimed], values[until] = JobState.PENDING, None, None
        return values

    return release


def check_schemas(source: Mapping[str, Sequence[str]],
                  target: Mapping[str, Mapping[str, str]]) -> None:
    """Refuse when a source table or column has no place in the target (a Porter whose two
    schemas disagree would lose it)."""
    for table, columns in source.items():
        if table not in target:
            raise PorterError(f"the PostgreSQL schema has no table {table}: this Porter cannot "
                              "move this database")
        missing = [c for c in columns if c not in target[table]]
        if missing:
            raise PorterError(f"the PostgreSQL table {table} has no column "
                              f"{', '.join(missing)}: this Porter cannot move this database")


def next_id(max_id: int | None, autoincrement: int | None) -> int:
    """The first id a new row may take: past every copied id, and past every id SQLite ever
    handed out for an AUTOINCREMENT table (a deleted task's number is never reused: GitHub
    comments link to it)."""
    return max(max_id or 0, autoincrement or 0) + 1


# -- the source -------------------------------------------------------------------------------


@contextlib.contextmanager
def _snapshot(path: Path) -> Iterator[sqlite3.Connection]:
    """The SQLite file, read-only, inside one read transaction (a consistent snapshot)."""
    if not path.is_file():
        raise PorterError(f"no SQLite database at {path}: nothing to move")
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
    try:
        db.execute("PRAGMA busy_timeout = 5000")
        db.execute("BEGIN")  # the snapshot starts at the first read and lasts the copy
        try:
            _check_migrated(db, path)
        except sqlite3.DatabaseError as exc:
            raise PorterError(f"cannot read {path}: {exc}") from None
        yield db
        db.execute("COMMIT")
    finally:
        db.close()


def _check_migrated(db: sqlite3.Connection, path: Path) -> None:
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table'"
                  " AND name = 'schema_migrations'").fetchone() is None:
        raise PorterError(f"{path} is not a Porter database (no schema_migrations)")
    applied = {int(row[0]) for row in db.execute("SELECT version FROM schema_migrations")}
    known = {m.version for m in migrations()}
    if applied - known:
        raise PorterError(f"{path} was migrated by a newer Porter: move it with that Porter")
    if known - applied:
        raise PorterError(f"{path} is not at the latest migration: run `porter migrate` with "
                          f"PORTER_DATABASE={path} first")


def _source_tables(db: sqlite3.Connection) -> dict[str, list[str]]:
    """Every Porter table (SQLite's own sqlite_* left out), in creation order, its columns."""
    names = [str(row[0]) for row in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        " ORDER BY rowid")]
    return {name: [str(row[1]) for row in db.execute(f'PRAGMA table_info("{name}")')]
            for name in names}


def _parents(db: sqlite3.Connection, tables: Sequence[str]) -> dict[str, set[str]]:
    return {name: {str(row[2]) for row in db.execute(f'PRAGMA foreign_key_list("{name}")')}
            for name in tables}


def _autoincrement(db: sqlite3.Connection) -> dict[str, int]:
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").fetchone() is None:
        return {}
    return {str(row[0]): int(row[1]) for row in db.execute("SELECT name, seq FROM sqlite_sequence")}


# -- the target -------------------------------------------------------------------------------


def _target_columns(conn: psycopg.Connection[Any]) -> dict[str, dict[str, str]]:
    """table → column → PostgreSQL type, for the tables of the target's public schema."""
    found: dict[str, dict[str, str]] = {}
    for table, column, kind in conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"):
        found.setdefault(str(table), {})[str(column)] = str(kind)
    return found


def _count(conn: psycopg.Connection[Any], table: str) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
    return int(row[0]) if row else 0


def _refuse_unless_empty(conn: psycopg.Connection[Any], tables: Sequence[str],
                         target: str) -> None:
    holding = [t for t in tables if conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})")
                                                 .format(sql.Identifier(t))).fetchone() != (False,)]
    if holding:
        raise PorterError(f"{target} already holds Porter data (in {', '.join(holding)}): "
                          "migrate-store fills only an empty database, it never merges")


def _copy_table(source: sqlite3.Connection, conn: psycopg.Connection[Any], table: str,
                columns: Sequence[str], types: Mapping[str, str]) -> int:
    """Stream the table's rows into PostgreSQL's COPY, read from SQLite a batch at a time (so
    memory stays flat however large the table); how many were written."""
    convert = [converter(types[c]) for c in columns]
    rewrite = carried(table, columns)
    quoted = ", ".join(f'"{c}"' for c in columns)
    cursor = source.execute(f'SELECT {quoted} FROM "{table}"')
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
    copied = 0
    with conn.cursor() as writer, writer.copy(statement) as copy:
        while batch := cursor.fetchmany(BATCH):
            for row in batch:
                copy.write_row([value if f is None or value is None else f(value)
                                for f, value in zip(convert, rewrite(row), strict=True)])
            copied += len(batch)
    return copied


def _advance_sequence(conn: psycopg.Connection[Any], table: str, start: int) -> None:
    """New rows of an identity column get ids after the copied ones, not from 1 again."""
    conn.execute("SELECT setval(seq, %(start)s, false) FROM"
                 " (SELECT pg_get_serial_sequence(%(table)s, 'id') AS seq) AS found"
                 " WHERE seq IS NOT NULL",  # a text id, or a GitHub id, has no sequence
                 {"table": sql.Identifier(table).as_string(conn), "start": start})


def transfer(source: Path, target: DatabaseUrl) -> Transfer:
    """Copy the SQLite database at `source` into the empty PostgreSQL database `target`."""
    with _snapshot(source) as db:
        try:
            migrate_postgres(target.get())
            with psycopg.connect(target.get()) as conn:  # one transaction, committed at the end
                tables = _copy_all(db, conn, str(target))
        except psycopg.Error as exc:
            problem = target.redact(" ".join(str(exc).split()))
            raise PorterError(f"{target}: {problem}; nothing was copied") from None
        except sqlite3.Error as exc:
            raise PorterError(f"cannot read {source}: {exc}; nothing was copied") from None
        released = 0
        if any(t.name == "jobs" for t in tables):
            released = int(db.execute("SELECT count(*) FROM jobs WHERE state = ?",
                                      (JobState.RUNNING,)).fetchone()[0])
    return Transfer(source, str(target), tables, released)


def _copy_all(db: sqlite3.Connection, conn: psycopg.Connection[Any],
              target: str) -> tuple[TableCopy, ...]:
    """Inside the target's one transaction: check, copy, advance, count."""
    tables = _source_tables(db)
    order = copy_order(list(tables), _parents(db, list(tables)))
    autoincrement = _autoincrement(db)
    # Porters already on the target wait for this transaction to end.
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_KEY,))
    types = _target_columns(conn)
    check_schemas({t: c for t, c in tables.items() if t not in SKIPPED}, types)
    _refuse_unless_empty(conn, [t for t in order if t != "schema_migrations"], target)
    done = []
    for table in order:
        in_source = int(db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
        if table in SKIPPED:
            done.append(TableCopy(table, in_source, 0, SKIPPED[table]))
            continue
        copied = _copy_table(db, conn, table, tables[table], types[table])
        if "id" in tables[table]:
            top = db.execute(f'SELECT max(id) FROM "{table}"').fetchone()[0]
            if top is None or isinstance(top, int):
                _advance_sequence(conn, table, next_id(top, autoincrement.get(table)))
        in_target = _count(conn, table)
        if not in_source == copied == in_target:
            raise PorterError(f"{table}: {in_source} rows in the source, {in_target} in the "
                              "target; nothing was copied")
        done.append(TableCopy(table, in_source, in_target))
    return tuple(done)


# -- after the move ---------------------------------------------------------------------------


def after_move(settings: Settings, source: Path, target: DatabaseUrl) -> list[str]:
    """What the operator must carry over by hand: the key ring and the run logs. The new
    places are where a Porter with these settings and PORTER_DATABASE=`target` looks."""
    new = replace(settings, database=target)
    # A SQLite Porter's generated ring is always beside its file (Settings.keys_file).
    old_keys = replace(settings, database=source).keys_file
    if settings.secret_keys is not None:
        keys = "sealed secrets need the same key ring: keep PORTER_SECRET_KEYS as it is"
    elif old_keys.is_file():
        keys = f"sealed secrets need the same key ring: copy {old_keys} to " \
               f"{new.keys_file} (PORTER_DATA_DIR), or set PORTER_SECRET_KEYS to its contents"
    else:
        keys = f"no key ring at {old_keys}: if the old Porter had PORTER_SECRET_KEYS, keep " \
               "it; otherwise nothing was sealed"
    # The old Porter's PORTER_DATA_DIR is unknown here; without one its runs/ was beside the file.
    old_runs = source.parent / "runs"
    runs = f"run logs stay in {new.runs_dir}" if old_runs.resolve() == new.runs_dir.resolve() \
        else f"run logs are files: move {old_runs} (or runs/ of the old PORTER_DATA_DIR) " \
             f"to {new.runs_dir}"
    return [keys, runs]
