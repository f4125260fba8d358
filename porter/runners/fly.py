"""FlyRunner: each machine is a one-shot Fly Machine running the agent image
(docs/platform-notes.md §A; the section numbers below are from it).

Machines are tagged with `porter_managed=1` and their run id in metadata, so a restarted Porter
finds its machines by asking Fly, with no state of its own. With `auto_destroy` a machine is
gone from GET as soon as it exits; its exit event is then read from the deleted list (A.5).

The client makes one attempt a call and the launch job retries; errors reach the caller as
FlyError (a PorterError), which the watchdog reads as "state unknown", never as gone.
"""

from __future__ import annotations

from collections import OrderedDict

from porter import fly
from porter.errors import FlyError
from porter.runners.base import LaunchRequest, Machine, MachineState, RunnerError

MANAGED_KEY = "porter_managed"
INSTANCE_KEY = "porter_instance"  # which Porter: two sharing one Fly app reap only their own
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
NO_IMAGE = ("no agent image is set for Fly machines: the operator needs to build one from "
            "container/ and set PORTER_AGENT_IMAGE (docs/operator.md)")


def machine_from_fly(machine: fly.FlyMachine) -> Machine:
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
        image: str | None,
        region: str,
        cpu_kind: str = "shared",
        cpus: int = 2,
        memory_mb: int = 4096,
        instance: str = "",
    ) -> None:
        self._client = client
        self._instance = instance
        self._image = image
        self._region = region
        self._cpu_kind = cpu_kind
        self._cpus = cpus
        self._memory_mb = memory_mb
        # machine id → run id: finds an auto-destroyed machine's exit event (A.5).
        self._known: OrderedDict[str, str | None] = OrderedDict()

    async def launch(self, request: LaunchRequest) -> Machine:
        """Create the run's machine, or adopt the one an earlier attempt made.

        The launch job retries a failed launch, and a create whose answer was lost may have made
        the machine: looking for it by run id first means a retry never makes a second one.
        Destroyed ones count: a fast machine may already have exited and gone (A.5).
        """
        if not self._image:
            # Refused here, not at start-up: Porter still records webhooks and `porter doctor`
            # names the setting, while each task that needs a machine fails at dispatch saying why.
            raise RunnerError(NO_IMAGE)
        spec = fly.MachineSpec(
            image=self._image,
            env=request.machine_env(),
            metadata={
                RUN_ID_KEY: request.run_id,
                TASK_ID_KEY: str(request.task_id),
                MANAGED_KEY: "1",
                INSTANCE_KEY: self._instance,
            },
            region=self._region,
            cpu_kind=self._cpu_kind,
            cpus=self._cpus,
            memory_mb=self._memory_mb,
            # One name per run: Fly refuses a second create of the run even if the look-up
            # missed the first (one still being created).
            name=f"porter-run-{request.run_id}",
            auto_destroy=True,
        )
        machine = await self._of_run(request.run_id)
        if machine is None:
            try:
                machine = await self._client.create_machine(spec)
            except fly.MachineNameTaken as exc:
                machine = await self._of_run(request.run_id)
                if machine is None:
                    # Not listed yet: most likely our own earlier create still under way.
                    raise FlyError(f"{exc.message}; no machine of this run is listed yet",
                                   status=exc.status, retryable=True) from exc
        self._remember(machine)
        return machine_from_fly(machine)

    async def stop(self, machine_id: str) -> None:
        await self._client.stop(machine_id)

    async def destroy(self, machine_id: str) -> None:
        await self._client.destroy(machine_id, force=True)

    async def state(self, machine_id: str) -> Machine:
        found = await self._client.get_machine(machine_id)
        if found is None:
            found = await self._deleted(machine_id)
        if found is None:
            return Machine(machine_id, self._known.get(machine_id), "gone",
                           detail="fly: no such machine")
        self._remember(found)
        return machine_from_fly(found)

    async def list_owned(self) -> list[Machine]:
        found = await self._client.list_machines({MANAGED_KEY: "1",
                                                   INSTANCE_KEY: self._instance})
        # Checked again here, should Fly ignore a filter: another Porter's machines are not ours.
        owned = [m for m in found if m.state != "destroyed"
                 and m.metadata.get(INSTANCE_KEY, "") == self._instance]
        for m in owned:
            self._remember(m)
        return [machine_from_fly(m) for m in owned]

    async def aclose(self) -> None:
        await self._client.aclose()

    def _remember(self, machine: fly.FlyMachine) -> None:
        self._known[machine.id] = machine.metadata.get(RUN_ID_KEY)
        self._known.move_to_end(machine.id)
        while len(self._known) > _MAX_KNOWN:
            self._known.popitem(last=False)

    async def _deleted(self, machine_id: str) -> fly.FlyMachine | None:
        """A destroyed machine's last record (with its exit event), found by its run id."""
        run_id = self._known.get(machine_id)
        if run_id is None:
            return None
        return next((m for m in await self._run_machines(run_id) if m.id == machine_id), None)

    async def _of_run(self, run_id: str) -> fly.FlyMachine | None:
        """The run's machine, a live one before a destroyed one."""
        found = sorted(await self._run_machines(run_id), key=lambda m: m.state == "destroyed")
        return found[0] if found else None

    async def _run_machines(self, run_id: str) -> list[fly.FlyMachine]:
        """Every machine tagged with the run, destroyed ones included. Checked again here: a
        metadata filter Fly ignored must not make Porter adopt another run's machine."""
        found = await self._client.list_machines({RUN_ID_KEY: run_id}, include_deleted=True)
        return [m for m in found if m.metadata.get(RUN_ID_KEY) == run_id]
