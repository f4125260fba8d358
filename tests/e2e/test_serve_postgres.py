"""`porter migrate`, `porter serve` and `porter backup` as a user runs them against a real
PostgreSQL (the `postgres_database` fixture's throwaway cluster), configured by URL."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.e2e.server import ServerProcess, free_port

PASSWORD = "never-shown-pw"  # the test cluster trusts 127.0.0.1, so libpq never sends it


def with_password(url: str) -> str:
    scheme, rest = url.split("://", 1)
    user, host = rest.split("@", 1)
    return f"{scheme}://{user}:{PASSWORD}@{host}"


def porter(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "porter.cli", *args], env={"PATH": "/usr/bin:/bin", **env},
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )


def test_migrate_then_serve_on_postgresql(tmp_path: Path, postgres_database: str) -> None:
    env = {"PORTER_DATABASE": with_password(postgres_database),
           "PORTER_ADMIN_TOKEN": "test-admin-token", "PORTER_LOG_FORMAT": "text"}
    migrated = porter("migrate", env=env, cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert "applied 0001" in migrated.stdout
    again = porter("migrate", env=env, cwd=tmp_path)
    assert again.stdout.strip() == "database is up to date", again.stderr

    server = ServerProcess(env, cwd=tmp_path).start()
    try:
        ready = httpx.get(f"{server.url}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        assert ready.json()["database"] is True
        assert ready.json()["pending_migrations"] == []
        assert "database postgresql://" in server.first_line
        assert PASSWORD not in server.first_line
    finally:
        server.kill(signal.SIGTERM)
    assert server.process is not None and server.process.stdout is not None
    assert PASSWORD not in server.process.stdout.read()
    # Nothing is written beside a file that is not there: the key ring is in ./porter-data.
    assert (tmp_path / "porter-data" / "porter.keys").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["porter-data"]


def test_backup_says_to_use_pg_dump(tmp_path: Path, postgres_database: str) -> None:
    env = {"PORTER_DATABASE": with_password(postgres_database)}
    refused = porter("backup", str(tmp_path / "copy.db"), env=env, cwd=tmp_path)
    assert refused.returncode != 0
    assert "use pg_dump" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert PASSWORD not in refused.stderr + refused.stdout
    assert not (tmp_path / "copy.db").exists()


def test_doctor_shows_the_url_without_its_password(tmp_path: Path,
                                                   postgres_database: str) -> None:
    env = {"PORTER_DATABASE": with_password(postgres_database)}
    assert porter("migrate", env=env, cwd=tmp_path).returncode == 0
    doctor = porter("doctor", env=env, cwd=tmp_path)
    assert PASSWORD not in doctor.stdout + doctor.stderr
    assert f":***@{postgres_database.split('@', 1)[1]}, migrations current" in doctor.stdout


def test_an_unreachable_database_is_one_line_without_the_password(tmp_path: Path) -> None:
    env = {"PORTER_DATABASE": f"postgresql://porter:{PASSWORD}@127.0.0.1:{free_port()}/porter"}
    failed = porter("migrate", env=env, cwd=tmp_path)
    assert failed.returncode == 1
    assert failed.stderr.startswith("porter: database postgresql://porter:***@127.0.0.1:")
    assert "Connection refused" in failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1
    assert PASSWORD not in failed.stderr + failed.stdout
