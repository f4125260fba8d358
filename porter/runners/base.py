"""The runner contract: where an agent machine runs (a Fly Machine, or a local subprocess).

A runner starts a machine whose whole environment is PORTER_URL, PORTER_RUN_ID and
PORTER_RUN_TOKEN; everything else (repo, clone token, agent, prompt) reaches the machine through
the authenticated spec request, never through machine config (docs/design.md, "The agent is
untrusted").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Protocol

from porter.errors import PorterError

MachineState = Literal["starting", "running", "exited", "gone"]

# What container/porter_entrypoint/spec.py accepts as PORTER_RUN_ID; anything else dies at start.
_RUN_ID = re.compile(r"[A-Za-z0-9_.-]{1,128}")


class RunnerError(PorterError):
    """The runner could not start or control a machine."""


@dataclass(frozen=True)
class LaunchRequest:
    run_id: str  # url-safe, unique per attempt
    task_id: int
    token: str = field(repr=False)  # the run's bearer token: a secret, kept out of repr and logs
    porter_url: str  # the PORTER_URL the machine calls back

    def __post_init__(self) -> None:
        if not _RUN_ID.fullmatch(self.run_id):
            raise ValueError("run_id must be 1-128 characters of A-Z a-z 0-9 _ . -")
        if not self.token:
            raise ValueError("the run token is empty")
        if not self.porter_url.startswith(("http://", "https://")):
            raise ValueError("porter_url must be an http(s) URL")

    def machine_env(self) -> dict[str, str]:
        """The machine's entire environment (acceptance tests assert nothing else is there)."""
        return {
            "PORTER_URL": self.porter_url,
            "PORTER_RUN_ID": self.run_id,
            "PORTER_RUN_TOKEN": self.token,
        }


@dataclass(frozen=True)
class Machine:
    id: str  # runner-specific machine id
    run_id: str | None
    state: MachineState
    exit_code: int | None = None  # when exited and known
    detail: str = ""  # short human text, e.g. "exited with code 137 (killed by SIGKILL)"


class Runner(Protocol):
    name: str  # "local" | "fly"

    async def launch(self, request: LaunchRequest) -> Machine:
        """Start a machine for the run; returns once the runner has accepted it."""
        ...

    async def stop(self, machine_id: str) -> None:
        """Graceful stop (SIGTERM); idempotent."""
        ...

    async def destroy(self, machine_id: str) -> None:
        """Kill and remove the machine and everything it started; idempotent, gone is fine."""
        ...

    async def state(self, machine_id: str) -> Machine:
        """The machine now; "gone" when unknown or destroyed without a trace."""
        ...

    async def list_owned(self) -> list[Machine]:
        """Every machine this Porter started that still exists (found again after a restart)."""
        ...

    async def aclose(self) -> None: ...
