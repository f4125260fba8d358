"""A restarted Porter takes back at once what its dead predecessor held; live claims wait.

The predecessor is a real process that opens the database, claims a job and is killed with
SIGKILL, as a crash would leave it. Each test runs on a SQLite file and on a PostgreSQL database
(tests/conftest.py `store_database`).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

from porter.identity import ProcessIdentity, pid_start
from porter.store import Store
from tests.fakes.clock import Clock

LEASE = 300.0

CLAIM_THEN_HANG = textwrap.dedent("""
    import asyncio, sys, time
    from porter.store import Store

    async def main():
        store = await Store.open(sys.argv[1], clock=lambda: 1000.0)
        await store.enqueue("publish", "publish:1:1", {"n": 1})
        [job] = await store.claim_jobs(now=1000.0, limit=10, lease=300.0)
        print("claimed", job.key, flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
""")


def crashed_claimant(db: Path | str) -> None:
    """A Porter process that claimed a job and was killed while it held it."""
    proc = subprocess.Popen([sys.executable, "-c", CLAIM_THEN_HANG, str(db)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "claimed publish:1:1"
    finally:
        proc.kill()
        proc.wait()


async def test_a_killed_processs_jobs_are_taken_back_at_once(store_database: Path | str) -> None:
    db = store_database
    crashed_claimant(db)
    clock = Clock(1001.0)  # a second later: far inside the dead claim's lease
    store = await Store.open(db, clock=clock)
    try:
        assert await store.claim_jobs(now=clock.now, limit=10, lease=LEASE) == []
        assert await store.reclaim_from_dead() == 1
        [job] = await store.claim_jobs(now=clock.now, limit=10, lease=LEASE)
        assert job.key == "publish:1:1"
        assert await store.reclaim_from_dead() == 0  # its process row is gone with it
    finally:
        await store.close()


async def test_a_live_processs_claims_wait_for_their_lease(store_database: Path | str) -> None:
    clock = Clock(1000.0)
    first = await Store.open(store_database, clock=clock)
    second = await Store.open(store_database, clock=clock)  # alive, same host
    try:
        await first.enqueue("publish", "publish:1:1", {})
        assert len(await first.claim_jobs(now=clock.now, limit=10, lease=LEASE)) == 1
        assert await second.reclaim_from_dead() == 0
        assert await second.claim_jobs(now=clock.now + 1, limit=10, lease=LEASE) == []
        assert len(await second.claim_jobs(now=clock.now + LEASE + 1, limit=10,
                                           lease=LEASE)) == 1
    finally:
        await first.close()
        await second.close()


async def test_a_clean_close_frees_what_the_process_held(store_database: Path | str) -> None:
    clock = Clock(1000.0)
    first = await Store.open(store_database, clock=clock)
    await first.enqueue("publish", "publish:1:1", {})
    assert len(await first.claim_jobs(now=clock.now, limit=10, lease=LEASE)) == 1
    await first.close()
    second = await Store.open(store_database, clock=clock)
    try:
        assert len(await second.claim_jobs(now=clock.now, limit=10, lease=LEASE)) == 1
    finally:
        await second.close()


async def test_the_instance_id_is_made_once_and_kept(store_database: Path | str,
                                                     tmp_path: Path) -> None:
    first = await Store.open(store_database)
    await first.close()
    again = await Store.open(store_database)
    other = await Store.open(tmp_path / "other.db")
    try:
        assert len(first.instance_id) == 32
        assert again.instance_id == first.instance_id != other.instance_id
    finally:
        await again.close()
        await other.close()


def test_who_is_known_to_be_gone() -> None:
    me = ProcessIdentity.current()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    start = pid_start(child.pid)
    assert start is not None
    child.wait()
    ended = replace(me, id="ended", pid=child.pid, pid_start=start)
    assert me.knows_gone(ended)
    assert not me.knows_gone(replace(me, id="alive"))  # this very process, another store
    assert me.knows_gone(replace(me, id="recycled", pid_start=me.pid_start + 1))
    assert me.knows_gone(replace(me, id="before-reboot", boot_id="another boot"))
    assert not me.knows_gone(replace(ended, host="elsewhere"))  # might be running there
    assert os.getpid() == me.pid
