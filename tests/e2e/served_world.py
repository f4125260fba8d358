"""A loopback world with real `porter serve` processes in it, as bench/latency.py measures it and
the replica tests (tests/e2e/test_replicas.py) run it: the fake GitHub backed by real git (a
thread of this process), the fake Fly Machines API (this event loop) starting
tests/fakes/callback_machine.py as each machine, and one or more `porter serve` processes with the
fly runner pointed at both. Several replicas share one database and sit behind a load balancer
(tests/fakes/balancer.py), which is the public URL machines call back on.

Comments are delivered as GitHub delivers them: the comment is made on the fake first, then its
signed `issue_comment` webhook is POSTed to a replica over HTTP. Every timestamp is epoch seconds
taken where the thing happened: just before a delivery is POSTed, the fakes as each request
arrives (fake GitHub `Call.time`, fake Fly `RecordedRequest.at`), the machine once Porter
accepted its `complete`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.latency_stats import creates_content
from porter.crypto import KeyRing
from porter.status import marker
from tests.conftest import WEBHOOK_SECRET, comment_payload, signed
from tests.e2e.server import free_port
from tests.fakes.balancer import Balancer
from tests.fakes.fly import FakeFly, MachineRecord
from tests.fakes.github import FakeGitHub
from tests.fakes.world import app_key
from tests.loopback import served

FLY_TOKEN = "fm2_lJPECAAAAAAAAMQ9bench"
FLY_APP = "porter-bench"
ADMIN_TOKEN = "bench-admin-token"
MACHINE = Path(__file__).resolve().parent.parent / "fakes" / "callback_machine.py"
REQUESTER = "alice"
README = b"# Hello\n\nTeh greeting project.\n"
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out", "rejected"}
BASELINE_INSTALLATION, BASELINE_REPO = 100, "baseline/app"
_REACTION = re.compile(r"/repos/([^/]+/[^/]+)/issues/comments/(\d+)/reactions")
_COMMENT = re.compile(r"/repos/([^/]+/[^/]+)/issues/(\d+)/comments")
_PULLS = re.compile(r"/repos/([^/]+/[^/]+)/pulls")
_HEAD = re.compile(r"porter/(\d+)(-|$)")


@dataclass
class Delivery:
    """One comment made on the fake GitHub, its webhook signed and ready to POST."""

    installation: int
    repo: str
    number: int
    comment_id: int
    raw: bytes
    headers: dict[str, str]


@dataclass
class Sample:
    delivery: Delivery
    delivered: float  # just before the POST
    answered: float  # Porter's 202 came back
    task_id: int


@dataclass
class Seen:
    """When each thing first happened, per task id (epoch seconds)."""

    eyes: dict[int, float] = field(default_factory=dict)
    status: dict[int, float] = field(default_factory=dict)
    create: dict[int, float] = field(default_factory=dict)
    accepted: dict[int, float] = field(default_factory=dict)
    pr: dict[int, float] = field(default_factory=dict)
    check: dict[int, float] = field(default_factory=dict)  # its check run completed
    creations: dict[int, list[float]] = field(default_factory=dict)  # installation → times
    machine_errors: dict[int, str] = field(default_factory=dict)  # task id → last output line
    retries: list[str] = field(default_factory=list)  # "spec HTTP 502", one per retried call


@dataclass
class Replica:
    """One `porter serve` process of the world."""

    index: int
    process: subprocess.Popen[bytes]
    client: httpx.AsyncClient
    url: str

    @property
    def up(self) -> bool:
        return self.process.poll() is None


class World:
    def __init__(self, workdir: Path, *, installations: int, issues: int,
                 env: Mapping[str, str] | None = None, porter: Path | None = None,
                 replicas: int = 1, database: str | None = None) -> None:
        self.workdir = workdir
        self.porter = porter  # a source tree whose `porter` package is served instead
        # Replicas started by `running` (more by `add_replica`), all on this one database.
        self.initial_replicas = replicas
        self.database = database or str(workdir / "porter.db")
        self.replicas: list[Replica] = []
        self.public_url = ""  # the one replica's own, or the balancer's
        self.secret_keys = KeyRing.generate().serialize()  # every replica's: one key ring
        self.fake = FakeGitHub(workdir / "github", private_key_pem=app_key())
        self.installation_of: dict[str, int] = {}
        for i in range(installations):
            self._repo(f"org{i}/app", 101 + i, issues)
        self._repo(BASELINE_REPO, BASELINE_INSTALLATION, 1)
        self.plan: dict[str, float] = {"agent_s": 0.0}  # what each new machine is told
        self.fly = FakeFly(token=FLY_TOKEN, app=FLY_APP, command=self._machine, cwd=workdir)
        self.extra_env = dict(env or {})
        self.balancer: Balancer | None = None
        self._free_ports: list[int] = []

    def _repo(self, repo: str, installation: int, issues: int) -> None:
        self.fake.add_repo(repo, files={"README.md": README}, installation_id=installation)
        self.fake.set_permission(repo, REQUESTER, "write")
        for number in range(1, issues + 1):
            self.fake.add_issue(repo, number, f"Fix the typo in file {number}", "It says Teh.",
                                user=REQUESTER)
        self.installation_of[repo] = installation

    def _machine(self, _: MachineRecord) -> list[str]:
        return [sys.executable, str(MACHINE), json.dumps(self.plan)]

    @property
    def repos(self) -> list[str]:
        return [r for r in self.installation_of if r != BASELINE_REPO]

    # -- running --------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[World]:
        """The fakes and the replicas, served until the block ends. With several replicas the
        first starts alone (it migrates the database), then the others; machines call back
        through a balancer over all of them."""
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.fake.serve())
            await stack.enter_async_context(self.fly.serve())
            ports = [free_port() for _ in range(max(self.initial_replicas, 3) + 2)]
            self._free_ports = ports
            if self.initial_replicas > 1 or self.database.startswith("postgresql://"):
                balancer = Balancer([f"http://127.0.0.1:{port}" for port in ports])
                stack.push_async_callback(balancer.aclose)
                self.balancer = balancer
                self.public_url = await stack.enter_async_context(served(balancer.app()))
            else:
                self.public_url = f"http://127.0.0.1:{ports[0]}"
            stack.push_async_callback(self._stop_replicas)
            for _ in range(self.initial_replicas):
                await self.add_replica()
            yield self

    async def add_replica(self) -> Replica:
        """Start one more `porter serve` on the world's database; ready when this returns."""
        index = len(self.replicas)
        port = self._free_ports[index]
        url = f"http://127.0.0.1:{port}"
        log = (self.workdir / f"porter-{index}.log").open("wb")
        process = subprocess.Popen(  # noqa: ASYNC220 - started before measuring
            [sys.executable, "-m", "porter.cli", "serve"], env=self._env(port, index),
            cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        log.close()  # the child has its own copy
        replica = Replica(index, process, httpx.AsyncClient(base_url=url, timeout=60), url)
        self.replicas.append(replica)
        try:
            await _healthy(replica.client, process)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}:\n{self.log_of(index)[-3000:]}") from None
        return replica

    def kill(self, index: int) -> None:
        """`kill -9` one replica: no shutdown, its claims and connections simply stop."""
        process = self.replicas[index].process
        process.kill()
        process.wait(10)

    def log_of(self, index: int) -> str:
        return (self.workdir / f"porter-{index}.log").read_text(errors="replace")

    async def _stop_replicas(self) -> None:
        for replica in self.replicas:
            if replica.up:
                replica.process.terminate()
        for replica in self.replicas:
            await asyncio.to_thread(replica.process.wait, 15)
            await replica.client.aclose()

    @property
    def client(self) -> httpx.AsyncClient | None:
        """A client of the first replica still up (reads go to any replica)."""
        return next((r.client for r in self.replicas if r.up), None)

    def _env(self, port: int, index: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PORTER_")}
        if self.porter is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.porter),
                                                              env.get("PYTHONPATH")]))
        return {**env,
                "PORTER_DATABASE": self.database,
                "PORTER_DATA_DIR": str(self.workdir / f"data-{index}"),
                "PORTER_SECRET_KEYS": self.secret_keys,
                "PORTER_PORT": str(port),
                "PORTER_PUBLIC_URL": self.public_url,
                "PORTER_LOG_LEVEL": "warning",
                "PORTER_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "PORTER_ADMIN_TOKEN": ADMIN_TOKEN,
                "PORTER_GITHUB_APP_ID": self.fake.app_id,
                "PORTER_GITHUB_PRIVATE_KEY": self.fake.private_key_pem,
                "PORTER_GITHUB_API_URL": self.fake.api_url,
                "PORTER_GITHUB_URL": self.fake.web_url,
                "PORTER_RUNNER": "fly",
                "PORTER_FLY_API_TOKEN": FLY_TOKEN,
                "PORTER_FLY_APP": FLY_APP,
                "PORTER_FLY_API_URL": self.fly.url,
                "PORTER_FLY_REGION": "ams",
                "PORTER_AGENT_IMAGE": "registry.fly.io/porter:bench",
                # Never run: tests/fakes/callback_machine.py stands in for the entrypoint and agent.
                "PORTER_AGENT_SCRIPTED_COMMAND": "scripted-agent",
                "PORTER_DEFAULT_AGENT": "scripted",
                **self.extra_env}

    # -- GitHub's side --------------------------------------------------------------------------

    def comment(self, repo: str, number: int, body: str = "@porter fix the typo") -> Delivery:
        made = self.fake.add_issue_comment(repo, number, body, user=REQUESTER)
        installation = self.installation_of[repo]
        payload = comment_payload(body=body)
        payload["comment"] = self.fake.json_comment(made.id)
        payload["issue"] = self.fake.json_issue(repo, number)
        payload["repository"] = self.fake.json_repository(repo)
        payload["sender"] = self.fake.json_user(REQUESTER)
        payload["installation"] = {"id": installation}
        raw = json.dumps(payload).encode()
        return Delivery(installation, repo, number, made.id, raw, signed(raw, "issue_comment"))

    async def deliver(self, delivery: Delivery, *, replica: int | None = None) -> Sample:
        """POST the delivery to a replica (by default the first one up) as GitHub does."""
        client = self.client if replica is None else self.replicas[replica].client
        assert client is not None
        delivered = time.time()
        response = await client.post("/webhooks/github", content=delivery.raw,
                                     headers=delivery.headers)
        answered = time.time()
        if response.status_code != 202 or "task_id" not in response.json():
            raise RuntimeError(f"delivery not queued: {response.status_code} {response.text}")
        return Sample(delivery, delivered, answered, int(response.json()["task_id"]))

    async def warm_up(self) -> Sample:
        """One task on the baseline installation, run to its end: the figures that follow are
        of a Porter that has served before (the first task after a start pays one-off costs,
        imports and key parsing; the caller may report them from this sample)."""
        plan, self.plan = self.plan, {"agent_s": 0.0}
        sample = await self.deliver(self.comment(BASELINE_REPO, 1))
        await self.settled([sample.task_id], within=60)
        await self.quiet(1.0)
        self.plan = plan
        return sample

    async def baseline(self, rounds: int) -> list[float]:
        """Round trips of one write to the fake GitHub: a reaction POSTed with an installation
        token over a kept-alive loopback connection, as Porter's client sends it."""
        made = self.fake.add_issue_comment(BASELINE_REPO, 1, "hello", user=REQUESTER)
        token = self.fake.mint_token(BASELINE_INSTALLATION).token
        path = f"/repos/{BASELINE_REPO}/issues/comments/{made.id}/reactions"
        times = []
        async with httpx.AsyncClient(base_url=self.fake.api_url, headers={
                "Authorization": f"token {token}"}) as client:
            for i in range(rounds + 3):  # three warm-ups
                started = time.perf_counter()
                response = await client.post(path, json={"content": "+1"})
                response.raise_for_status()
                if i >= 3:
                    times.append(time.perf_counter() - started)
        return times

    # -- waiting --------------------------------------------------------------------------------

    async def settled(self, task_ids: list[int], *, within: float) -> dict[int, str]:
        """Wait until every task is over (or `within` passes); their states."""
        assert self.client is not None
        wanted, states = set(task_ids), {}
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            response = await self.client.get("/api/tasks", params={"limit": 200},
                                              headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            states = {t["id"]: t["state"] for t in response.json()["tasks"] if t["id"] in wanted}
            if len(states) == len(wanted) and set(states.values()) <= TERMINAL:
                break
            await asyncio.sleep(0.25)
        return states

    async def checked(self, task_ids: list[int], *, within: float) -> None:
        """Wait until every task's check run is completed (or `within` passes): the check is a
        job of its own after the pull request, paced behind what people wait for."""
        wanted = {str(t) for t in task_ids}
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if wanted <= {run.external_id for repo in self.repos
                          for run in self.fake.check_runs(repo) if run.status == "completed"}:
                return
            await asyncio.sleep(0.25)

    async def quiet(self, seconds: float, *, within: float = 30) -> None:
        """Wait until the fake GitHub has heard nothing for `seconds`: the last task's cosmetic
        edits are done, so the next task starts from an idle Porter."""
        deadline = time.monotonic() + within
        count, since = len(self.fake.calls), time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - since < seconds:
            await asyncio.sleep(0.1)
            if len(self.fake.calls) != count:
                count, since = len(self.fake.calls), time.monotonic()

    # -- reading what happened ------------------------------------------------------------------

    def seen(self, samples: list[Sample]) -> Seen:
        seen = Seen()
        by_comment = {s.delivery.comment_id: s.task_id for s in samples}
        creations: dict[int, list[float]] = defaultdict(list)
        with self.fake.lock:
            calls = list(self.fake.calls)
        for call in calls:
            body = call.json if isinstance(call.json, dict) else {}
            repo = call.path.split("/")[2] + "/" + call.path.split("/")[3] \
                if call.path.startswith("/repos/") else ""
            if creates_content(call.method, call.path) and repo in self.repos:
                creations[self.installation_of[repo]].append(call.time)
            if call.method != "POST":
                continue
            if (m := _REACTION.fullmatch(call.path)) and body.get("content") == "eyes":
                task_id = by_comment.get(int(m.group(2)))
                if task_id is not None:
                    seen.eyes.setdefault(task_id, call.time)
            elif _COMMENT.fullmatch(call.path):
                for sample in samples:
                    if marker(sample.task_id) in str(body.get("body", "")):
                        seen.status.setdefault(sample.task_id, call.time)
            elif _PULLS.fullmatch(call.path) and (m := _HEAD.match(str(body.get("head", "")))):
                seen.pr.setdefault(int(m.group(1)), call.time)
        seen.creations = dict(creations)
        for repo in self.repos:
            for run in self.fake.check_runs(repo):
                if run.completed_at is not None and (run.external_id or "").isdigit():
                    seen.check.setdefault(int(run.external_id or 0), run.completed_at)
        for request in self.fly.requests_to("POST", rf"^/v1/apps/{FLY_APP}/machines$"):
            task = ((request.json or {}).get("config") or {}).get("metadata", {})
            if "porter_task_id" in task:
                seen.create.setdefault(int(task["porter_task_id"]), request.at)
        for machine in self.fly.machines:
            task_id = int(machine.metadata["porter_task_id"])
            seen.retries += [r.decode() for r in re.findall(rb"RETRY ([^\n]+)", machine.output)]
            if found := re.search(rb"ACCEPTED (\d+\.\d+)", bytes(machine.output)):
                seen.accepted[task_id] = float(found.group(1))
            elif machine.exit_code is not None:  # Porter destroys a machine that completed
                tail = bytes(machine.output).decode(errors="replace").strip().splitlines()
                seen.machine_errors[task_id] = (tail or ["no output"])[-1][:300]
        return seen


async def _healthy(client: httpx.AsyncClient, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"porter serve exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get("/healthz")).status_code == 200:
                return
        await asyncio.sleep(0.05)
    raise RuntimeError("porter serve did not become healthy")

