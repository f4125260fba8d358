"""Runners with real processes: LocalRunner starts the real container entrypoint against a stub
Porter on loopback (a bare git repo, a scripted agent); FlyRunner drives porter.fly.FlyClient
against the fake Machines API, whose machines are subprocesses too."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from porter.fly import FlyClient, FlyMachine, MachineSpec
from porter.runners import FlyRunner, LaunchRequest, LocalRunner, Machine
from porter.runners.fly import machine_from_fly
from tests.fakes.fly import FakeFly
from tests.fakes.git_repo import bare_origin
from tests.fakes.sandbox import SANDBOX, SANDBOX_ARGS, needs_bwrap, pids_running

pytestmark = needs_bwrap

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "container" / "porter_entrypoint"
AGENT = ROOT / "tests" / "fakes" / "scripted_agent.py"
PY = sys.executable
SLEEP_FOREVER = [PY, "-c", "import time; time.sleep(60)"]
# Every run id this module starts begins with this, so cleanup never touches anyone else's.
PREFIX = f"rt{os.getpid()}-"
FLY_TOKEN = "fm2_runnerstest"
INSTANCE = "a1b2c3"  # the Porter these runners belong to
APP = "porter-runs"
THREE = {"PORTER_URL", "PORTER_RUN_ID", "PORTER_RUN_TOKEN"}
WAIT_S = 20.0  # generous ceiling for one entrypoint run; the whole file takes a few seconds

@dataclass(frozen=True)
class Origin:
    url: str
    base_sha: str


@pytest.fixture
def origin(tmp_path: Path) -> Origin:
    bare, base_sha = bare_origin(tmp_path, {"README.md": b"# hello\n"})
    return Origin(url=bare.as_uri(), base_sha=base_sha)


def new_request(porter_url: str) -> LaunchRequest:
    run_id = PREFIX + secrets.token_hex(4)
    return LaunchRequest(run_id, 7, "prt_" + secrets.token_urlsafe(24), porter_url)


# -- a stub Porter: the four callback endpoints a machine uses ------------------------------------


@dataclass
class StubRun:
    token: str
    spec: dict[str, Any]
    tag: str
    gate: threading.Event = field(default_factory=threading.Event)  # holds the spec reply
    asked: threading.Event = field(default_factory=threading.Event)  # the spec was requested
    logs: list[dict[str, Any]] = field(default_factory=list)
    completes: list[dict[str, Any]] = field(default_factory=list)
    completed: threading.Event = field(default_factory=threading.Event)
    agent_ready: threading.Event = field(default_factory=threading.Event)
    # At AGENT-READY: the host pids of everything tagged with the run id (the entrypoint, bwrap,
    # the sandbox's init, the agent, a tagged sleeper). Pids the agent prints are its own
    # PID namespace's.
    sandboxed: list[int] = field(default_factory=list)

    def log_text(self) -> str:
        return "".join(c["text"] for c in sorted(self.logs, key=lambda c: c["seq"]))


class StubPorter:
    def __init__(self) -> None:
        self.runs: dict[str, StubRun] = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def expect(
        self, request: LaunchRequest, origin: Origin, script: list[dict[str, Any]], *, hold: bool
    ) -> StubRun:
        spec = {
            "task_id": request.task_id,
            "run_id": request.run_id,
            "attempt": 1,
            "repo": "octo/hello",
            "clone_url": origin.url,
            "clone_token": "",
            "base_ref": "main",
            "base_sha": origin.base_sha,
            # An absolute python: the machine's PATH is the entrypoint's default, not ours.
            "agent": {
                "name": "scripted",
                "argv": [PY, str(AGENT), json.dumps(script), request.run_id],
                "env": {},
                "output": "text",
            },
            "prompt": "Add a notes file",
            "limits": {
                "agent_timeout_s": 60,
                "heartbeat_interval_s": 0.5,
                "callback_backoff_s": 0.05,
            },
        }
        run = StubRun(request.token, spec, tag=request.run_id)
        if not hold:
            run.gate.set()
        self.runs[request.run_id] = run
        return run

    def close(self) -> None:
        for run in self.runs.values():
            run.gate.set()
            # A safety net independent of the runner under test: what this run started.
            for pid in pids_running(run.tag):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        self.server.shutdown()
        self.server.server_close()


def _handler(stub: StubPorter) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _run(self) -> tuple[StubRun, str] | None:
            match = re.fullmatch(r"/api/runs/([^/]+)/(spec|logs|heartbeat|complete)", self.path)
            run = stub.runs.get(match.group(1)) if match else None
            if match is None or run is None:
                self._send(404, {"error": "no such run"})
                return None
            if self.headers.get("Authorization") != f"Bearer {run.token}":
                self._send(401, {"error": "bad token"})
                return None
            return run, match.group(2)

        def do_GET(self) -> None:
            found = self._run()
            if found is None:
                return
            run, route = found
            if route != "spec":
                self._send(405, {"error": "method not allowed"})
                return
            run.asked.set()
            run.gate.wait(WAIT_S)
            self._send(200, run.spec)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            found = self._run()
            if found is None:
                return
            run, route = found
            with stub.lock:
                if route == "logs":
                    run.logs.append(body)
                    if "AGENT-READY" in run.log_text() and not run.agent_ready.is_set():
                        run.sandboxed = pids_running(run.tag)
                        run.agent_ready.set()
                elif route == "complete":
                    run.completes.append(body)
                    run.completed.set()
            self._send(200, {"cancel": False} if route == "heartbeat" else {"ok": True})

    return Handler


@pytest.fixture
def stub() -> Iterator[StubPorter]:
    server = StubPorter()
    try:
        yield server
    finally:
        server.close()


async def happened(event: threading.Event, within: float = WAIT_S) -> bool:
    return await asyncio.to_thread(event.wait, within)


# -- processes ----------------------------------------------------------------------------------


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


async def ended(pid: int, within: float = WAIT_S) -> bool:
    """Whether `pid` has terminated, awaited on a pidfd (readable once the process is dead)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    loop = asyncio.get_running_loop()
    dead = loop.create_future()
    loop.add_reader(fd, lambda: dead.done() or dead.set_result(None))
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(dead, within)
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    return not alive(pid)


