"""FlyRunner: each machine is a one-shot Fly Machine running the agent image (PLATFORM_NOTES A).

Machines are tagged with `porter_managed=1` and their run id in metadata, so a restarted Porter
finds its machines by asking Fly, with no state of its own. With `auto_destroy` a machine is
gone from GET as soon as it exits; its exit event is then read from the deleted list (A.5).
"""

from __future__ import annotations

from collections import OrderedDict

from porter import fly
from porter.runners.base import LaunchRequest, Machine, MachineState

MANAGED_KEY = "porter_managed"
RUN_ID_KEY = "porter_run_id"
TASK_ID_KEY = "porter_task_id"

# A.5 states. Anything not listed (restarting, updating, replacing, or a state Fly adds later)
# is a machine that still exists and may still be working, so it reads as running.
_STATES: dict[str, MachineState] = {
    "creating": "starting",
    "created": "starting",
    "starting": "starting",
    "started": "running",
    "stopping": "exited",
    "stopped": "exited",
    "failed": "exited",
    "suspending": "exited",
    "suspended": "exited",
    "destroying": "exited",
    "destroyed": "exited",
    "replaced": "exited",
    "launch_failed": "exited",
    "migrated": "exited",
}
_MAX_KNOWN = 4096


def machine_from_fly(machine: fly.Machine) -> Machine:
    """Porter's view of a Fly machine: its state mapped, exit details as short text."""
    state = _STATES.get(machine.state, "running")
    run_id = machine.metadata.get(RUN_ID_KEY)
    if state != "exited":
        return Machine(machine.id, run_id, state, detail=f"fly: {machine.state}")
    notes = []
    if machine.exit_code is not None:
        notes.append(f"exited with code {machine.exit_code}")
    if machine.oom_killed:
        notes.append("oom killed")
    if machine.requested_stop:
        notes.append("stop requested")
    detail = f"fly: {machine.state}" + (": " + ", ".join(notes) if notes else "")
    return Machine(machine.id, run_id, "exited", machine.exit_code, detail)


class FlyRunner:
    """Runs each run in a Fly Machine of the client's app. Owns (and closes) the client."""

    name = "fly"

    def __init__(
        self,
        client: fly.FlyClient,
        *,
        image: str,
        region: str,
        cpu_kind: str = "shared",
        cpus: int = 2,
        memory_mb: int = 4096,
    ) -> None:
        self._client = client
        self._image = image
        self._region = region
        self._cpu_kind = cpu_kind
        self._cpus = cpus
        self._memory_mb = memory_mb
        # machine id → (run id, instance id): finds an auto-destroyed machine's exit event and
        # lets wait_exit wait for `stopped`, which needs the instance id (A.5).
        self._known: OrderedDict[str, tuple[str | None, str | None]] = OrderedDict()

    async def launch(self, request: LaunchRequest) -> Machine:
        spec = fly.MachineSpec(
            image=self._image,
            env=request.machine_env(),
            metadata={
                RUN_ID_KEY: request.run_id,
                TASK_ID_KEY: str(request.task_id),
                MANAGED_KEY: "1",
            },
            region=self._region,
            cpu_kind=self._cpu_kind,
            cpus=self._cpus,
            memory_mb=self._memory_mb,
            # One name per run: a retried create after an ambiguous failure adopts, never doubles.
            name=f"porter-run-{request.run_id}",
            auto_destroy=True,
        )
        created = await self._client.create_machine(spec)
        self._remember(created)
        return machine_from_fly(created)

    async def stop(self, machine_id: str) -> None:
        await self._client.stop(machine_id)

    async def destroy(self, machine_id: str) -> None:
        await self._client.destroy(machine_id, force=True)

    async def state(self, machine_id: str) -> Machine:
        found = await self._client.get_machine(machine_id)
        if found is None:
            found = await self._deleted(machine_id)
        if found is None:
            run_id = self._known.get(machine_id, (None, None))[0]
            return Machine(machine_id, run_id, "gone", detail="fly: no such machine")
        self._remember(found)
        return machine_from_fly(found)

    async def list_owned(self) -> list[Machine]:
        found = await self._client.list_machines({MANAGED_KEY: "1"})
        owned = [m for m in found if m.state != "destroyed"]
        for m in owned:
            self._remember(m)
        return [machine_from_fly(m) for m in owned]

    async def wait_exit(self, machine_id: str, *, deadline: float) -> Machine:
        """Wait until the machine has stopped or `deadline` (the client's clock) passes.

        Uses Fly's blocking /wait (at most 60 s a call, repeated), then reports the state.
        """
        instance_id = self._known.get(machine_id, (None, None))[1]
        if instance_id is None:
            current = await self._client.get_machine(machine_id)
            if current is None:
                return await self.state(machine_id)
            self._remember(current)
            instance_id = current.instance_id
        await self._client.wait_for(machine_id, "stopped", instance_id, deadline)
        return await self.state(machine_id)

    async def aclose(self) -> None:
        await self._client.aclose()

    def _remember(self, machine: fly.Machine) -> None:
        self._known[machine.id] = (machine.metadata.get(RUN_ID_KEY), machine.instance_id)
        self._known.move_to_end(machine.id)
        while len(self._known) > _MAX_KNOWN:
            self._known.popitem(last=False)

    async def _deleted(self, machine_id: str) -> fly.Machine | None:
        """A destroyed machine's last record (with its exit event), found by its run id."""
        run_id = self._known.get(machine_id, (None, None))[0]
        if run_id is None:
            return None
        found = await self._client.list_machines({RUN_ID_KEY: run_id}, include_deleted=True)
        return next((m for m in found if m.id == machine_id), None)
