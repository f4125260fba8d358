"""An in-memory Runner: its machines are records the test drives, and it remembers every call.

It implements `porter.runners.base.Runner`, so Porter's launcher, watchdog and control use it as
they would the local or Fly runner; nothing is started. A test plays the machine: it moves a
machine's state (`set`), plants machines Porter did not start (`stray`), makes the runner fail
(`state_error`) or runs code in the middle of a call (`on_state`, `on_list`) to race Porter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from porter.runners.base import LaunchRequest, Machine, MachineState


class Machines:
    name = "test"

    def __init__(self) -> None:
        self.machines: dict[str, Machine] = {}
        self.launched: list[LaunchRequest] = []  # every launch asked for, tokens included
        self.stopped: list[str] = []
        self.destroyed: list[str] = []
        self.closed = False
        self.state_error: Exception | None = None  # raised by state(), e.g. a Fly outage
        self.on_state: Callable[[str], Awaitable[None]] | None = None
        self.on_list: Callable[[], Awaitable[None]] | None = None

    # -- the Runner protocol --------------------------------------------------------------------

    async def launch(self, request: LaunchRequest) -> Machine:
        self.launched.append(request)
        machine = Machine(f"m{len(self.launched)}", request.run_id, "starting")
        self.machines[machine.id] = machine
        return machine

    async def stop(self, machine_id: str) -> None:
        """A graceful stop: a live machine exits as SIGTERM leaves it (143)."""
        self.stopped.append(machine_id)
        machine = self.machines.get(machine_id)
        if machine is not None and machine.state in ("starting", "running"):
            self.set(machine_id, "exited", exit_code=143)

    async def destroy(self, machine_id: str) -> None:
        self.destroyed.append(machine_id)
        self.machines.pop(machine_id, None)

    async def state(self, machine_id: str) -> Machine:
        await asyncio.sleep(0)  # a real runner awaits I/O here: racing callers interleave
        if self.on_state is not None:
            await self.on_state(machine_id)
        if self.state_error is not None:
            raise self.state_error
        return self.machines.get(machine_id) or Machine(machine_id, None, "gone")

    async def list_owned(self) -> list[Machine]:
        await asyncio.sleep(0)
        if self.on_list is not None:
            await self.on_list()
        return list(self.machines.values())

    async def aclose(self) -> None:
        self.closed = True

    # -- what the test does to machines ---------------------------------------------------------

    def set(self, machine_id: str, state: MachineState, *, exit_code: int | None = None,
            detail: str = "") -> None:
        old = self.machines[machine_id]
        self.machines[machine_id] = Machine(old.id, old.run_id, state, exit_code, detail)

    def stray(self, machine_id: str, run_id: str | None) -> None:
        """A running machine Porter's records do not know (a lost database, no label)."""
        self.machines[machine_id] = Machine(machine_id, run_id, "running")

    def run_ids(self) -> list[str]:
        return [request.run_id for request in self.launched]
