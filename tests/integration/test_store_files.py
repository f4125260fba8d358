"""The database files hold private issue text and prompts: only Porter's own user may read them."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from porter.store import Store
from tests.conftest import trigger

SUFFIXES = ("", "-wal", "-shm")
PRIVATE = dict.fromkeys(SUFFIXES, 0o600)


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def modes(db: Path) -> dict[str, int]:
    return {suffix: stat.S_IMODE(os.stat(f"{db}{suffix}").st_mode) for suffix in SUFFIXES}


@pytest.mark.parametrize("mask", [0o000, 0o022])
async def test_a_new_database_and_its_wal_and_shm_are_private(tmp_path: Path, mask: int) -> None:
    db = tmp_path / "porter.db"
    with umask(mask):  # whatever the umask, even none at all
        store = await Store.open(db)
        try:
            await store.record_triggers([trigger("d1", 1)], default_agent="claude")
            assert modes(db) == PRIVATE
        finally:
            await store.close()


async def test_an_existing_database_with_looser_modes_is_tightened_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "porter.db"
    older = sqlite3.connect(db)  # held open, so its -wal and -shm stay on disk
    try:
        older.execute("PRAGMA journal_mode = WAL")
        older.execute("CREATE TABLE t (x)")
        for suffix in SUFFIXES:
            os.chmod(f"{db}{suffix}", 0o644)
        with caplog.at_level(logging.WARNING, logger="porter.store"):
            store = await Store.open(db)
        try:
            assert modes(db) == PRIVATE
        finally:
            await store.close()
    finally:
        older.close()
    assert any("0644" in r.getMessage() and str(db) in r.getMessage() for r in caplog.records)


async def test_a_private_database_is_opened_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "porter.db"
    await (await Store.open(db)).close()
    with caplog.at_level(logging.WARNING, logger="porter.store"):
        await (await Store.open(db)).close()
    assert not caplog.records
