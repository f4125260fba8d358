"""What the local runner asks of the agent's sandbox (container/porter_entrypoint/sandbox.py
builds it).

The entrypoint wraps every agent process in bubblewrap. Porter's side decides what the sandbox
may additionally show (operator paths), what it must hide whatever is shown (Porter's own files),
and refuses to start machines while the sandbox does not work here: it asks the entrypoint
itself (`--porter-sandbox-check`), so the check is the very code that will run the agent.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from porter.settings import Settings

RO_FLAG = "--porter-sandbox-ro="
HIDE_FLAG = "--porter-sandbox-hide="
UNSANDBOXED_FLAG = "--porter-unsandboxed"
CHECK_FLAG = "--porter-sandbox-check"
UNSANDBOXED_WARNING = (
    "PORTER_LOCAL_RUNNER_UNSANDBOXED=true: local agents run WITHOUT a sandbox and can read "
    "Porter's secrets, database and other runs"
)
_CHECK_TIMEOUT_S = 30.0
_TRUST_SUCCESS_S = 300.0  # a working sandbox is re-checked now and then, a broken one each time


@dataclass(frozen=True)
class SandboxPolicy:
    enabled: bool = True
    read_only: tuple[str, ...] = ()
    hidden: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> SandboxPolicy:
        return cls(
            enabled=not settings.local_runner_unsandboxed,
            read_only=tuple(str(p) for p in settings.sandbox_read_only_paths),
            hidden=porter_files(settings),
        )

    def argv(self) -> list[str]:
        """The entrypoint's arguments that carry this policy."""
        if not self.enabled:
            return [UNSANDBOXED_FLAG]
        return [*(RO_FLAG + p for p in self.read_only), *(HIDE_FLAG + p for p in self.hidden)]


def porter_files(settings: Settings) -> tuple[str, ...]:
    """Porter's own files: masked in the sandbox should an exposed path ever contain them."""
    paths: list[Path] = []
    if (file := settings.database_file) is not None:  # none on PostgreSQL: a server's, not ours
        database = file.expanduser().absolute()
        paths += [database, *(database.with_name(database.name + s)
                              for s in ("-wal", "-shm", "-journal"))]
    paths += [settings.data_directory.expanduser().absolute(),
              settings.runs_dir.expanduser().absolute(),
              settings.keys_file.expanduser().absolute(), Path.cwd() / ".env"]
    if settings.github_private_key_file is not None:
        paths.append(settings.github_private_key_file.expanduser().absolute())
    return tuple(dict.fromkeys(str(p) for p in paths))


def check(python: str, entrypoint: str, policy: SandboxPolicy) -> str | None:
    """Why the sandbox cannot run agents here, or None when it can (or is turned off)."""
    if not policy.enabled:
        return None
    if not os.path.exists(entrypoint):
        return f"the agent entrypoint {entrypoint} does not exist"
    try:
        probe = subprocess.run([python, entrypoint, CHECK_FLAG, *policy.argv()],
                               capture_output=True, timeout=_CHECK_TIMEOUT_S, check=False,
                               stdin=subprocess.DEVNULL, env={"PATH": os.environ.get("PATH", "")})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"the sandbox check could not run: {exc}"
    if probe.returncode == 0:
        return None
    lines = probe.stderr.decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else f"the sandbox check failed with exit code {probe.returncode}"


class SandboxGate:
    """Checks before each launch; remembers a success for a while, never a failure."""

    def __init__(self, python: str, entrypoint: str, policy: SandboxPolicy) -> None:
        self._python = python
        self._entrypoint = entrypoint
        self.policy = policy
        self._ok_until = 0.0

    async def problem(self) -> str | None:
        if not self.policy.enabled or time.monotonic() < self._ok_until:
            return None
        problem = await asyncio.to_thread(check, self._python, self._entrypoint, self.policy)
        if problem is None:
            self._ok_until = time.monotonic() + _TRUST_SUCCESS_S
        return problem
