"""The throwaway PostgreSQL cluster the tests run against (tests/postgres.py)."""

from __future__ import annotations

import os
import socket

import psycopg
import pytest

from tests.postgres import Cluster, running_cluster, server_bin


def running(pid: int) -> bool:
    """Whether the process runs: a zombie has ended (an init that does not reap, as in some
    containers, leaves the stopped server's entry behind)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return not any(line.split()[1:2] == ["Z"] for line in status
                           if line.startswith("State:"))
    except FileNotFoundError:
        return False


def test_a_cluster_serves_queries_and_is_removed_afterwards() -> None:
    bindir = server_bin()
    if bindir is None:
        pytest.skip("PostgreSQL's server is not installed: apt-get install postgresql")
    with running_cluster(bindir) as cluster:
        root, port, pid = cluster.root, cluster.port, cluster.postmaster_pid()
        assert pid is not None
        with psycopg.connect(cluster.url) as conn:
            row = conn.execute("SELECT 1 + 1, current_user, version()").fetchone()
        assert row is not None
        assert row[0] == 2 and row[1] == "porter" and row[2].startswith("PostgreSQL")
        if os.geteuid() == 0:
            assert root.stat().st_uid != 0  # the server does not run as root
    assert not root.exists()
    assert not running(pid)
    with socket.socket() as sock, pytest.raises(OSError):
        sock.connect(("127.0.0.1", port))


def test_each_test_database_is_new_and_dropped(postgres_cluster: Cluster,
                                               postgres_url: str) -> None:
    url = postgres_cluster.create_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (x integer)")
    with psycopg.connect(postgres_url) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()]
    assert url.rsplit("/", 1)[1] in names
    postgres_cluster.drop_database(url)
    with psycopg.connect(postgres_url) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()]
    assert url.rsplit("/", 1)[1] not in names
