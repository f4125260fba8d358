"""A throwaway PostgreSQL cluster for the tests: initdb + pg_ctl on a free port, removed afterwards.

The server is the one the system's `postgresql` package installed (Debian puts it under
/usr/lib/postgresql/<version>/bin; `.ci/run` installs it where missing). PostgreSQL refuses to
run as root, so when the tests run as root the cluster belongs to `nobody` (the one unprivileged
user Debian guarantees) and every server command runs under its uid through `setpriv`.

The cluster trusts connections from 127.0.0.1 only, listens on no Unix socket outside its own
directory, and trades durability for speed (fsync off): its data lives for one test session.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

USER = "porter"  # the cluster's superuser (initdb -U)
NOBODY = 65534  # Debian's `nobody` uid and `nogroup` gid


def server_bin() -> Path | None:
    """The directory of the newest installed PostgreSQL server's programs, if there is one."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = []
    for candidate in Path("/usr/lib/postgresql").glob("*/bin"):
        if (candidate / "initdb").exists() and candidate.parent.name.isdigit():
            versions.append((int(candidate.parent.name), candidate))
    return max(versions)[1] if versions else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Cluster:
    """One PostgreSQL cluster in a directory of its own; `start()`, then `stop()` removes it."""

    bindir: Path
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="porter-pg-")))
    port: int = 0

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        """A server program, as `nobody` when we are root (initdb and postgres refuse root)."""
        prefix: list[str] = []
        if os.geteuid() == 0:
            prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", TZ="UTC")
        return subprocess.run([*prefix, *argv], cwd=self.root, env=env, capture_output=True,
                              text=True, check=False, timeout=120)

    def start(self) -> None:
        if os.geteuid() == 0:
            os.chown(self.root, NOBODY, NOBODY)
        done = self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", USER,
                         "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
        if done.returncode != 0:
            self.remove()
            raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")
        # A port free a moment ago may be taken by the time the server binds it: try another.
        for _ in range(5):
            self.port = free_port()
            options = " ".join([
                f"-p {self.port}", "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={self.root}", "-c fsync=off",
                "-c synchronous_commit=off", "-c full_page_writes=off",
                "-c shared_buffers=16MB", "-c max_connections=60",
            ])
            done = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l",
                             str(self.log), "-o", options, "-w", "-t", "60", "start")
            if done.returncode == 0:
                return
            if "could not bind" not in self._log_text() and "in use" not in self._log_text():
                break
        text = self._log_text()
        self.remove()
        raise RuntimeError(f"pg_ctl start failed:\n{done.stdout}\n{done.stderr}\n{text}")

    def _log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """Stop the server (fast: its data is thrown away) and remove the cluster's directory."""
        if (self.data / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                      "-w", "-t", "60", "stop")
        self.remove()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self) -> str:
        """A new, empty database in the cluster; its URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # a fixed pattern, never a caller's text
        return self.url_for(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        assert re.fullmatch(r"t_[0-9a-f]{16}", name), name
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def running_cluster(bindir: Path) -> Iterator[Cluster]:
    cluster = Cluster(bindir)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
