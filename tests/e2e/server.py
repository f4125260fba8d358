"""Run `porter serve` as a real process on loopback, for end-to-end tests.

Tests run in parallel (pytest-xdist workers, and other sessions on the same host), so a port is
never fixed: `free_port` picks one nothing listens on, below the range the kernel hands out for
outgoing connections and port 0, so no other test's connection can take it while the server
starts; a server is healthy only once its own process holds the listening socket (never
another process that happens to answer on that port), and one that lost the race for its port
to another `free_port` is started again.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

_given: set[int] = set()


def _ports() -> range:
    """Ports below the kernel's ephemeral range (connect() and bind to 0 never use them)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return range(min(20000, low // 2), low)


def free_port() -> int:
    ports = _ports()
    while True:
        port = random.choice(ports)
        if port in _given:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port


def _listening(pid: int, port: int) -> bool:
    """Whether process `pid` itself holds a socket listening on 127.0.0.1:`port`."""
    wanted = f"0100007F:{port:04X}"
    inodes = set()
    try:
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1] == wanted and fields[3] == "0A":  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
        if not inodes:
            return False
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(fd) in inodes:
                    return True
            except OSError:
                continue
    except OSError:
        return False
    return False


class AddressInUse(RuntimeError):
    pass


class ServerProcess:
    def __init__(self, env: Mapping[str, str], cwd: Path, port: int | None = None) -> None:
        self._fixed_port = port is not None
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PORTER_")}
        self.env.update(env)
        self._public_url_given = "PORTER_PUBLIC_URL" in env
        self._use_port(port or free_port())
        self.cwd = cwd
        self.process: subprocess.Popen[str] | None = None
        self.first_line = ""

    def _use_port(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        self.env["PORTER_PORT"] = str(self.port)
        if not self._public_url_given:
            self.env["PORTER_PUBLIC_URL"] = self.url

    def start(self, timeout: float = 20) -> ServerProcess:
        for _ in range(10):
            try:
                return self._start_once(timeout)
            except AddressInUse:
                if self._fixed_port:  # a restart keeps its port: wait for it to be free again
                    time.sleep(0.2)
                else:
                    self._use_port(free_port())
        raise RuntimeError(f"no free port for the server (last tried {self.port})")

    def _start_once(self, timeout: float) -> ServerProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "porter.cli", "serve"], env=self.env, cwd=self.cwd,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        assert self.process.stdout is not None
        self.first_line = self.process.stdout.readline().strip()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                rest = self.process.stdout.read()
                if "address already in use" in rest:
                    raise AddressInUse(self.port)
                raise RuntimeError(f"server exited: {self.first_line}\n{rest}")
            if _listening(self.process.pid, self.port):
                try:
                    if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        self.kill()
        raise TimeoutError("server did not become healthy")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=10)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill(signal.SIGTERM)
