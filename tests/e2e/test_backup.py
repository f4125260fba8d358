"""`porter backup` as an operator runs it, against a real `porter serve` that keeps taking webhooks;
and the restore docs/operator.md describes, back to a serving Porter with the same tasks."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.conftest import comment_payload, signed
from tests.e2e.server import ServerProcess

ADMIN = {"Authorization": "Bearer test-admin-token"}
RATE = 50  # webhook deliveries a second, as issue 11 asks
SEEDED = 12_000  # finished tasks already in the database: a backup of tens of MB, many steps
PADDING = "x" * 2000


def porter(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "porter.cli", *args], env={"PATH": "/usr/bin:/bin", **env},
        cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
    )


def deliver(client: httpx.Client, url: str, comment_id: int) -> httpx.Response:
    """A signed `@porter` comment delivery, a new comment each time: each makes a task."""
    body = json.dumps(comment_payload(body="@porter fix the typo", id=comment_id)).encode()
    return client.post(f"{url}/webhooks/github", content=body,
                       headers=signed(body, "issue_comment"))


class Traffic:
    """Deliveries at RATE a second from a thread, each posted by a pool so a slow answer never
    slows the rate; records when each was acknowledged (202) and its task."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.acked: list[tuple[float, int]] = []  # (time.monotonic() of the 202, task id)
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def acked_count(self) -> int:
        with self._lock:
            return len(self.acked)

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client, \
                concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            start, sent = time.monotonic(), 0
            while not self._stop.is_set():
                pool.submit(self._one, client, 50_000 + sent)
                sent += 1
                self._stop.wait(max(0.0, start + sent / RATE - time.monotonic()))

    def _one(self, client: httpx.Client, comment_id: int) -> None:
        try:
            response = deliver(client, self.url, comment_id)
        except httpx.HTTPError as exc:
            with self._lock:
                self.failed.append(f"{comment_id}: {exc!r}")
            return
        at = time.monotonic()
        with self._lock:
            if response.status_code == 202:
                self.acked.append((at, int(response.json()["task_id"])))
            else:
                self.failed.append(f"{comment_id}: {response.status_code} {response.text}")


