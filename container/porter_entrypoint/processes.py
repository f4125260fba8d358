"""Child processes: each in its own session and process group, stopped as a whole (SIGTERM, a
grace period, then SIGKILL), and helper commands that stop when the run is interrupted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

POLL_S = 0.1
# The PATH children get when the entrypoint's own environment has none.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def kill_group(proc: subprocess.Popen[bytes], grace_s: float, *, tree: bool = False) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after the grace period.

    With `tree`, every descendant gets the SIGTERM too: a sandbox's processes lead sessions of
    their own inside its PID namespace, so the group of the bwrap process does not reach them.
    """
    pgid = proc.pid  # start_new_session=True made the child its group leader
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        proc.wait()
        return
    if tree:
        for pid in descendants(proc.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        proc.poll()
        _reap_orphans(proc)
        if not _group_alive(pgid):
            break
        time.sleep(0.05)
    else:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    proc.wait()
    _reap_orphans(proc)


def proc_stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, pgid, ...); None
    once the process is gone. Field N of proc(5) is at index N - 3."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def descendants(root: int) -> list[int]:
    """Every process under `root`, as this PID namespace sees them."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        fields = proc_stat(entry) if entry.isdigit() else None
        try:
            ppid = int(fields[1]) if fields else None
        except (IndexError, ValueError):
            continue
        if ppid is not None:
            children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            found.append(pid)
            todo.append(pid)
    return found


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies awaiting a reaper are not)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in entries:
        fields = proc_stat(entry) if entry.isdigit() else None
        if fields and len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def _reap_orphans(proc: subprocess.Popen[bytes]) -> None:
    # As PID 1 (docker without --init) orphaned grandchildren become our zombies; reap them,
    # but only once our own child's status is collected so subprocess keeps its exit code.
    if os.getpid() != 1 or proc.returncode is None:
        return
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


@dataclass
class ProcResult:
    returncode: int
    output: str


def run_interruptible(
    argv: list[str],
    *,
    cwd: str | None,
    env: dict[str, str],
    timeout_s: float,
    interrupted: Callable[[], str | None],
    grace_s: float,
) -> ProcResult:
    """Run a helper command (git), stopping it when `interrupted()` names a reason or on timeout."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    chunks: list[bytes] = []
    reader = threading.Thread(target=lambda: chunks.append(_read_all(proc)), daemon=True)
    reader.start()
    started = time.monotonic()
    reason: str | None = None
    while proc.poll() is None:
        reason = interrupted()
        if reason is None and time.monotonic() - started > timeout_s:
            reason = f"timed out after {int(timeout_s)} s"
        if reason:
            kill_group(proc, grace_s)
            break
        time.sleep(POLL_S)
    reader.join(timeout=5.0)
    output = b"".join(chunks).decode("utf-8", "replace")
    if reason in ("cancelled", "terminated"):
        raise Interrupted(reason)
    if reason:
        raise TimedOut(reason)
    return ProcResult(proc.returncode, output)


def _read_all(proc: subprocess.Popen[bytes]) -> bytes:
    assert proc.stdout is not None
    return proc.stdout.read()


class Interrupted(Exception):
    """The run was stopped from outside: "cancelled" (Porter asked) or "terminated" (SIGTERM)."""


class TimedOut(Exception):
    """A helper command ran over its time limit."""
