"""Watching a local machine from the host for a secret: every process of the run (the
entrypoint, bwrap, the agent and its children) and every file under the runner's directory
(the run's workspace: checkout, the agent's HOME and tmp, the prompt; the machine's log).

The workspace is removed when the run ends, so the watch sweeps in a thread, again and again,
from before the machine starts until after it has gone, and rereads a file only when it
changed. A test that can hold the agent at a chosen moment (a held model answer) sweeps once
more itself then, so what it asserts on does not depend on the thread's timing.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
import time
import urllib.parse
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from porter.runners.local import WORKDIR

MAX_FILE_BYTES = 64 * 1024 * 1024
MACHINE_EXIT_S = 30.0
WINDOW = 16  # a copy of this many characters of the key counts as a trace


class KeyTraces:
    """The shapes a key could leave in bytes: itself, any 16-character piece of it, its hex,
    its base64 (standard and URL-safe, at each of the three alignments it can fall on in a
    longer text) and its URL encoding."""

    def __init__(self, key: str) -> None:
        raw = key.encode()
        forms: dict[bytes, str] = {raw: "the key"}
        forms.setdefault(urllib.parse.quote(key, safe="").encode(), "url-encoded")
        forms.setdefault(raw.hex().encode(), "hex")
        forms.setdefault(raw.hex().upper().encode(), "HEX")
        for start in range(len(raw) - WINDOW + 1):
            forms.setdefault(raw[start:start + WINDOW], f"{WINDOW} characters of the key")
        for shift in range(3):
            whole = raw[shift:shift + 3 * ((len(raw) - shift) // 3)]  # whole 3-byte groups only
            forms[base64.b64encode(whole)] = f"base64 (offset {shift})"
            forms.setdefault(base64.urlsafe_b64encode(whole), f"base64url (offset {shift})")
        self.forms = forms

    def find(self, data: bytes) -> list[str]:
        return sorted({label for form, label in self.forms.items() if form in data})


@dataclass
class Process:
    pid: int
    cmdline: str
    environ: dict[str, str]


@dataclass
class Watch:
    """What a MachineWatch saw: processes by pid, files by path, and every trace of the key."""

    processes: dict[int, Process] = field(default_factory=dict)
    entrypoints: set[int] = field(default_factory=set)
    files: dict[str, tuple[int, int]] = field(default_factory=dict)  # path -> (mtime, size)
    leaks: list[str] = field(default_factory=list)


class MachineWatch:
    """Sweeps the runner directory `runs` and the machines working in it for `traces`."""

    def __init__(self, runs: Path, traces: KeyTraces, *, interval_s: float = 0.05) -> None:
        self.runs = runs
        self.traces = traces
        self.interval_s = interval_s
        self.seen = Watch()
        self._workdir_arg = f"{WORKDIR}{runs / 'workspaces'}"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="machine-watch", daemon=True)

    def __enter__(self) -> MachineWatch:
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        # A task ends when Porter accepts the machine's report; the machine still writes its
        # log and removes its workspace after that. Watch until it has gone (unless the test
        # is failing anyway: then its agent may be held, and the stack's exit kills it).
        deadline = time.monotonic() + MACHINE_EXIT_S
        while exc_type is None and self._machines_alive() and time.monotonic() < deadline:
            time.sleep(self.interval_s)
        self._stop.set()
        self._thread.join(timeout=30)
        self.sweep()

    def _machines_alive(self) -> bool:
        with self._lock:
            entrypoints = list(self.seen.entrypoints)
        return any(_alive(pid) for pid in entrypoints)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sweep()

    # -- what the test asks -------------------------------------------------------------------

    def env_of(self, needle: str) -> dict[str, str] | None:
        """The environment of the run's process whose command line holds `needle`: the agent
        itself, not the bwrap around it (whose command line holds the agent's too)."""
        with self._lock:
            for proc in self.seen.processes.values():
                program = Path(proc.cmdline.split(" ", 1)[0]).name
                if needle in proc.cmdline and program != "bwrap" \
                        and proc.pid not in self.seen.entrypoints:
                    return dict(proc.environ)
        return None

    def entrypoint_env(self) -> dict[str, str] | None:
        with self._lock:
            for pid in self.seen.entrypoints:
                proc = self.seen.processes.get(pid)
                if proc is not None and proc.environ:
                    return dict(proc.environ)
        return None

    def files_in(self, directory: str) -> list[str]:
        """Files seen in a run's workspace under `directory` ("home", "work", "tmp"), as paths
        relative to the workspace."""
        workspaces = f"{self.runs / 'workspaces'}/"
        found = []
        with self._lock:
            for path in self.seen.files:
                if path.startswith(workspaces):
                    relative = path[len(workspaces):].partition("/")[2]
                    if relative.startswith(f"{directory}/"):
                        found.append(relative)
        return sorted(found)

    # -- sweeping ---------------------------------------------------------------------------

    def sweep(self) -> None:
        with self._lock:
            self._sweep_processes()
            self._sweep_files()

    def _sweep_processes(self) -> None:
        table = _process_table()
        roots = [pid for pid, (_, cmdline) in table.items() if self._workdir_arg in cmdline]
        self.seen.entrypoints.update(roots)
        children: dict[int, list[int]] = {}
        for pid, (ppid, _) in table.items():
            children.setdefault(ppid, []).append(pid)
        todo = list(roots)
        while todo:
            pid = todo.pop()
            todo += children.get(pid, [])
            self._look_at_process(pid, table[pid][1])

    def _look_at_process(self, pid: int, cmdline: str) -> None:
        try:
            raw = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            return
        known = self.seen.processes.get(pid)
        environ = dict(item.partition("=")[::2] for item in
                       raw.decode("utf-8", "replace").split("\0") if item)
        if known is not None and known.environ == environ and known.cmdline == cmdline:
            return
        self.seen.processes[pid] = Process(pid, cmdline, environ)
        for where, data in (("environment", raw), ("command line", cmdline.encode())):
            if found := self.traces.find(data):
                self.seen.leaks.append(f"{where} of pid {pid} ({cmdline[:80]}): {found}")

    def _sweep_files(self) -> None:
        for path in _files(self.runs):
            try:
                info = path.lstat()
            except OSError:
                continue
            stamp = (info.st_mtime_ns, info.st_size)
            name = str(path)
            if self.seen.files.get(name) == stamp or info.st_size > MAX_FILE_BYTES:
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue
            self.seen.files[name] = stamp
            if "/objects/" in name:  # a loose git object is zlib-compressed
                with contextlib.suppress(zlib.error):
                    data += zlib.decompress(data)
            if found := self.traces.find(data):
                self.seen.leaks.append(f"file {name}: {found}")


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every live process."""
    table: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            argv = Path(f"/proc/{entry}/cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if stat[0] in ("Z", "X"):
            continue
        table[int(entry)] = (int(stat[1]), argv.replace(b"\0", b" ").decode("utf-8", "replace"))
    return table


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _files(root: Path) -> list[Path]:
    """Regular files under root (symlinks are not followed: the agent could point one
    anywhere)."""
    found: list[Path] = []
    for dirpath, _dirs, names in os.walk(root, onerror=lambda _e: None):
        for name in names:
            path = Path(dirpath, name)
            with contextlib.suppress(OSError):
                if path.is_file() and not path.is_symlink():
                    found.append(path)
    return found


def scan(traces: KeyTraces, surfaces: dict[str, Any]) -> list[str]:
    """Which named surfaces (text, bytes or anything JSON-able) hold a trace of the key."""
    leaks = []
    for name, value in surfaces.items():
        data = value if isinstance(value, bytes) else (
            value if isinstance(value, str) else json.dumps(value, default=str)).encode()
        if found := traces.find(data):
            leaks.append(f"{name}: {found}")
    return leaks