def pid_of(machine: Machine) -> int:
    match = re.fullmatch(r"local-(\d+)-(\d+)-[A-Za-z0-9_.-]+", machine.id)
    assert match, machine.id
    return int(match.group(1))


def start_stranger(*, session: bool = False) -> tuple[subprocess.Popen[bytes], int]:
    """A process that is not a machine, and its start time (field 22 of /proc/<pid>/stat)."""
    proc = subprocess.Popen(SLEEP_FOREVER, stdin=subprocess.DEVNULL, start_new_session=session)
    fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return proc, int(fields[19])


def environ_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(item.decode().split("=", 1) for item in raw.split(b"\0") if item)


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[LocalRunner]:
    runner = LocalRunner(log_dir=tmp_path / "logs", sandbox=SANDBOX)
    try:
        yield runner
    finally:
        # Nothing survives a test: destroy whatever of ours is still running, then reap.
        for machine in await LocalRunner().list_owned():
            if (machine.run_id or "").startswith(PREFIX):
                await runner.destroy(machine.id)
        await runner.aclose()


# -- LocalRunner ----------------------------------------------------------------------------------


async def test_local_machine_sees_only_its_three_variables_and_reports_complete(
    local: LocalRunner, stub: StubPorter, origin: Origin, tmp_path: Path
) -> None:
    request = new_request(stub.url)
    script = [{"op": "write", "path": "NOTES.md", "text": "notes\n"}]
    run = stub.expect(request, origin, script, hold=True)  # held: the machine waits for its spec

    machine = await local.launch(request)
    pid = pid_of(machine)
    assert (machine.run_id, machine.state) == (request.run_id, "running")
    assert await happened(run.asked)  # the entrypoint is up, waiting for its spec
    # The run's three variables and the host's PATH: nothing else of Porter's environment.
    assert environ_of(pid) == {**request.machine_env(), "PATH": os.environ["PATH"]}
    assert await local.state(machine.id) == machine
    assert machine in await local.list_owned()
    assert request.token not in repr(request)

    run.gate.set()
    assert await happened(run.completed)
    [result] = run.completes
    assert result["status"] == "succeeded"
    assert [f["path"] for f in result["changeset"]["files"]] == ["NOTES.md"]
    assert await ended(pid)
    done = await local.state(machine.id)
    assert (done.state, done.exit_code, done.run_id) == ("exited", 0, request.run_id)
    assert done.detail == "exited with code 0"
    assert machine.id not in [m.id for m in await local.list_owned()]
    assert (tmp_path / "logs" / f"{request.run_id}.log").is_file()


