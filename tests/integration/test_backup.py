"""`porter backup`: what it refuses, what it says, and that it finishes while others write.

The command as users run it (`porter.cli.main`, a subprocess where a resource limit is needed),
on real SQLite files. The run under a real serving Porter is tests/e2e/test_backup.py.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from porter.backup import take_backup
from porter.cli import main
from porter.settings import Settings
from porter.store import Store
from tests.conftest import trigger


@pytest.fixture
async def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Porter database with three tasks, named by PORTER_DATABASE."""
    path = tmp_path / "porter.db"
    store = await Store.open(path)
    try:
        await store.record_triggers([trigger(f"d-{n}", n) for n in (1, 2, 3)],
                                    default_agent="claude")
    finally:
        await store.close()
    monkeypatch.delenv("PORTER_SECRET_KEYS", raising=False)
    monkeypatch.setenv("PORTER_DATABASE", str(path))
    monkeypatch.chdir(tmp_path)
    return path


def backup(*args: str) -> int:
    return main(["backup", *args])


def tasks_in(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return int(db.execute("SELECT count(*) FROM tasks").fetchone()[0])


def test_writes_a_private_checked_copy_and_says_what_it_wrote(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    ring = database.with_name("porter.db.keys")
    ring.write_text("k1:c2VjcmV0LWtleS1ieXRlcy1mb3ItYS10ZXN0LW9ubHkhIQ==\n")
    target = tmp_path / "out" / "copy.db"
    target.parent.mkdir()
    assert backup(str(target)) == 0
    out, err = capsys.readouterr()
    assert out == f"wrote {target} ({target.stat().st_size} bytes, 3 tasks)\n"
    assert err == f"porter: sealed secrets in the backup need the key ring too: back up {ring}," \
                  " or pass --with-keys\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["copy.db"]  # one file, no -wal
    assert tasks_in(target) == 3


def test_refuses_to_overwrite_an_existing_file_unless_forced(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    target = tmp_path / "copy.db"
    target.write_text("yesterday's backup")
    assert backup(str(target)) == 1
    assert "exists; pass --force" in capsys.readouterr().err
    assert target.read_text() == "yesterday's backup"

    assert backup(str(target), "--force") == 0
    assert tasks_in(target) == 3


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_refuses_to_write_over_the_live_database(
    database: Path, capsys: pytest.CaptureFixture[str], suffix: str,
) -> None:
    before = database.read_bytes()
    assert backup(f"./{database.name}{suffix}", "--force") == 1
    assert "is Porter's own" in capsys.readouterr().err
    assert database.read_bytes() == before


def test_a_missing_database_is_an_error_and_is_not_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PORTER_DATABASE", str(tmp_path / "nowhere.db"))
    monkeypatch.chdir(tmp_path)
    assert backup(str(tmp_path / "copy.db")) == 1
    assert "no database at" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_missing_directory_is_an_error(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert backup(str(tmp_path / "no" / "such" / "copy.db")) == 1
    assert "no directory" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in any directory")
def test_an_unwritable_directory_is_an_error(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert backup(str(locked / "copy.db")) == 1
    assert f"cannot write in {locked}" in capsys.readouterr().err


def test_a_full_disk_is_an_error_and_leaves_nothing_behind(
    database: Path, tmp_path: Path,
) -> None:
    # A file size limit far below the database's size: writes fail as on a full disk.
    target = tmp_path / "out" / "copy.db"
    target.parent.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "porter.cli", "backup", str(target)],
        # No bytecode written under the limit: a .pyc cut short at 32 KiB would stay behind in
        # the environment and break every later import of that module (a fresh clone's first
        # run compiles them).
        env={"PATH": "/usr/bin:/bin", "PORTER_DATABASE": str(database),
             "PYTHONDONTWRITEBYTECODE": "1"},
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (32768, 32768)),
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "full" in result.stderr and "was not written" in result.stderr, result.stderr
    assert list(target.parent.iterdir()) == []


def test_with_keys_copies_the_generated_key_file_beside_the_backup(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    ring = database.with_name("porter.db.keys")
    ring.write_text("k1:c2VjcmV0LWtleS1ieXRlcy1mb3ItYS10ZXN0LW9ubHkhIQ==\n")
    os.chmod(ring, 0o600)
    target = tmp_path / "copy.db"
    assert backup(str(target), "--with-keys") == 0
    copied = tmp_path / "copy.db.keys"
    assert copied.read_bytes() == ring.read_bytes()
    assert stat.S_IMODE(copied.stat().st_mode) == 0o600
    assert f"copied the key ring to {copied}" in capsys.readouterr().err

    assert backup(str(target), "--with-keys") == 1  # neither file is replaced unforced
    assert "exists; pass --force" in capsys.readouterr().err


def test_with_the_ring_in_the_environment_it_says_to_keep_that(
    database: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PORTER_SECRET_KEYS",
                       "k1:c2VjcmV0LWtleS1ieXRlcy1mb3ItYS10ZXN0LW9ubHkhIQ==")
    assert backup(str(tmp_path / "copy.db"), "--with-keys") == 0
    assert "keep PORTER_SECRET_KEYS with it" in capsys.readouterr().err
    assert not (tmp_path / "copy.db.keys").exists()  # the ring is never written to disk


def test_finishes_while_another_connection_commits_between_every_step(
    database: Path, tmp_path: Path,
) -> None:
    """SQLite restarts a backup whose source another connection changed between steps; taken
    one page a step while a writer commits without pause, only a pinned snapshot finishes."""
    stop = threading.Event()
    committed = threading.Event()

    def write() -> None:
        with contextlib.closing(sqlite3.connect(database, isolation_level=None,
                                                timeout=30)) as db:
            n = 0
            while not stop.is_set():
                n += 1
                db.execute("INSERT INTO deliveries (delivery_id, event, comment_key,"
                           " received_at) VALUES (?, 'ping', ?, 0)", (f"w-{n}", f"w:{n}"))
                committed.set()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    outcome: list[object] = []
    try:
        assert committed.wait(30)
        settings = Settings.from_mapping({"PORTER_DATABASE": str(database)})
        worker = threading.Thread(target=lambda: outcome.append(
            take_backup(settings, tmp_path / "copy.db", pages=1)), daemon=True)
        worker.start()
        worker.join(timeout=120)
    finally:
        stop.set()
        writer.join(timeout=30)
    assert outcome, "the backup never finished: it restarted at every commit"
    assert tasks_in(tmp_path / "copy.db") == 3
