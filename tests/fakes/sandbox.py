"""What a test's agent needs to see inside the sandbox, and how to find sandboxed processes.

The scripted agent runs on this interpreter, which usually lives outside /usr (a virtualenv, a
uv- or pyenv-managed Python): the sandbox shows those directories read-only, as an operator
would with PORTER_SANDBOX_READ_ONLY_PATHS for an agent CLI installed outside /usr.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from porter.runners.sandbox import SandboxPolicy

FAKES = Path(__file__).resolve().parent
READ_ONLY_PATHS = tuple(dict.fromkeys(
    str(Path(p).resolve()) for p in (sys.prefix, sys.base_prefix, FAKES)))
SANDBOX_ARGS = [f"--porter-sandbox-ro={path}" for path in READ_ONLY_PATHS]
READ_ONLY_SETTING = ":".join(READ_ONLY_PATHS)
SANDBOX = SandboxPolicy(read_only=READ_ONLY_PATHS)
# Agents run only in bubblewrap. A developer without it is told what to install; CI, which
# installs it, never skips.
needs_bwrap = pytest.mark.skipif(
    shutil.which("bwrap") is None and not os.environ.get("CI"),
    reason="bubblewrap is not installed (apt-get install bubblewrap)",
)


def pids_running(*needles: str) -> list[int]:
    """Processes, seen from the host, whose command line contains every needle."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode("utf-8", "replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("Z", "X") and all(needle in argv for needle in needles):
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
