"""LocalRunner: each machine is a subprocess running container/porter_entrypoint/ on this host.

The processes outlive Porter (their own session), so a restarted Porter must find them again
without any state of its own: a machine id carries the pid and the process start time, and
the command line carries the entrypoint path and a `--porter-run=<run_id>` marker, all
readable in /proc. The start time guards against a recycled pid being taken for ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from porter.identity import stat_fields
from porter.runners.base import LaunchRequest, Machine, RunnerError
from porter.runners.sandbox import SandboxGate, SandboxPolicy

# A directory with a __main__.py (or its zipapp, as in the image): `python <path>` runs it.
DEFAULT_ENTRYPOINT = Path(__file__).resolve().parents[2] / "container" / "porter_entrypoint"
RUN_MARKER = "--porter-run="
AGENT_PIDFILE = "--porter-agent-pidfile="
WORKDIR = "--porter-workdir="
INSTANCE = "--porter-instance="

# pid, start time, and the run id (so the agent can be found after the entrypoint is gone).
_ID = re.compile(r"local-(\d+)-(\d+)(?:-([A-Za-z0-9_.-]+))?")
_REAP_WITHIN_S = 5.0
_MAX_REMEMBERED_CODES = 4096


@dataclass(frozen=True)
class _Proc:
    """The fields of /proc/<pid>/stat a runner needs."""

    pid: int
    state: str  # one letter; Z (zombie) and X (dead) are no longer running
    ppid: int
    pgid: int
    start: int  # field 22, clock ticks since boot: with the pid, unique for the boot
    session: int = 0

    @property
    def alive(self) -> bool:
        return self.state not in ("Z", "X")


class LocalRunner:
    """Runs the entrypoint as a detached local subprocess; the default runner."""

    name = "local"

    def __init__(
        self,
        *,
        entrypoint: Path | None = None,
        python: str = sys.executable,
        log_dir: Path | None = None,
        sandbox: SandboxPolicy | None = None,
        instance: str = "",
    ) -> None:
        # Which Porter: two on one host list, reap and destroy only their own machines.
        self._instance = instance
        # Resolved once: the path is matched verbatim against other processes' command lines.
        self._entrypoint = str((entrypoint or DEFAULT_ENTRYPOINT).resolve())
        self._python = python
        self._sandbox = SandboxGate(python, self._entrypoint, sandbox or SandboxPolicy())
        self._log_dir = log_dir
        self._pid_dir = log_dir or Path(tempfile.gettempdir()) / "porter-local-runs"
        self._workdir = self._pid_dir / "workspaces"
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._codes: OrderedDict[str, int] = OrderedDict()  # reaped children's exit codes
        self._run_ids: dict[str, str] = {}

    async def launch(self, request: LaunchRequest) -> Machine:
        if problem := await self._sandbox.problem():
            # Not retried: the task fails at dispatch with this reason on its status comment.
            raise RunnerError(f"no agent runs without its sandbox: {problem}")
        # A launch job taken back from a Porter that died mid-launch runs again: the run's
        # machine may already be up, and a second one would share its workspace and pidfile.
        for machine in await self.list_owned():
            if machine.run_id == request.run_id:
                return machine
        proc = self._spawn(request)
        info = _stat(proc.pid)
        if info is None:  # unreachable: an unreaped child keeps its /proc entry
            raise RunnerError(f"the local machine for run {request.run_id} vanished at start")
        machine_id = f"local-{proc.pid}-{info.start}-{request.run_id}"
        self._children[machine_id] = proc
        self._run_ids[machine_id] = request.run_id
        return Machine(machine_id, request.run_id, "running", detail=f"pid {proc.pid}")

    async def stop(self, machine_id: str) -> None:
        if (proc := self._ours(machine_id)) is not None:
            _signal_group(proc, signal.SIGTERM)  # the entrypoint stops its agent and reports

    async def destroy(self, machine_id: str) -> None:
        if (proc := self._ours(machine_id)) is not None:
            _kill_tree(proc)
        match = _ID.fullmatch(machine_id)
        run_id = (match.group(3) if match else None) or self._run_ids.get(machine_id)
        if run_id is not None:
            _kill_agent_session(self._pidfile(run_id))
            # A killed entrypoint cannot remove its workspace: the prompt (private issue text)
            # and the checkout would stay on disk for good.
            for workspace in self._workdir.glob(f"porter-run-{glob.escape(run_id)}-*"):
                await asyncio.to_thread(shutil.rmtree, workspace, True)
        child = self._children.get(machine_id)
        if child is None:
            return
        # Reap our own child so its exit code is kept and no zombie is left behind.
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(child.wait, _REAP_WITHIN_S)
        self._settle(machine_id)

    async def state(self, machine_id: str) -> Machine:
        if not _ID.fullmatch(machine_id):
            return Machine(machine_id, None, "gone", detail="not a local machine id")
        self._settle(machine_id)
        run_id = self._run_ids.get(machine_id)
        if machine_id in self._codes:
            code = self._codes[machine_id]
            return Machine(machine_id, run_id, "exited", code, _exit_text(code))
        if (proc := self._ours(machine_id)) is not None:
            run_id = run_id or self._run_id_of(_cmdline(proc.pid))
            if run_id is not None:
                self._run_ids[machine_id] = run_id
            return Machine(machine_id, run_id, "running", detail=f"pid {proc.pid}")
        unknown = "exited; exit code unknown (not started by this Porter process)"
        return Machine(machine_id, run_id, "exited", None, unknown)

    async def list_owned(self) -> list[Machine]:
        for machine_id in list(self._children):
            self._settle(machine_id)
        found = []
        for pid in _pids():
            run_id = self._run_id_of(_cmdline(pid))
            info = _stat(pid) if run_id is not None else None
            if run_id is None or info is None or not info.alive:
                continue
            machine_id = f"local-{pid}-{info.start}-{run_id}"
            self._run_ids[machine_id] = run_id
            found.append(Machine(machine_id, run_id, "running", detail=f"pid {pid}"))
        # Our own children count even in the instant after exec when /proc shows no cmdline.
        seen = {m.id for m in found}
        for machine_id, child in self._children.items():
            if machine_id not in seen and child.poll() is None:
                run_id = self._run_ids.get(machine_id)
                found.append(Machine(machine_id, run_id, "running", detail=f"pid {child.pid}"))
        return found

    async def aclose(self) -> None:
        # Machines outlive Porter by design: nothing is stopped here, finished children are reaped.
        for machine_id in list(self._children):
            self._settle(machine_id)

    # -- helpers ----------------------------------------------------------------------------

    def _spawn(self, request: LaunchRequest) -> subprocess.Popen[bytes]:
        if not os.path.exists(self._entrypoint):
            raise RunnerError(
                f"the agent entrypoint {self._entrypoint} does not exist; the local runner needs "
                "Porter's source tree (container/porter_entrypoint/)"
            )
        self._pid_dir.mkdir(parents=True, exist_ok=True)
        self._workdir.mkdir(mode=0o700, exist_ok=True)
        argv = [self._python, self._entrypoint, f"{RUN_MARKER}{request.run_id}",
                f"{AGENT_PIDFILE}{self._pidfile(request.run_id)}", f"{WORKDIR}{self._workdir}",
                f"{INSTANCE}{self._instance}",
                *self._sandbox.policy.argv()]
        with self._output(request.run_id) as output:
            try:
                return subprocess.Popen(
                    argv,
                    env=machine_environment(request),
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=output,
                    start_new_session=True,  # survives Porter; its own group for stop/destroy
                    close_fds=True,
                )
            except OSError as exc:
                raise RunnerError(
                    f"cannot start the local machine for run {request.run_id}: "
                    f"{exc.strerror or exc}"
                ) from None

    @contextlib.contextmanager
    def _output(self, run_id: str) -> Iterator[int]:
        """Where the machine's stdout/stderr go: a per-run file in log_dir, or nowhere."""
        if self._log_dir is None:
            yield subprocess.DEVNULL
            return
        self._log_dir.mkdir(parents=True, exist_ok=True)
        path = self._log_dir / f"{run_id}.log"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            yield fd
        finally:
            os.close(fd)  # the child has its own copy

    def _pidfile(self, run_id: str) -> Path:
        return self._pid_dir / f"{run_id}.agent"

    def _run_id_of(self, argv: list[str] | None) -> str | None:
        """The run id when `argv` is one of our machines: the entrypoint, the run marker, and
        this Porter's instance (none on machines of a Porter that had no instance id)."""
        if not argv or self._entrypoint not in argv:
            return None
        instance = next((a[len(INSTANCE):] for a in argv if a.startswith(INSTANCE)), "")
        if instance != self._instance:
            return None
        marker = next((a for a in argv if a.startswith(RUN_MARKER)), None)
        return marker[len(RUN_MARKER) :] if marker else None

    def _ours(self, machine_id: str) -> _Proc | None:
        """The machine's process if it is still running and really is ours (not a reused pid)."""
        match = _ID.fullmatch(machine_id)
        if match is None:
            return None
        pid, start = int(match.group(1)), int(match.group(2))
        info = _stat(pid)
        if info is None or info.start != start or not info.alive:
            return None
        child = self._children.get(machine_id)
        if child is not None and child.poll() is None:
            # Our own child: the Popen proves it. Its command line is also briefly empty right
            # after exec (the kernel fills it in after Popen has returned).
            return info
        return info if self._run_id_of(_cmdline(pid)) is not None else None

    def _settle(self, machine_id: str) -> None:
        """Reap a finished child of ours (zombies count as exited) and keep its exit code."""
        child = self._children.get(machine_id)
        if child is None or child.poll() is None:
            return
        del self._children[machine_id]
        self._codes[machine_id] = _exit_code(child.returncode)
        while len(self._codes) > _MAX_REMEMBERED_CODES:
            forgotten, _ = self._codes.popitem(last=False)
            self._run_ids.pop(forgotten, None)


