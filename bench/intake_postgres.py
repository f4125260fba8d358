"""PostgreSQL for bench/intake.py: an empty database per scenario, the server's durability
settings, and the deliveries a scenario's tasks record.

`--database` takes any PostgreSQL server URL whose user may create databases: each scenario
creates `porter_bench_<pid>_<n>` through the server's `postgres` database, its replicas share
it, and it is dropped afterwards. No line printed here carries the URL's password.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from urllib.parse import urlsplit

import psycopg

from porter.settings.database import DatabaseUrl


def on_database(url: str, name: str) -> str:
    """`url` with its database replaced by `name` (user, password, host and options kept)."""
    return urlsplit(url)._replace(path=f"/{name}").geturl()


def maintenance(url: str) -> str:
    return on_database(url, "postgres")


def shown(url: str) -> str:
    """The URL as it may be printed: its password masked."""
    return str(DatabaseUrl(url))


def hide_password(url: str, text: str) -> str:
    """A driver's error about `url`, with the password masked wherever it appears."""
    return DatabaseUrl(url).redact(text)


@contextlib.contextmanager
def scratch_database(url: str, n: int) -> Iterator[str]:
    """A new, empty database on `url`'s server for one scenario; its URL. Dropped on exit."""
    name = f"porter_bench_{os.getpid()}_{n}"  # made here, never a caller's text
    with psycopg.connect(maintenance(url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield on_database(url, name)
    finally:
        # FORCE: a replica that had to be killed may leave a session behind for a moment.
        with psycopg.connect(maintenance(url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_settings(url: str) -> dict[str, str]:
    """What a reader needs to judge the PostgreSQL figures: a server with fsync or
    synchronous_commit off acknowledges commits that never reached the disk."""
    with psycopg.connect(maintenance(url), autocommit=True) as conn:
        return {name: str(conn.execute(f"SHOW {name}").fetchone()[0])  # type: ignore[index]
                for name in ("server_version", "fsync", "synchronous_commit")}


def recorded_postgres(url: str) -> list[str]:
    """The delivery id of every task in the scenario's database, duplicates kept."""
    with psycopg.connect(url, autocommit=True) as conn:
        return [row[0] for row in conn.execute("SELECT delivery_id FROM tasks")]

