"""porter.fly.FlyClient against the fake Machines API on loopback, real subprocesses included."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from porter.errors import ConfigError, FlyError
from porter.fly import FlyClient, Machine, MachineSpec, authorization_header, exit_info
from tests.fakes.fly import FakeFly

APP = "porter-runs"
MACAROON = "fm2_lJPECAAAAAAAAMx1xA==,fm2_lJPEEHBMBmIuX+IU,fo1_c29tZXRoaW5n"
PY = sys.executable
SLEEP_FOREVER = [PY, "-c", "import time; time.sleep(60)"]
EXIT_QUICKLY = [PY, "-c", "pass"]


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
    max_wait_s: float = 60.0,
    http: httpx.AsyncClient | None = None,
    **client_kw: Any,
) -> AsyncIterator[tuple[FakeFly, FlyClient]]:
    fake = FakeFly(token=token, app=APP, command=command, max_wait_s=max_wait_s)
    async with fake.serve():
        client = FlyClient(
            token=client_token or token, app=APP, base_url=fake.url, http=http, **client_kw
        )
        async with client:
            yield fake, client


def deadline(seconds: float = 10.0) -> float:
    return time.monotonic() + seconds


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
    assert Machine.from_api(data) == Machine(
        id="a5c5de9ce64ca12",
        name="aged-wind-2649",
        state="started",
        region="ord",
        instance_id="1RREBN3T5K95DK9IVP4XHTTPEY2",
        metadata={"porter_run_id": "7"},
        exit_code=None,
        oom_killed=False,
        requested_stop=False,
    )
    with pytest.raises(FlyError):
        Machine.from_api({"error": "nope"})


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
    assert caught.value.status == 401
    assert "wrongwrong" not in str(caught.value)
    assert len(fake.requests) == 1  # not retried
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
        assert await client.wait_for(machine.id, "stopped", machine.instance_id, deadline())
        record = fake.machine(machine.id)

    assert fake.requests_to("POST", r"/machines$")[0].json == {
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
    assert record.state == "destroyed"  # auto_destroy after the process exited


async def test_exit_code_is_read_from_the_machines_events() -> None:
    async with served([PY, "-c", "raise SystemExit(3)"]) as (_fake, client):
        machine = await client.create_machine(spec(auto_destroy=False))
        assert await client.wait_for(machine.id, "stopped", machine.instance_id, deadline())
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
        assert await client.wait_for(machine.id, "stopped", machine.instance_id, deadline())
        [done] = await client.list_machines({"porter_run_id": "r1"}, include_deleted=True)
    assert "exit_code" not in fake.machine(machine.id).events[1]["request"]["exit_event"]
    assert (done.state, done.exit_code) == ("destroyed", 0)


async def test_a_validation_error_is_raised_with_flys_message_and_not_retried() -> None:
    async with served() as (fake, client):
        with pytest.raises(FlyError) as caught:
            await client.create_machine(spec(memory_mb=100))
    assert caught.value.status == 422
    assert "invalid memory size 100" in str(caught.value)
    assert "rt-r1" not in str(caught.value)  # never the request body
    assert len(fake.requests_to("POST", r"/machines$")) == 1
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


# -- wait, stop, destroy, crash -------------------------------------------------------------------


async def test_wait_returns_false_on_408_and_wait_for_loops_across_it() -> None:
    exits_soon = [PY, "-c", "import time; time.sleep(0.6)"]
    async with served(exits_soon, max_wait_s=0.2) as (fake, client):
        machine = await client.create_machine(spec(auto_destroy=False))
        assert (
            await client.wait(machine.id, state="stopped", instance_id=machine.instance_id) is False
        )
        assert await client.wait_for(machine.id, "stopped", machine.instance_id, deadline())
    statuses = [r.status for r in fake.requests_to("GET", r"/wait$")]
    assert statuses[0] == 408 and 408 in statuses[1:] and statuses[-1] == 200


async def test_wait_for_gives_up_at_the_deadline() -> None:
    async with served(SLEEP_FOREVER, max_wait_s=0.1) as (fake, client):
        machine = await client.create_machine(spec())
        assert not await client.wait_for(machine.id, "stopped", machine.instance_id, deadline(0.3))
        assert list(fake.live_processes()) == [machine.id]
    assert {r.status for r in fake.requests_to("GET", r"/wait$")} == {408}


async def test_stop_terminates_the_process() -> None:
    async with served(SLEEP_FOREVER) as (fake, client):
        machine = await client.create_machine(spec(auto_destroy=False))
        pid = fake.live_processes()[machine.id]
        await client.stop(machine.id)
        assert await client.wait_for(machine.id, "stopped", machine.instance_id, deadline())
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
        assert await client.wait_for(machine.id, "stopped", machine.instance_id, deadline())
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
        assert await client.wait(machine.id, state="destroyed")
    assert [r.query for r in fake.requests_to("DELETE", "")] == [{"force": "true"}] * 2


async def test_a_crash_is_reported_with_its_signal_and_oom_flag() -> None:
    async with served(SLEEP_FOREVER) as (fake, client):
        machine = await client.create_machine(spec())
        fake.kill_process(machine.id, signal.SIGKILL, oom=True)
        assert await client.wait_for(machine.id, "destroyed", None, deadline())
        [gone] = await client.list_machines({"porter_run_id": "r1"}, include_deleted=True)
    assert (gone.exit_code, gone.oom_killed, gone.requested_stop) == (137, True, False)


async def test_leaving_the_fake_kills_its_processes() -> None:
    async with served(SLEEP_FOREVER) as (fake, client):
        machine = await client.create_machine(spec())
        pid = fake.live_processes()[machine.id]
    assert not _alive(pid)
    assert fake.live_processes() == {}


# -- retries and the no-duplicate rule ------------------------------------------------------------


async def test_429_is_retried_honouring_retry_after() -> None:
    t = FakeTime()
    async with served(EXIT_QUICKLY, sleep=t.sleep, clock=t.clock) as (fake, client):
        fake.fail("POST", r"/machines$", 429, times=2, headers={"Retry-After": "2"})
        machine = await client.create_machine(spec())
    assert t.sleeps == [2.0, 2.0]
    assert [r.status for r in fake.requests_to("POST", r"/machines$")] == [429, 429, 200]
    assert [m.id for m in fake.machines] == [machine.id]
    assert fake.requests_to("GET", r"/machines$") == []  # a 429 did nothing: no lookup needed


async def test_5xx_backs_off_with_capped_full_jitter_then_gives_up() -> None:
    t = FakeTime()
    async with served(sleep=t.sleep, clock=t.clock, rng=random.Random(7), max_attempts=4) as (
        fake,
        client,
    ):
        fake.fail("GET", r"/machines/[0-9a-f]+$", 503, times=10)
        with pytest.raises(FlyError) as caught:
            await client.get_machine("0123456789abcd")
    assert caught.value.retryable and caught.value.status == 503
    assert len(t.sleeps) == 3
    assert all(0 <= s <= cap for s, cap in zip(t.sleeps, [0.5, 1.0, 2.0], strict=True))
    assert len(set(t.sleeps)) == 3  # jittered, not fixed
    assert len(fake.requests) == 4


async def test_a_500_after_the_machine_was_created_adopts_it() -> None:
    t = FakeTime()
    async with served(sleep=t.sleep, clock=t.clock) as (fake, client):
        fake.fail_after_effect("POST", r"/machines$", 500)
        machine = await client.create_machine(spec())
        assert [m.id for m in fake.machines] == [machine.id]
        assert len(fake.requests_to("POST", r"/machines$")) == 1
        assert fake.requests_to("GET", r"/machines$")[0].query == {
            "metadata.porter_run_id": "r1",
            "include_deleted": "true",
        }
        assert list(fake.live_processes()) == [machine.id]


async def test_a_timeout_after_the_machine_was_created_adopts_it() -> None:
    t = FakeTime()
    http = httpx.AsyncClient(timeout=0.3)
    async with served(sleep=t.sleep, clock=t.clock, http=http) as (fake, client):
        fake.fail_after_effect("POST", r"/machines$", hang=True)
        machine = await client.create_machine(spec())
        assert [m.id for m in fake.machines] == [machine.id]
        assert len(fake.requests_to("POST", r"/machines$")) == 1
    await http.aclose()


async def test_name_taken_adopts_the_existing_machine() -> None:
    async with served() as (fake, client):
        first = await client.create_machine(spec())
        again = await client.create_machine(spec())  # e.g. Porter restarted mid-dispatch
    assert again.id == first.id
    assert [r.status for r in fake.requests_to("POST", r"/machines$")] == [200, 422]
    assert len(fake.machines) == 1


async def test_name_taken_by_another_run_is_an_error() -> None:
    async with served() as (fake, client):
        await client.create_machine(spec("r1"))
        with pytest.raises(FlyError) as caught:
            await client.create_machine(spec("r2", name="porter-run-r1"))
    assert caught.value.status == 422 and "already exists" in str(caught.value)
    assert len(fake.machines) == 1


# -- rate limits --------------------------------------------------------------------------------


async def test_a_burst_of_creates_queues_instead_of_failing() -> None:
    t = FakeTime(frozen=True)
    async with served(EXIT_QUICKLY, sleep=t.sleep, clock=t.clock) as (fake, client):
        machines = await asyncio.gather(*(client.create_machine(spec(f"r{i}")) for i in range(5)))
    # Burst of 3, then one per second, in arrival order (A.6).
    assert t.sleeps == [1.0, 2.0]
    assert len({m.id for m in machines}) == 5
    assert [r.status for r in fake.requests_to("POST", r"/machines$")] == [200] * 5


async def test_get_has_its_own_faster_bucket() -> None:
    t = FakeTime(frozen=True)
    async with served(sleep=t.sleep, clock=t.clock) as (_fake, client):
        machine = await client.create_machine(spec())
        for _ in range(12):
            assert await client.get_machine(machine.id) is not None
    assert t.sleeps == pytest.approx([0.2, 0.4])  # burst of 10, then 5 per second


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_a_read_timeout_is_retried() -> None:
    t = FakeTime()
    http = httpx.AsyncClient(timeout=0.2)
    async with served(sleep=t.sleep, clock=t.clock, http=http, rng=random.Random(1)) as (
        fake,
        client,
    ):
        fake.delay("GET", r"/machines$", 1.0)
        assert await client.list_machines() == []
    await http.aclose()
    assert len(t.sleeps) == 1 and 0 <= t.sleeps[0] <= 0.5
    assert len(fake.requests_to("GET", r"/machines$")) == 2