# -- /proc ------------------------------------------------------------------------------------


def machine_environment(request: LaunchRequest) -> dict[str, str]:
    """The run's three variables and this host's PATH, nothing else inherited: a Fly machine
    has its image's PATH, and a local one the host's tools (only what the sandbox mounts of
    them resolves), which the repository's setup and verify commands need."""
    return {**request.machine_env(), "PATH": os.environ.get("PATH") or os.defpath}


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def _stat(pid: int) -> _Proc | None:
    fields = stat_fields(pid)
    if fields is None:
        return None
    try:
        return _Proc(pid, fields[0], int(fields[1]), int(fields[2]), int(fields[19]),
                     int(fields[3]))
    except (IndexError, ValueError):
        return None


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [os.fsdecode(part) for part in raw.split(b"\0")[:-1]] if raw else None


def _descendants(root: int) -> list[_Proc]:
    procs = [info for pid in _pids() if (info := _stat(pid)) is not None]
    children: dict[int, list[_Proc]] = {}
    for info in procs:
        children.setdefault(info.ppid, []).append(info)
    found: list[_Proc] = []
    todo = [root]
    while todo:
        for info in children.get(todo.pop(), []):
            found.append(info)
            todo.append(info.pid)
    return found


def _signal_group(proc: _Proc, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if proc.pgid == proc.pid:  # start_new_session made it the leader of its own group
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)