async def test_local_exit_code_and_output_of_a_machine_refused_its_spec(
    local: LocalRunner, stub: StubPorter, tmp_path: Path
) -> None:
    request = new_request(stub.url)  # the stub does not know this run: 404, the entrypoint quits
    machine = await local.launch(request)
    assert await ended(pid_of(machine))
    done = await local.state(machine.id)
    assert (done.state, done.exit_code) == ("exited", 2)
    log = (tmp_path / "logs" / f"{request.run_id}.log").read_text()
    assert "refused the spec request" in log
    assert request.token not in log


async def test_local_stop_lets_the_entrypoint_stop_its_agent_and_report(
    local: LocalRunner, stub: StubPorter, origin: Origin
) -> None:
    request = new_request(stub.url)
    run = stub.expect(
        request, origin, [{"op": "ready"}, {"op": "sleep", "seconds": 60}], hold=False
    )
    machine = await local.launch(request)
    assert await happened(run.agent_ready)
    assert len(run.sandboxed) == 4  # the entrypoint, bwrap, the sandbox's init, the agent

    await local.stop(machine.id)
    assert await happened(run.completed)
    assert run.completes[0]["error"] == {
        "stage": "agent",
        "message": "the machine was stopped before the run finished",
    }
    assert await ended(pid_of(machine))
    for pid in run.sandboxed:
        assert await ended(pid, within=1)
    done = await local.state(machine.id)
    assert (done.state, done.exit_code) == ("exited", 0)
    await local.stop(machine.id)  # idempotent


async def test_after_a_restart_a_new_runner_finds_and_destroys_the_whole_machine(
    local: LocalRunner, stub: StubPorter, origin: Origin, tmp_path: Path
) -> None:
    request = new_request(stub.url)
    script = [
        {"op": "spawn_sleeper", "seconds": 60, "tag": request.run_id},
        {"op": "ready"},
        {"op": "sleep", "seconds": 60},
    ]
    run = stub.expect(request, origin, script, hold=False)
    machine = await local.launch(request)
    assert await happened(run.agent_ready)
    entrypoint = pid_of(machine)
    assert len(run.sandboxed) == 5  # the entrypoint, bwrap, sandbox init, agent, sleeper
    workspaces = tmp_path / "logs" / "workspaces"
    [workspace] = workspaces.glob(f"porter-run-{request.run_id}-*")
    assert (workspace / "prompt.md").read_text() == "Add a notes file"

    restarted = LocalRunner(sandbox=SANDBOX)  # a new Porter process: no memory of the launch
    assert await restarted.state(machine.id) == Machine(
        machine.id, request.run_id, "running", detail=f"pid {entrypoint}"
    )
    assert machine.id in [m.id for m in await restarted.list_owned()]

    await restarted.destroy(machine.id)
    # The agent runs in a session of its own under the entrypoint: it and its child die too.
    assert await ended(entrypoint, within=5)
    for pid in run.sandboxed:
        assert await ended(pid, within=5)
    assert not run.completes  # killed, not stopped: no chance to report
    after = await restarted.state(machine.id)
    assert (after.state, after.exit_code) == ("exited", None)
    killed = await local.state(machine.id)  # the launching runner still has its exit status
    assert (killed.state, killed.exit_code) == ("exited", 128 + signal.SIGKILL)
    assert "SIGKILL" in killed.detail
    assert machine.id not in [m.id for m in await restarted.list_owned()]
    await restarted.destroy(machine.id)  # idempotent
    await local.destroy(machine.id)
    assert not workspace.exists()  # the killed machine's checkout and prompt are gone too


