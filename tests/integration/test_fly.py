"""The Fly Machines client, FlyRunner and the jobs that retry them, against the fake Machines API
on loopback (real subprocesses as machines), a real store and the real job runner."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from porter.errors import ConfigError, FlyError
from porter.fly import (
    FlyClient,
    FlyMachine,
    FlyRetryLater,
    MachineNameTaken,
    MachineSpec,
    authorization_header,
    exit_info,
)
from porter.fly.shapes import retry_after
from porter.jobs import Backoff, JobRunner
from porter.launcher import DESTROY, LAUNCH, Launcher
from porter.models import AgentRun, Job, Task
from porter.runners import FlyRunner, LaunchRequest
from porter.settings import Settings
from porter.states import TaskState
from porter.store import Store
from porter.watchdog import EXIT_GRACE, Watchdog
from tests.fakes.clock import Clock
from tests.fakes.fly import FakeFly
from tests.fakes.world import World, open_world

APP = "porter-runs"
MACAROON = "fm2_lJPECAAAAAAAAMx1xA==,fm2_lJPEEHBMBmIuX+IU,fo1_c29tZXRoaW5n"
PY = sys.executable
SLEEP_FOREVER = [PY, "-c", "import time; time.sleep(60)"]
EXIT_QUICKLY = [PY, "-c", "pass"]
CREATE = r"/machines$"  # POST creates, GET lists
ONE_MACHINE = r"/machines/[0-9a-f]+$"
SETTINGS = Settings()


class FakeTime:
    """Injected clock + sleep: a sleep records its delay and (unless frozen) advances the clock.

    A frozen clock shows queue positions: every caller reserves its slot at the same instant.
    """

    def __init__(self, *, frozen: bool = False) -> None:
        self.now = 0.0
        self.frozen = frozen
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if not self.frozen:
            self.now += seconds
        await asyncio.sleep(0)


def spec(run_id: str = "r1", **overrides: Any) -> MachineSpec:
    fields: dict[str, Any] = {
        "image": "registry.fly.io/porter-agent:1.0",
        "env": {
            "PORTER_URL": "http://127.0.0.1:9",
            "PORTER_RUN_ID": run_id,
            "PORTER_RUN_TOKEN": f"rt-{run_id}",
        },
        "metadata": {"porter_run_id": run_id},
        "name": f"porter-run-{run_id}",
    }
    fields.update(overrides)
    return MachineSpec(**fields)


@contextlib.asynccontextmanager
async def served(
    command: Any = SLEEP_FOREVER,
    *,
    token: str = MACAROON,
    client_token: str | None = None,
    http: httpx.AsyncClient | None = None,
    **client_kw: Any,
) -> AsyncIterator[tuple[FakeFly, FlyClient]]:
    fake = FakeFly(token=token, app=APP, command=command)
    async with fake.serve():
        client = FlyClient(
            token=client_token or token, app=APP, base_url=fake.url, http=http, **client_kw
        )
        async with client:
            yield fake, client


def runner_of(fake: FakeFly, **kw: Any) -> FlyRunner:
    t = FakeTime()  # the rate limiter's waits pass at once
    client = FlyClient(token=MACAROON, app=APP, base_url=fake.url, http=kw.pop("http", None),
                       sleep=t.sleep, clock=t.clock)
    return FlyRunner(client, image="registry.fly.io/porter-agent:1", region="ams", **kw)


def launch_request(run_id: str = "r1") -> LaunchRequest:
    return LaunchRequest(run_id=run_id, task_id=7, token=f"rt-{run_id}",
                         porter_url="http://127.0.0.1:9")  # fmt: skip


# -- pure parts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "header"),
    [
        ("fm2_abc", "FlyV1 fm2_abc"),
        (MACAROON, f"FlyV1 {MACAROON}"),  # a bundle stays whole
        (f"FlyV1 {MACAROON}", f"FlyV1 {MACAROON}"),  # as printed by `fly tokens create`
        (f"Bearer FlyV1 {MACAROON}", f"FlyV1 {MACAROON}"),  # never "Bearer FlyV1 …"
        (f"Bearer {MACAROON}", f"FlyV1 {MACAROON}"),
        ("FlyV1 fo1_only", "FlyV1 fo1_only"),
        ("fm1r_legacy", "FlyV1 fm1r_legacy"),
        ("m2.abcdef", "FlyV1 m2.abcdef"),
        ("  plainToken123\n", "Bearer plainToken123"),
        ("Bearer plainToken123", "Bearer plainToken123"),
    ],
)
def test_authorization_header(token: str, header: str) -> None:
    assert authorization_header(token) == header


def test_authorization_header_rejects_an_empty_token() -> None:
    with pytest.raises(ConfigError):
        authorization_header("Bearer  ")


def _exit(request: dict[str, Any], ts: int = 2) -> dict[str, Any]:
    return {"type": "exit", "status": "stopped", "source": "flyd", "timestamp": ts,
            "request": request}  # fmt: skip


def test_exit_info_from_documented_events() -> None:
    start = {"type": "start", "status": "started", "source": "flyd", "timestamp": 1}
    assert exit_info([start]) == (None, False, False)
    assert exit_info(None) == (None, False, False)
    # MonitorEvent wins over the top-level exit_event, as in fly-go's GetExitCode.
    both = _exit({"exit_event": {"exit_code": 1}, "MonitorEvent": {"exit_event": {"exit_code": 3}}})
    assert exit_info([both, start]).exit_code == 3
    assert exit_info([_exit({"exit_event": {"exit_code": 4}})]).exit_code == 4
    # exit_code is omitempty on the wire: absent means 0.
    assert exit_info([_exit({"exit_event": {"requested_stop": True}})]) == (0, False, True)
    oom = _exit({"MonitorEvent": {"exit_event": {"exit_code": 137, "oom_killed": True}}}, ts=9)
    older = _exit({"exit_event": {"exit_code": 5}}, ts=3)
    assert exit_info([older, oom, start]) == (137, True, False)  # newest by timestamp


def test_machine_from_documented_get_response() -> None:
    data = {
        "id": "a5c5de9ce64ca12",
        "name": "aged-wind-2649",
        "state": "started",
        "region": "ord",
        "instance_id": "1RREBN3T5K95DK9IVP4XHTTPEY2",
        "config": {"image": "x", "metadata": {"porter_run_id": "7"}},
        "events": [{"type": "start", "status": "started", "source": "flyd", "timestamp": 2}],
    }
    assert FlyMachine.from_api(data) == FlyMachine(
        id="a5c5de9ce64ca12",
        name="aged-wind-2649",
        state="started",
        region="ord",
        metadata={"porter_run_id": "7"},
        exit_code=None,
        oom_killed=False,
        requested_stop=False,
    )
    with pytest.raises(FlyError):
        FlyMachine.from_api({"error": "nope"})


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("2", 2.0), ("0.5", 0.5), ("3600", 60.0), (None, None), ("-1", None), ("nan", None),
     ("Wed, 21 Oct 2015 07:28:00 GMT", None)],
)  # fmt: skip
def test_retry_after_is_seconds_capped_at_a_minute(header: str | None, seconds: float) -> None:
    assert retry_after(header) == seconds


# -- auth ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fly_token", "client_token", "scheme"),
    [
        (MACAROON, MACAROON, "FlyV1"),
        (f"FlyV1 {MACAROON}", f"FlyV1 {MACAROON}", "FlyV1"),
        ("m2.abcdef", "Bearer m2.abcdef", "FlyV1"),
        ("plainToken123", "plainToken123", "Bearer"),
    ],
)
async def test_each_token_form_is_accepted(fly_token: str, client_token: str, scheme: str) -> None:
    async with served(token=fly_token, client_token=client_token) as (fake, client):
        assert await client.list_machines() == []
    assert [r.auth_scheme for r in fake.requests] == [scheme]
    assert all("authorization" not in r.headers for r in fake.requests)


async def test_wrong_token_is_a_401_that_does_not_echo_the_token() -> None:
    async with served(client_token="fm2_wrongwrongwrong") as (fake, client):
        with pytest.raises(FlyError) as caught:
            await client.create_machine(spec())
    assert caught.value.status == 401 and not caught.value.retryable
    assert "wrongwrong" not in str(caught.value)
    assert len(fake.requests) == 1
    assert fake.machines == []


async def test_fake_refuses_a_macaroon_sent_as_bearer() -> None:
    fake = FakeFly(token=MACAROON, app=APP)
    async with fake.serve(), httpx.AsyncClient(base_url=fake.url) as http:
        path = f"/v1/apps/{APP}/machines"
        assert (
            await http.get(path, headers={"Authorization": f"Bearer {MACAROON}"})
        ).status_code == 401
        assert (
            await http.get(path, headers={"Authorization": f"FlyV1 {MACAROON}"})
        ).status_code == 200


# -- create body, environment, exit codes --------------------------------------------------------


async def test_create_sends_the_documented_body_and_the_machine_sees_only_its_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PORTER_FLY_API_TOKEN", "must-not-leak")
    env_binary = shutil.which("env")
    assert env_binary is not None
    async with served([env_binary]) as (fake, client):
        machine = await client.create_machine(spec("r1", region="ams", cpus=2, memory_mb=4096))
        await fake.wait_for_state(machine.id, "destroyed")  # auto_destroy after it exited
        record = fake.machine(machine.id)

    assert fake.requests_to("POST", CREATE)[0].json == {
        "name": "porter-run-r1",
        "region": "ams",
        "config": {
            "image": "registry.fly.io/porter-agent:1.0",
            "env": {
                "PORTER_URL": "http://127.0.0.1:9",
                "PORTER_RUN_ID": "r1",
                "PORTER_RUN_TOKEN": "rt-r1",
            },
            "guest": {"cpu_kind": "shared", "cpus": 2, "memory_mb": 4096},
            "auto_destroy": True,
            "restart": {"policy": "no"},
            "metadata": {"porter_run_id": "r1"},
        },
    }
    seen = dict(line.split("=", 1) for line in record.output.decode().splitlines())
    assert seen.pop("PATH")
    assert seen == {"PORTER_URL": "http://127.0.0.1:9", "PORTER_RUN_ID": "r1",
                    "PORTER_RUN_TOKEN": "rt-r1"}  # fmt: skip
    assert (machine.name, machine.region, machine.state) == ("porter-run-r1", "ams", "created")
    assert machine.metadata == {"porter_run_id": "r1"}


async def test_exit_code_is_read_from_the_machines_events() -> None:
    async with served([PY, "-c", "raise SystemExit(3)"]) as (fake, client):
        machine = await client.create_machine(spec(auto_destroy=False))
        await fake.wait_for_state(machine.id, "stopped")
        stopped = await client.get_machine(machine.id)
        assert stopped is not None
        assert (stopped.state, stopped.exit_code, stopped.requested_stop) == ("stopped", 3, False)
        await client.destroy(machine.id)
        assert await client.get_machine(machine.id) is None
        [gone] = await client.list_machines({"porter_run_id": "r1"}, include_deleted=True)
        assert (gone.state, gone.exit_code) == ("destroyed", 3)


async def test_a_clean_exit_reads_as_zero_even_though_fly_omits_it() -> None:
    async with served(EXIT_QUICKLY) as (fake, client):
        machine = await client.create_machine(spec())
        await fake.wait_for_state(machine.id, "destroyed")
        [done] = await client.list_machines({"porter_run_id": "r1"}, include_deleted=True)
    assert "exit_code" not in fake.machine(machine.id).events[1]["request"]["exit_event"]
    assert (done.state, done.exit_code) == ("destroyed", 0)


async def test_a_validation_error_is_raised_with_flys_message_and_not_retryable() -> None:
    async with served() as (fake, client):
        with pytest.raises(FlyError) as caught:
            await client.create_machine(spec(memory_mb=100))
    assert caught.value.status == 422 and not caught.value.retryable
    assert "invalid memory size 100" in str(caught.value)
    assert "rt-r1" not in str(caught.value)  # never the request body
    assert len(fake.requests_to("POST", CREATE)) == 1
    assert fake.machines == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"region": "iad", "config": {}}, 422),
        ({"config": {"image": "x"}}, 422),
        ({"region": "iad", "config": {"image": "x", "env": {"A": 1}}}, 422),
        ({"region": "iad", "config": {"image": "x", "restart": {"policy": "on-fail"}}}, 422),
        ([], 400),
        ({"region": "iad", "config": {"image": "x", "restart": {"policy": "no"}}}, 200),
    ],
)
async def test_fake_validates_create_bodies(body: Any, status: int) -> None:
    fake = FakeFly(token="plain", app=APP, command=EXIT_QUICKLY)
    async with fake.serve(), httpx.AsyncClient(base_url=fake.url) as http:
        resp = await http.post(
            f"/v1/apps/{APP}/machines", json=body, headers={"Authorization": "Bearer plain"}
        )
    assert resp.status_code == status
    assert status == 200 or "error" in resp.json()


async def test_list_filters_by_metadata() -> None:
    async with served(EXIT_QUICKLY) as (_fake, client):
        a = await client.create_machine(spec("a", auto_destroy=False))
        await client.create_machine(spec("b", auto_destroy=False))
        assert [m.id for m in await client.list_machines({"porter_run_id": "a"})] == [a.id]
        assert len(await client.list_machines()) == 2


# -- stop, destroy, crash -------------------------------------------------------------------------


async def test_stop_terminates_the_process() -> None:
    async with served(SLEEP_FOREVER) as (fake, client):
        machine = await client.create_machine(spec(auto_destroy=False))
        pid = fake.live_processes()[machine.id]
        await client.stop(machine.id)
        await fake.wait_for_state(machine.id, "stopped")
        stopped = await client.get_machine(machine.id)
    assert stopped is not None
    assert (stopped.requested_stop, stopped.exit_code) == (True, 128 + signal.SIGTERM)
    assert fake.requests_to("POST", r"/stop$")[0].json == {"signal": "SIGTERM", "timeout": "10s"}
    assert fake.live_processes() == {}
    assert not _alive(pid)


async def test_stop_kills_a_process_that_ignores_sigterm_after_the_timeout() -> None:
    stubborn = [PY, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(60)"]  # fmt: skip
    async with served(stubborn) as (fake, client):
        machine = await client.create_machine(spec())
        await fake.wait_for_output(machine.id, b"ready")
        await client.stop(machine.id, timeout="200ms")
        await fake.wait_for_state(machine.id, "destroyed")
        [gone] = await client.list_machines({"porter_run_id": "r1"}, include_deleted=True)
    assert (gone.exit_code, gone.requested_stop) == (128 + signal.SIGKILL, True)


async def test_destroy_kills_the_process_and_is_idempotent() -> None:
    async with served(SLEEP_FOREVER) as (fake, client):
        machine = await client.create_machine(spec(auto_destroy=False))
        pid = fake.live_processes()[machine.id]
        await client.destroy(machine.id)
        assert fake.live_processes() == {}
        assert not _alive(pid)
        assert fake.machine(machine.id).state == "destroyed"
        assert await client.get_machine(machine.id) is None
        await client.destroy(machine.id)  # 404: already destroyed counts as done
        await client.stop(machine.id)  # and as stopped
    assert [r.query for r in fake.requests_to("DELETE", "")] == [{"force": "true"}] * 2


async def test_a_crash_is_reported_with_its_signal_and_oom_flag() -> None:
    async with served(SLEEP_FOREVER) as (fake, client):
        machine = await client.create_machine(spec())
        fake.kill_process(machine.id, signal.SIGKILL, oom=True)
        await fake.wait_for_state(machine.id, "destroyed")
        [gone] = await client.list_machines({"porter_run_id": "r1"}, include_deleted=True)
    assert (gone.exit_code, gone.oom_killed, gone.requested_stop) == (137, True, False)


async def test_leaving_the_fake_kills_its_processes() -> None:
    async with served(SLEEP_FOREVER) as (fake, client):
        machine = await client.create_machine(spec())
        pid = fake.live_processes()[machine.id]
    assert not _alive(pid)
    assert fake.live_processes() == {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# -- one attempt a call: the failure says whether another may help -------------------------------


async def test_a_429_is_one_attempt_that_says_how_long_to_wait() -> None:
    async with served(EXIT_QUICKLY) as (fake, client):
        fake.fail("POST", CREATE, 429, headers={"Retry-After": "2"})
        with pytest.raises(FlyRetryLater) as caught:
            await client.create_machine(spec())
    assert (caught.value.status, caught.value.retryable, caught.value.retry_after) == (
        429, True, 2.0)  # fmt: skip
    assert [r.status for r in fake.requests] == [429]
    assert fake.machines == []


@pytest.mark.parametrize("status", [408, 429, 500, 503])
async def test_a_5xx_or_timeout_answer_is_one_attempt_marked_retryable(status: int) -> None:
    async with served() as (fake, client):
        fake.fail("GET", ONE_MACHINE, status, times=10)
        with pytest.raises(FlyError) as caught:
            await client.get_machine("0123456789abcd")
    assert (caught.value.status, caught.value.retryable) == (status, True)
    assert not isinstance(caught.value, FlyRetryLater)  # no Retry-After: the jobs' own backoff
    assert len(fake.requests) == 1


async def test_no_answer_is_one_attempt_marked_retryable() -> None:
    http = httpx.AsyncClient(timeout=0.2)
    async with served(http=http) as (fake, client):
        fake.delay("GET", CREATE, 1.0)
        with pytest.raises(FlyError) as caught:
            await client.list_machines()
    await http.aclose()
    assert (caught.value.status, caught.value.retryable) == (None, True)
    assert "no answer (ReadTimeout)" in str(caught.value)
    assert len(fake.requests_to("GET", CREATE)) == 1


async def test_a_taken_name_is_its_own_error_and_not_retryable() -> None:
    async with served() as (fake, client):
        await client.create_machine(spec("r1"))
        with pytest.raises(MachineNameTaken) as caught:
            await client.create_machine(spec("r2", name="porter-run-r1"))
    assert caught.value.status == 422 and not caught.value.retryable
    assert "already exists" in str(caught.value)
    assert len(fake.machines) == 1


# -- rate limits --------------------------------------------------------------------------------


async def test_a_burst_of_creates_queues_instead_of_failing() -> None:
    t = FakeTime(frozen=True)
    async with served(EXIT_QUICKLY, sleep=t.sleep, clock=t.clock) as (fake, client):
        machines = await asyncio.gather(*(client.create_machine(spec(f"r{i}")) for i in range(5)))
    # Burst of 3, then one per second, in arrival order (docs/platform-notes.md §A.6).
    assert t.sleeps == [1.0, 2.0]
    assert len({m.id for m in machines}) == 5
    assert [r.status for r in fake.requests_to("POST", CREATE)] == [200] * 5


async def test_get_has_its_own_faster_bucket() -> None:
    t = FakeTime(frozen=True)
    async with served(sleep=t.sleep, clock=t.clock) as (_fake, client):
        machine = await client.create_machine(spec())
        for _ in range(12):
            assert await client.get_machine(machine.id) is not None
    assert t.sleeps == pytest.approx([0.2, 0.4])  # burst of 10, then 5 per second


# -- FlyRunner: a launch never makes a run's second machine; errors are not "gone" ---------------


async def test_a_launch_adopts_the_machine_its_run_already_has() -> None:
    fake = FakeFly(token=MACAROON, app=APP, command=SLEEP_FOREVER)
    async with fake.serve():
        first = runner_of(fake)
        launched = await first.launch(launch_request())
        again = runner_of(fake)  # e.g. Porter restarted before the launch was recorded
        adopted = await again.launch(launch_request())
        await first.aclose()
        await again.aclose()
    assert adopted.id == launched.id and adopted.run_id == "r1"
    assert len(fake.machines) == 1
    assert [r.status for r in fake.requests_to("POST", CREATE)] == [200]
    assert fake.requests_to("GET", CREATE)[0].query == {
        "metadata.porter_run_id": "r1", "include_deleted": "true"}  # fmt: skip


async def test_a_taken_name_after_a_look_up_that_missed_adopts_the_runs_machine() -> None:
    fake = FakeFly(token=MACAROON, app=APP, command=SLEEP_FOREVER)
    async with fake.serve():
        runner = runner_of(fake)
        launched = await runner.launch(launch_request())
        fake.fail("GET", CREATE, 200, body=[])  # the list does not show it yet
        adopted = await runner.launch(launch_request())
        fake.fail("GET", CREATE, 200, body=[], times=2)
        with pytest.raises(FlyError) as caught:  # still not listed: later, not never
            await runner.launch(launch_request())
        await runner.aclose()
    assert adopted.id == launched.id
    assert caught.value.retryable and caught.value.status == 422
    assert [r.status for r in fake.requests_to("POST", CREATE)] == [200, 422, 422]
    assert len(fake.machines) == 1


async def test_a_fly_error_on_state_is_raised_never_read_as_gone() -> None:
    fake = FakeFly(token=MACAROON, app=APP, command=SLEEP_FOREVER)
    async with fake.serve():
        runner = runner_of(fake)
        machine = await runner.launch(launch_request())
        fake.fail("GET", ONE_MACHINE, 503)
        with pytest.raises(FlyError):
            await runner.state(machine.id)
        assert (await runner.state(machine.id)).state == "running"
        await runner.destroy(machine.id)
        fake.fail("GET", CREATE, 502)  # gone from GET; the deleted list is down
        with pytest.raises(FlyError):
            await runner.state(machine.id)
        assert (await runner.state(machine.id)).state == "exited"
        await runner.aclose()


# -- jobs: the one retry layer --------------------------------------------------------------------


@dataclass
class Launches:
    """The shared world (tests/fakes/world.py) with a FlyRunner on the fake Machines API as its
    runner; its launch jobs run on a job runner of their own (a seeded jitter, a few attempts)."""

    world: World
    fake: FakeFly
    runner: FlyRunner
    jobs: JobRunner

    @property
    def store(self) -> Store:
        return self.world.store

    @property
    def clock(self) -> Clock:
        return self.world.clock

    @property
    def launcher(self) -> Launcher:
        return self.world.runtime.launcher

    async def started(self) -> AgentRun:
        """A task from a real webhook payload, authorized and started: its launch job queued."""
        task = await self.world.record("issue_comment", self.world.payload("@porter fix it"))
        await self.store.update_task(task.id, authorized_at=self.clock.now,
                                     base_ref="main", base_sha="a" * 40)
        await self.launcher.start(await self.world.task(task.id))
        return await self.world.run(task.id)

    async def machine_of(self, run: AgentRun) -> str | None:
        """The machine the launch job recorded for the run."""
        now = await self.store.get_run(run.id)
        assert now is not None
        return now.machine_id

    async def run_jobs(self) -> int:
        return await self.jobs.run_due(self.clock.now)

    async def job(self, kind: str = LAUNCH) -> Job:
        [job] = await self.store.jobs(kind=kind)
        return job

    async def retry_due(self, kind: str = LAUNCH) -> None:
        """Move the clock to when the job runner said it would try again, and run it."""
        self.clock.now = (await self.job(kind)).run_after
        assert await self.run_jobs() == 1

    async def task_of(self, run: AgentRun) -> Task:
        task = await self.store.get_task(run.task_id)
        assert task is not None
        return task


@contextlib.asynccontextmanager
async def launches(
    tmp_path: Path, command: list[str] = SLEEP_FOREVER, *, attempts: int = 8, **runner_kw: Any
) -> AsyncIterator[Launches]:
    fake = FakeFly(token=MACAROON, app=APP, command=command)
    async with fake.serve():
        runner = runner_of(fake, **runner_kw)
        async with open_world(tmp_path, github=False, runner=runner) as world:
            jobs = JobRunner(world.store, world.runtime.launcher.kinds(), clock=world.clock,
                             rng=random.Random(3),
                             backoff=Backoff(max_attempts=attempts))
            yield Launches(world, fake, runner, jobs)


async def test_a_launch_job_that_meets_a_503_tries_again_and_makes_one_machine(
    tmp_path: Path,
) -> None:
    async with launches(tmp_path) as w:
        run = await w.started()
        w.fake.fail("POST", CREATE, 503)
        assert await w.run_jobs() == 1
        job = await w.job()
        assert (job.state, job.attempts) == ("pending", 1)
        assert "create machine: HTTP 503" in (job.last_error or "")
        assert job.run_after > w.clock.now and w.fake.machines == []

        await w.retry_due()
        [machine] = w.fake.machines
        assert await w.machine_of(run) == machine.id
        assert (await w.job()).state == "done"
    # One HTTP try per job attempt: the client did not retry inside.
    assert [r.status for r in w.fake.requests_to("POST", CREATE)] == [503, 200]


async def test_a_launch_job_told_to_wait_by_a_429_waits_that_long(tmp_path: Path) -> None:
    async with launches(tmp_path) as w:
        run = await w.started()
        w.fake.fail("POST", CREATE, 429, headers={"Retry-After": "7"})
        start = w.clock.now
        assert await w.run_jobs() == 1
        assert (await w.job()).run_after == start + 7

        w.clock.now = start + 6.9
        assert await w.run_jobs() == 0
        assert w.fake.machines == []
        w.clock.now = start + 7
        assert await w.run_jobs() == 1
        [machine] = w.fake.machines
        assert await w.machine_of(run) == machine.id
    assert [r.status for r in w.fake.requests_to("POST", CREATE)] == [429, 200]


@pytest.mark.parametrize("lost", ["500 after the effect", "no answer", "exited meanwhile"])
async def test_a_create_whose_answer_is_lost_leaves_exactly_one_machine(
    tmp_path: Path, lost: str
) -> None:
    command = EXIT_QUICKLY if lost == "exited meanwhile" else SLEEP_FOREVER
    http = httpx.AsyncClient(timeout=0.5)
    async with launches(tmp_path, command, http=http) as w:
        run = await w.started()
        w.fake.fail_after_effect("POST", CREATE, 500, hang=lost == "no answer")
        assert await w.run_jobs() == 1
        [made] = w.fake.machines  # Fly made it; Porter does not know
        job = await w.job()
        assert job.state == "pending" and await w.machine_of(run) is None
        if lost == "exited meanwhile":  # and auto_destroy removed it before the retry
            await w.fake.wait_for_state(made.id, "destroyed")

        await w.retry_due()
        assert [m.id for m in w.fake.machines] == [made.id]
        assert await w.machine_of(run) == made.id
        assert len(w.fake.requests_to("POST", CREATE)) == 1
        if lost == "exited meanwhile":  # the watchdog will see its exit, not a silent run
            assert (await w.runner.state(made.id)).exit_code == 0
    await http.aclose()


async def test_a_launch_fly_refuses_fails_the_task_at_once(tmp_path: Path) -> None:
    async with launches(tmp_path, memory_mb=100) as w:
        run = await w.started()
        assert await w.run_jobs() == 1
        job = await w.job()
        task = await w.task_of(run)
    assert (job.state, job.attempts) == ("given_up", 1)
    assert (task.state, task.stage) == (TaskState.FAILED, "dispatch")
    assert "invalid memory size 100" in (task.reason or "")
    assert len(w.fake.requests_to("POST", CREATE)) == 1


async def test_a_launch_that_keeps_meeting_5xx_gives_up_after_the_jobs_attempts(
    tmp_path: Path,
) -> None:
    async with launches(tmp_path, attempts=3) as w:
        run = await w.started()
        w.fake.fail("POST", CREATE, 502, times=10)
        assert await w.run_jobs() == 1
        for _ in range(2):
            await w.retry_due()
        task = await w.task_of(run)
    assert (task.state, task.stage) == (TaskState.FAILED, "dispatch")
    assert "gave up after 3 attempts" in (task.reason or "")
    assert [r.status for r in w.fake.requests_to("POST", CREATE)] == [502] * 3
    assert w.fake.machines == []


async def test_a_destroy_job_tries_a_503_again_and_a_404_counts_as_done(tmp_path: Path) -> None:
    async with launches(tmp_path) as w:
        run = await w.started()
        await w.run_jobs()
        machine_id = await w.machine_of(run)
        assert machine_id is not None
        w.fake.fail("DELETE", ONE_MACHINE, 503)
        await w.launcher.release(run.id, machine_id, task_id=run.task_id)
        assert await w.run_jobs() == 1
        assert (await w.job(DESTROY)).state == "pending"
        assert list(w.fake.live_processes()) == [machine_id]

        await w.retry_due(DESTROY)
        assert w.fake.live_processes() == {}
        await w.launcher.release(run.id, machine_id, task_id=run.task_id)  # re-armed
        assert await w.run_jobs() == 1
        assert (await w.job(DESTROY)).state == "done"
    assert [r.status for r in w.fake.requests_to("DELETE", "")] == [503, 200, 404]


async def test_the_watchdog_reads_a_fly_outage_as_unknown_not_as_gone(tmp_path: Path) -> None:
    async with launches(tmp_path) as w:
        run = await w.started()
        await w.run_jobs()
        watchdog = Watchdog(store=w.store, runner=w.runner, launcher=w.launcher,
                            settings=SETTINGS, clock=w.clock)
        w.fake.fail("GET", ONE_MACHINE, 503, times=10)
        await watchdog.tick(w.clock.now)
        w.clock.now += EXIT_GRACE + 1  # long past the grace a gone machine would get
        await watchdog.tick(w.clock.now)
        assert (await w.task_of(run)).state is TaskState.STARTING
        assert await w.store.jobs(kind=DESTROY) == []
        assert len(w.fake.requests_to("GET", ONE_MACHINE)) == 2