def _kill_tree(proc: _Proc) -> None:
    """SIGKILL the entrypoint, and every process under it and their groups.

    The entrypoint runs the agent (and git) in sessions of their own, so killing its group
    alone would orphan them. Everything is frozen first so nothing forks while we look, and
    the tree is read before the kill: once the entrypoint dies its children are reparented
    and can no longer be found by parent pid.
    """
    never = {0, 1, os.getpgrp()}
    _signal_group(proc, signal.SIGSTOP)
    tree = _descendants(proc.pid)
    for pgid in {p.pgid for p in tree} - never:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGSTOP)
    # Again: anything forked before the freeze took hold. Everything seen in either look is
    # killed: a process frozen by the first look must not be left stopped forever.
    tree = list({p.pid: p for p in [*tree, *_descendants(proc.pid)]}.values())
    for pgid in {p.pgid for p in tree} - never - {proc.pid}:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    for p in tree:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p.pid, signal.SIGKILL)
    _signal_group(proc, signal.SIGKILL)


def _kill_agent_session(pidfile: Path) -> None:
    """Kill every process in the agent's session, even when the entrypoint died first.

    The agent leads a session of its own; once its entrypoint is killed it is reparented and no
    longer found under it, so the entrypoint wrote the agent's pid and start time down for us.
    """
    try:
        pid_text, start_text = pidfile.read_text(encoding="utf-8").split()
        leader, started = int(pid_text), int(start_text)
    except (OSError, ValueError):
        return
    now_leading = _stat(leader)
    if now_leading is not None and now_leading.start != started:
        # The pid was given to another process, which can only happen once no process of the
        # agent's session is left (a session id keeps its pid from reuse): nothing to kill, and
        # the new holder's session must not be taken for the agent's.
        with contextlib.suppress(OSError):
            pidfile.unlink()
        return
    never = {0, 1, os.getpid(), os.getpgrp()}
    for _ in range(2):  # a second sweep catches anything forked during the first
        members = [p for pid in _pids() if (p := _stat(pid)) is not None
                   and p.session == leader and p.start >= started and p.pid not in never]
        for member in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(member.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        pidfile.unlink()


def _exit_code(returncode: int) -> int:
    """Popen's returncode as a shell (and Fly) reports it: killed by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def _exit_text(code: int) -> str:
    if code > 128:
        with contextlib.suppress(ValueError):
            return f"exited with code {code} (killed by {signal.Signals(code - 128).name})"
    return f"exited with code {code}"