async def test_local_never_touches_a_process_that_is_not_its_machine(local: LocalRunner) -> None:
    stranger, real_start = start_stranger()
    try:
        for machine_id in (f"local-{stranger.pid}-{real_start}", f"local-{stranger.pid}-1"):
            await local.stop(machine_id)
            await local.destroy(machine_id)
            assert (await local.state(machine_id)).state == "exited"
        assert stranger.poll() is None  # still running: not ours, so never signalled
        assert (await local.state("fly-1234")).state == "gone"
    finally:
        stranger.kill()
        stranger.wait()


# -- FlyRunner ------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def fly_served(command: list[str]) -> AsyncIterator[tuple[FakeFly, FlyRunner]]:
    fake = FakeFly(token=FLY_TOKEN, app=APP, command=command)
    async with fake.serve():
        client = FlyClient(token=FLY_TOKEN, app=APP, base_url=fake.url)
        runner = FlyRunner(client, image="registry.fly.io/porter-agent:1", region="ams",
                           instance=INSTANCE)
        try:
            yield fake, runner
        finally:
            await runner.aclose()


def restarted(fake: FakeFly) -> FlyRunner:
    client = FlyClient(token=FLY_TOKEN, app=APP, base_url=fake.url)
    return FlyRunner(client, image="registry.fly.io/porter-agent:1", region="ams",
                     instance=INSTANCE)


async def test_fly_machine_is_created_as_specified_and_runs_the_entrypoint(
    stub: StubPorter, origin: Origin
) -> None:
    request = new_request(stub.url)
    run = stub.expect(
        request, origin, [{"op": "write", "path": "a.txt", "text": "a\n"}], hold=False
    )
    async with fly_served([PY, str(ENTRYPOINT), *SANDBOX_ARGS]) as (fake, runner):
        machine = await runner.launch(request)
        assert (machine.state, machine.run_id) == ("starting", request.run_id)
        assert await happened(run.completed)
        await fake.wait_for_state(machine.id, "destroyed", within=WAIT_S)
        done = await runner.state(machine.id)
        owned = await runner.list_owned()

    assert fake.requests_to("POST", r"/machines$")[0].json == {
        "name": f"porter-run-{request.run_id}",
        "region": "ams",
        "config": {
            "image": "registry.fly.io/porter-agent:1",
            "env": request.machine_env(),
            "guest": {"cpu_kind": "shared", "cpus": 2, "memory_mb": 4096},
            "auto_destroy": True,
            "restart": {"policy": "no"},
            "metadata": {
                "porter_run_id": request.run_id,
                "porter_task_id": "7",
                "porter_managed": "1",
                "porter_instance": INSTANCE,
            },
        },
    }
    assert set(request.machine_env()) == THREE
    assert run.completes[0]["status"] == "succeeded"
    # auto_destroy: the machine is gone from GET, its exit event is still found.
    assert (done.state, done.exit_code, done.run_id) == ("exited", 0, request.run_id)
    assert fake.machine(machine.id).state == "destroyed"
    assert owned == []