def wait_until(condition: object, what: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def seed_finished_tasks(database: Path, template: int, copies: int) -> None:
    """Copies of task `template` (and its delivery), finished, with long instructions: the
    history a Porter that has served a while holds. Written beside the serving Porter, as
    another writer."""
    with contextlib.closing(sqlite3.connect(database, isolation_level=None, timeout=30)) as db:
        def columns(table: str, skip: set[str]) -> str:
            return ", ".join(row[1] for row in db.execute(f"PRAGMA table_info({table})")
                             if row[1] not in skip)

        numbers = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
        delivery = columns("deliveries", {"delivery_id", "comment_key"})
        task = columns("tasks", {"id", "delivery_id", "comment_key", "instruction", "state"})
        db.execute("BEGIN IMMEDIATE")
        # Column names from the schema itself, values bound.
        db.execute(f"{numbers} INSERT INTO deliveries (delivery_id, comment_key, {delivery})"  # noqa: S608
                   f" SELECT 'seed-' || i, 'seed:' || i, {delivery} FROM n, deliveries d"
                   " WHERE d.delivery_id = (SELECT delivery_id FROM tasks WHERE id = ?)",
                   (copies, template))
        db.execute(f"{numbers} INSERT INTO tasks (delivery_id, comment_key, instruction, state,"  # noqa: S608
                   f" {task}) SELECT 'seed-' || i, 'seed:' || i, ?, 'succeeded', {task}"
                   " FROM n, tasks t WHERE t.id = ?", (copies, PADDING, template))
        db.execute("COMMIT")


def test_a_backup_taken_under_50_webhooks_a_second_holds_every_task_acknowledged_before_it(
    tmp_path: Path, env: dict[str, str],
) -> None:
    target = tmp_path / "backups" / "porter.db"
    target.parent.mkdir()
    with ServerProcess(env, cwd=tmp_path) as server, httpx.Client(timeout=30) as client:
        first = deliver(client, server.url, 1)
        assert first.status_code == 202, first.text
        seed_finished_tasks(Path(env["PORTER_DATABASE"]), first.json()["task_id"], SEEDED)

        with Traffic(server.url) as traffic:
            wait_until(lambda: traffic.acked_count() >= RATE, "a second of acknowledged traffic")
            began = time.monotonic()
            backup = porter("backup", str(target), env=env, cwd=tmp_path)
            ended = time.monotonic()
            # Traffic goes on after the backup, so nothing here depends on when it stopped.
            wait_until(lambda: traffic.acked_count() >= len(before(traffic, ended)) + RATE // 2,
                       "traffic after the backup")

    assert backup.returncode == 0, backup.stderr
    assert backup.stdout.startswith(f"wrote {target} (")
    assert "key ring" in backup.stderr
    assert traffic.failed == []  # the server acknowledged every delivery, the backup running
    assert before(traffic, ended) - before(traffic, began), "no delivery arrived during it"

    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["porter.db"]  # no temporary left
    with contextlib.closing(sqlite3.connect(f"file:{target}?mode=ro", uri=True)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        backed_up = {row[0] for row in db.execute("SELECT id FROM tasks")}
    missing = before(traffic, began) - backed_up
    assert not missing, f"{len(missing)} tasks acknowledged before the backup are not in it"
    assert len(backed_up) > SEEDED
    assert f"{len(backed_up)} tasks)" in backup.stdout


def before(traffic: Traffic, moment: float) -> set[int]:
    """The tasks whose deliveries were acknowledged before `moment`."""
    with traffic._lock:
        return {task_id for at, task_id in traffic.acked if at < moment}


def test_a_restored_backup_serves_the_same_tasks(tmp_path: Path, env: dict[str, str]) -> None:
    database = Path(env["PORTER_DATABASE"])
    backups = tmp_path / "backups"
    backups.mkdir()
    with ServerProcess(env, cwd=tmp_path) as server, httpx.Client(timeout=30) as client:
        kept = [deliver(client, server.url, n).json()["task_id"] for n in (1, 2, 3)]
        backup = porter("backup", str(backups / "porter.db"), "--with-keys", env=env,
                        cwd=tmp_path)
        assert backup.returncode == 0, backup.stderr
        later = deliver(client, server.url, 4).json()["task_id"]
    ring = database.with_name("porter.db.keys").read_bytes()
    assert (backups / "porter.db.keys").read_bytes() == ring
    assert stat.S_IMODE((backups / "porter.db.keys").stat().st_mode) == 0o600

    # docs/operator.md, "Back up and restore": Porter is stopped; move the old database, its
    # -wal and -shm and the key file aside; copy the backup and its key ring in place; start.
    aside = tmp_path / "old"
    aside.mkdir()
    for name in ("porter.db", "porter.db-wal", "porter.db-shm", "porter.db.keys"):
        with contextlib.suppress(FileNotFoundError):
            (tmp_path / name).rename(aside / name)
    shutil.copyfile(backups / "porter.db", database)
    os.chmod(database, 0o600)
    shutil.copyfile(backups / "porter.db.keys", database.with_name("porter.db.keys"))
    os.chmod(database.with_name("porter.db.keys"), 0o600)

    with ServerProcess(env, cwd=tmp_path) as again:
        tasks = httpx.get(f"{again.url}/api/tasks", headers=ADMIN, timeout=10).json()
        shown = httpx.get(f"{again.url}/api/tasks/{kept[0]}", headers=ADMIN, timeout=10)
    assert sorted(task["id"] for task in tasks["tasks"]) == sorted(kept)
    assert later not in {task["id"] for task in tasks["tasks"]}
    assert shown.json()["instruction"] == "fix the typo"
    # The restored ring is the one in use: the server did not make itself a new one.
    assert database.with_name("porter.db.keys").read_bytes() == ring
    doctor = porter("doctor", env=env, cwd=tmp_path)
    assert f"{database}, migrations current" in doctor.stdout, doctor.stdout
