"""bench/intake.py's PostgreSQL path at a tiny scale, as a reader runs it: Porter on SQLite and
on PostgreSQL with one and three replicas, every acknowledged delivery found in the database,
and the URL's password never printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import psycopg

from tests.conftest import ROOT

PASSWORD = "never-shown-pw"  # the test cluster trusts 127.0.0.1, so libpq never sends it
SCENARIOS = ("porter, @porter comment (durable)", "porter on PostgreSQL ×1 (durable)",
             "porter on PostgreSQL ×3 (durable)")


def test_the_bench_measures_postgresql_beside_sqlite_and_loses_nothing(
        postgres_url: str) -> None:
    scheme, rest = postgres_url.split("://", 1)
    url = f"{scheme}://{rest.replace('@', f':{PASSWORD}@', 1)}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTER_")}
    done = subprocess.run(
        [sys.executable, "bench/intake.py", "--database", url, "--seconds", "1",
         "--rounds", "1", "--connections", "4"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for name in SCENARIOS:
        row = next(line for line in lines if line.startswith(name))
        assert float(row[len(name):].split()[0]) > 0, row  # requests/s
        check = next(line for line in lines if line.startswith(f"durability, {name}:"))
        found = re.search(r": (\d+) deliveries answered 202", check)
        assert found, check
        answered = int(found[1])
        assert answered > 0, check
        assert f"{answered} tasks in the database: lost 0, duplicated 0" in check, check
    # The fixture's cluster runs without fsync: the reader is told, beside the figures.
    assert "fsync=off, synchronous_commit=off" in done.stdout
    assert PASSWORD not in done.stdout + done.stderr
    # Each scenario's database is gone afterwards.
    with psycopg.connect(postgres_url) as conn:
        left = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'porter_bench%'")
        assert left.fetchall() == []