async def test_fly_state_reports_a_crash_with_its_exit_code() -> None:
    async with fly_served(SLEEP_FOREVER) as (fake, runner):
        machine = await runner.launch(new_request("http://127.0.0.1:9"))
        assert (await runner.state(machine.id)).state == "running"
        fake.kill_process(machine.id, signal.SIGKILL, oom=True)
        await fake.wait_for_state(machine.id, "destroyed", within=WAIT_S)
        crashed = await runner.state(machine.id)
        assert fake.live_processes() == {}
    assert (crashed.state, crashed.exit_code) == ("exited", 137)
    assert "oom killed" in crashed.detail and "stop requested" not in crashed.detail


async def test_fly_stop_sends_sigterm_and_the_exit_shows_it() -> None:
    async with fly_served(SLEEP_FOREVER) as (fake, runner):
        machine = await runner.launch(new_request("http://127.0.0.1:9"))
        await runner.stop(machine.id)
        await fake.wait_for_state(machine.id, "destroyed", within=WAIT_S)
        stopped = await runner.state(machine.id)
        await runner.stop(machine.id)  # already gone: fine
    assert (stopped.state, stopped.exit_code) == ("exited", 128 + signal.SIGTERM)
    assert "stop requested" in stopped.detail
    assert fake.requests_to("POST", r"/stop$")[0].json == {"signal": "SIGTERM", "timeout": "10s"}


async def test_fly_destroy_leaves_no_process_and_is_idempotent() -> None:
    async with fly_served(SLEEP_FOREVER) as (fake, runner):
        machine = await runner.launch(new_request("http://127.0.0.1:9"))
        pid = fake.live_processes()[machine.id]
        await runner.destroy(machine.id)
        assert fake.live_processes() == {} and not alive(pid)
        await runner.destroy(machine.id)  # 404 is done
        assert (await runner.state(machine.id)).state == "exited"
        fresh = restarted(fake)
        assert (await fresh.state(machine.id)).state == "gone"  # no run id known to look it up
        await fresh.aclose()
    assert [r.query for r in fake.requests_to("DELETE", "")] == [{"force": "true"}] * 2


async def test_fly_list_owned_finds_only_porter_machines_after_a_restart() -> None:
    async with fly_served(SLEEP_FOREVER) as (fake, runner):
        kept = await runner.launch(new_request("http://127.0.0.1:9"))
        dropped = await runner.launch(new_request("http://127.0.0.1:9"))
        await runner.destroy(dropped.id)
        async with FlyClient(token=FLY_TOKEN, app=APP, base_url=fake.url) as client:
            await client.create_machine(
                MachineSpec(image="other", env={}, metadata={"team": "x"}, name="not-porter")
            )
        fresh = restarted(fake)
        owned = await fresh.list_owned()
        await fresh.aclose()
    assert [(m.id, m.run_id, m.state) for m in owned] == [(kept.id, kept.run_id, "running")]
    assert fake.requests_to("GET", r"/machines$")[-1].query == {
        "metadata.porter_managed": "1", "metadata.porter_instance": INSTANCE}


def _fly(state: str, **events: Any) -> FlyMachine:
    return FlyMachine(
        id="m1", name="porter-run-r1", state=state, region="ams",
        metadata={"porter_run_id": "r1"}, exit_code=events.get("code"),
        oom_killed=events.get("oom", False), requested_stop=events.get("stop", False),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("fly_state", "state"),
    [("created", "starting"), ("starting", "starting"), ("started", "running"),
     ("restarting", "running"), ("stopping", "exited"), ("stopped", "exited"),
     ("failed", "exited"), ("suspended", "exited"), ("destroying", "exited"),
     ("destroyed", "exited"), ("replaced", "exited")],
)  # fmt: skip
def test_fly_states_map_to_runner_states(fly_state: str, state: str) -> None:
    assert machine_from_fly(_fly(fly_state)).state == state


def test_fly_exit_details_are_named() -> None:
    assert machine_from_fly(_fly("stopped", code=137, oom=True)) == Machine(
        "m1", "r1", "exited", 137, "fly: stopped: exited with code 137, oom killed"
    )
    assert machine_from_fly(_fly("destroyed", code=143, stop=True)).detail == (
        "fly: destroyed: exited with code 143, stop requested"
    )
    assert machine_from_fly(_fly("started", code=None)).exit_code is None


