"""Who this Porter process is, and whether another one that shared its database is gone.

A process is named by a random id, and described by what tells it apart on its host: the host
name, the kernel's boot id, its pid and that pid's start time (field 22 of /proc/<pid>/stat, so
a recycled pid is not taken for it). Only a process on this host and boot can be known to be
gone; one elsewhere might still be running, and its claims wait for their lease.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessIdentity:
    id: str
    host: str
    boot_id: str
    pid: int
    pid_start: int

    @classmethod
    def current(cls) -> ProcessIdentity:
        pid = os.getpid()
        return cls(id=uuid.uuid4().hex, host=socket.gethostname(), boot_id=boot_id(), pid=pid,
                   pid_start=pid_start(pid) or 0)

    def knows_gone(self, other: ProcessIdentity) -> bool:
        """Whether `other` has certainly ended; False when that cannot be known from here."""
        if other.id == self.id or other.host != self.host:
            return False
        if other.boot_id != self.boot_id:
            return True  # this host has rebooted since
        return pid_start(other.pid) != other.pid_start


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return ""


def stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from field 3 (the state) on; None when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes().decode("utf-8", "replace")
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may itself contain ") ".
    return raw.rsplit(")", 1)[-1].split()


def pid_start(pid: int) -> int | None:
    """The pid's start time in clock ticks since boot; None when no such process runs."""
    fields = stat_fields(pid)
    try:
        return None if fields is None or fields[0] in ("Z", "X") else int(fields[19])
    except (IndexError, ValueError):
        return None