# -- two Porters on one host, or sharing one Fly app ----------------------------------------------


async def test_two_local_porters_list_and_destroy_only_their_own_machines(
    stub: StubPorter, origin: Origin, tmp_path: Path
) -> None:
    # Instance ids of this test alone: tests in other workers run Porters on this host too.
    one, two = PREFIX + secrets.token_hex(4), PREFIX + secrets.token_hex(4)
    ours = LocalRunner(log_dir=tmp_path / "ours", sandbox=SANDBOX, instance=one)
    theirs = LocalRunner(log_dir=tmp_path / "theirs", sandbox=SANDBOX, instance=two)
    requests = [new_request(stub.url), new_request(stub.url)]
    runs = [stub.expect(r, origin, [{"op": "ready"}, {"op": "sleep", "seconds": 60}], hold=False)
            for r in requests]
    mine = await ours.launch(requests[0])
    other = await theirs.launch(requests[1])
    try:
        for run in runs:
            assert await happened(run.agent_ready)
        assert [m.id for m in await ours.list_owned()] == [mine.id]
        assert [m.id for m in await theirs.list_owned()] == [other.id]
        # A restarted Porter knows only its own instance id, and ignores the other's machine.
        stranger = LocalRunner(sandbox=SANDBOX, instance=one)
        await stranger.destroy(other.id)
        assert (await stranger.state(other.id)).state == "exited"
        assert (await theirs.state(other.id)).state == "running"
    finally:
        await ours.destroy(mine.id)
        await theirs.destroy(other.id)
    assert await ended(pid_of(other))


async def test_fly_runners_of_two_porters_sharing_an_app_see_only_their_own(
    stub: StubPorter, origin: Origin
) -> None:
    request = new_request(stub.url)
    stub.expect(request, origin, [{"op": "sleep", "seconds": 60}], hold=True)
    async with fly_served(SLEEP_FOREVER) as (fake, runner):
        machine = await runner.launch(request)
        other = FlyRunner(FlyClient(token=FLY_TOKEN, app=APP, base_url=fake.url),
                          image="registry.fly.io/porter-agent:1", region="ams",
                          instance="someone-else")
        try:
            assert [m.id for m in await runner.list_owned()] == [machine.id]
            assert await other.list_owned() == []
        finally:
            await other.aclose()
            await runner.destroy(machine.id)


async def test_a_launch_run_again_adopts_the_runs_machine_instead_of_starting_another(
    local: LocalRunner, stub: StubPorter, origin: Origin
) -> None:
    """A launch job taken back from a Porter that died mid-launch runs again."""
    request = new_request(stub.url)
    run = stub.expect(request, origin, [{"op": "ready"}, {"op": "sleep", "seconds": 60}],
                      hold=False)
    machine = await local.launch(request)
    assert await happened(run.agent_ready)
    again = await local.launch(request)
    assert again.id == machine.id
    assert [m.id for m in await local.list_owned() if m.run_id == request.run_id] == [machine.id]


async def test_destroying_a_finished_machine_spares_a_new_process_that_got_its_pid(
    local: LocalRunner, tmp_path: Path
) -> None:
    """pid_max can be 32768: an agent's pid comes back soon, maybe as another session leader."""
    # Plays the new holder of the agent's old pid, leading a session of its own as agents do.
    stranger, start = start_stranger(session=True)
    try:
        pidfile = tmp_path / "logs" / "rt-gone.agent"
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        pidfile.write_text(f"{stranger.pid} {start - 1}\n")  # the agent that had it before
        await local.destroy("local-999999-1-rt-gone")
        assert stranger.poll() is None  # not signalled
        assert not pidfile.exists()
    finally:
        stranger.kill()
        stranger.wait()
