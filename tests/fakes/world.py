"""Porter whole and in-process, wired as `porter serve` wires it, for integration tests.

    async with open_world(tmp_path, pem) as world:
        task_id = await world.request("@porter fix the typo")   # a signed webhook, a 202
        await world.settle()                                     # dispatcher passes and due jobs
        machine = await world.machine(task_id)                   # the test plays the machine
        await machine.spec()

The pieces are the real ones: `create_app` with the real `porter.runtime.Runtime` (dispatcher,
launcher, job runner, reporter, publisher, watchdog, run callbacks) built from `Settings` and a
real SQLite store. Only what is outside Porter is injected: the fake GitHub (tests/fakes/github.py),
answered in-process through `httpx.ASGITransport` (no socket, no server thread; nothing here clones
over HTTP), the in-memory runner (tests/fakes/machines.py) or the one Porter builds from its
settings, and a clock that moves only when the test moves it. Nothing runs in the background: a
test drives the dispatcher, the jobs and the watchdog by hand.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from porter.api_metrics import GITHUB
from porter.app import create_app
from porter.crypto import KeyRing
from porter.github import GitHubApp
from porter.metrics import Metrics
from porter.models import AgentRun, Task
from porter.runners.base import Runner
from porter.runtime import Runtime
from porter.settings import Settings
from porter.states import TaskState
from porter.store import Store
from porter.webhooks import Trigger, decode_delivery
from tests.conftest import WEBHOOK_SECRET, comment_payload, signed
from tests.fakes.clock import Clock
from tests.fakes.github import FakeGitHub
from tests.fakes.github_auth import generate_private_key_pem
from tests.fakes.machines import Machines

REPO = "octo/hello"
OTHER_REPO = "acme/widgets"  # another installation (43), for per-installation limits
PUBLIC_URL = "https://porter.example.com"
ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
AGENT_ARGV = ["tester-cli", "--fast"]
# Shaped like no well-known credential, so only knowing the configured secret can catch it.
CANARY = "cnry-Qx7LwP2vZ9mK4tB8hJ3d"
UNDECLARED = "zz-undeclared-Yq2Wm8Lp4Rt6"
README = b"# Hello\n\nTeh greeting project.\n"
WRITERS = ("alice", "bob")  # write access on both repositories


@functools.cache
def app_key() -> str:
    """One App private key per test process: generating an RSA key costs more than most tests'
    own work, and no test needs its App's key to differ from another's."""
    return generate_private_key_pem()


def in_process(fake: FakeGitHub, *, clock: Clock, metrics: Metrics | None = None) -> GitHubApp:
    """Porter's GitHub client, talking to the fake through ASGI instead of a socket (its calls
    counted in `metrics`, as porter/runtime.py counts the real client's)."""
    transport: httpx.AsyncBaseTransport = httpx.ASGITransport(app=fake.app)
    if metrics is not None:
        transport = metrics.api.transport(GITHUB, fake.api_url, transport, shared=True)
    return GitHubApp(app_id=fake.app_id, private_key=fake.private_key_pem, api_url=fake.api_url,
                     clock=clock, transport=transport)


def populate(fake: FakeGitHub) -> None:
    """The GitHub every world starts with: octo/hello (installation 42, issues 1-4) and
    acme/widgets (installation 43, issue 1); alice and bob may write to both."""
    fake.add_installation(42, account="octo")
    fake.add_repo(REPO, files={"README.md": README}, installation_id=42)
    for number in (1, 2, 3, 4):
        fake.add_issue(REPO, number, f"Fix the typo in file {number}", "It says Teh.",
                       user="alice")
    fake.add_installation(43, account="acme")
    fake.add_repo(OTHER_REPO, files={"README.md": b"widgets\n"}, installation_id=43)
    fake.add_issue(OTHER_REPO, 1, "Widgets are blue", "Make them green.", user="alice")
    for repo in (REPO, OTHER_REPO):
        for login in WRITERS:
            fake.set_permission(repo, login, "write")


def settings_for(tmp_path: Path, fake: FakeGitHub, *, github: bool = True,
                 env: Mapping[str, str] | None = None) -> Settings:
    values = {
        "PORTER_DATABASE": str(tmp_path / "porter.db"),
        "PORTER_PUBLIC_URL": PUBLIC_URL,
        "PORTER_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PORTER_ADMIN_TOKEN": ADMIN_TOKEN,
        "PORTER_SECRET_KEYS": KeyRing.generate().serialize(),
        "PORTER_GITHUB_URL": fake.web_url,
        "PORTER_AGENT_TESTER_COMMAND": " ".join(AGENT_ARGV),
        "PORTER_AGENT_TESTER_KEYS": "CANARY_KEY",
        "PORTER_DEFAULT_AGENT": "tester",
        "PORTER_SECRET_CANARY_KEY": CANARY,
        "PORTER_SECRET_UNDECLARED_KEY": UNDECLARED,
        "PORTER_GITHUB_CLIENT_ID": fake.client_id,
        "PORTER_GITHUB_CLIENT_SECRET": fake.client_secret,
    }
    if github:
        values.update({
            "PORTER_GITHUB_APP_ID": fake.app_id,
            "PORTER_GITHUB_PRIVATE_KEY": fake.private_key_pem,
            "PORTER_GITHUB_API_URL": fake.api_url,
        })
    return Settings.from_mapping({**values, **(env or {})})


@dataclass
class Caller:
    """The machine's side: calls back to Porter as container/porter_entrypoint/ does."""

    client: httpx.AsyncClient
    run_id: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def spec(self) -> httpx.Response:
        return await self.client.get(f"/api/runs/{self.run_id}/spec", headers=self.auth)

    async def post(self, what: str, body: Any) -> httpx.Response:
        return await self.client.post(f"/api/runs/{self.run_id}/{what}", json=body,
                                      headers=self.auth)

    async def heartbeat(self, stage: str = "agent", message: str = "working") -> bool:
        response = await self.post("heartbeat", {"stage": stage, "message": message})
        assert response.status_code == 200, response.text
        return bool(response.json()["cancel"])

    async def log(self, seq: int, text: str) -> None:
        response = await self.post("logs", {"seq": seq, "text": text})
        assert response.status_code == 200, response.text

    async def complete(self, body: dict[str, Any]) -> httpx.Response:
        return await self.post("complete", body)


@dataclass
class World:
    fake: FakeGitHub
    clock: Clock
    settings: Settings
    store: Store
    runtime: Runtime
    client: httpx.AsyncClient  # Porter's HTTP edge (webhooks, API, machine callbacks)
    runner: Any  # a Machines unless the world was opened with the runner Porter builds
    comment_ids: dict[int, int] = field(default_factory=dict)
    _delivery: int = 0
    app: Any = None  # Porter's ASGI app, for a test that serves it on a real socket

    # -- GitHub's side ------------------------------------------------------------------------

    def payload(self, body: str, *, user: str = "alice", repo: str = REPO, number: int = 1,
                installation_id: int = 42) -> dict[str, Any]:
        """`user` comments on the issue; the delivery is the real fixture, filled from the fake."""
        made = self.fake.add_issue_comment(repo, number, body, user=user)
        payload = comment_payload("issue_comment", body, name="created.with-installation")
        payload["comment"] = self.fake.json_comment(made.id)
        payload["issue"] = self.fake.json_issue(repo, number)
        payload["repository"] = self.fake.json_repository(repo)
        payload["sender"] = self.fake.json_user(user)
        payload["installation"]["id"] = installation_id
        return payload

    async def deliver(self, event: str, payload: dict[str, Any]) -> httpx.Response:
        """POST the payload to the webhook route, signed as GitHub signs it."""
        raw = json.dumps(payload).encode()
        return await self.client.post("/webhooks/github", content=raw,
                                       headers=signed(raw, event))

    async def comment(self, body: str, **where: Any) -> httpx.Response:
        response = await self.deliver("issue_comment", self.payload(body, **where))
        assert response.status_code == 202, response.text
        return response

    async def request(self, body: str = "@porter fix the typo", **where: Any) -> int:
        """A new task from a comment; its id."""
        response = await self.comment(body, **where)
        task_id = int(response.json()["task_id"])
        self.comment_ids[task_id] = int(self.fake.comments(
            where.get("repo", REPO), where.get("number", 1))[-1].id)
        return task_id

    async def record(self, event: str, payload: dict[str, Any], *,
                     agents: Iterable[str] = ("claude", "codex", "tester"),
                     default_agent: str = "tester") -> Task:
        """The task a delivery becomes, recorded straight into the store (no HTTP round), with
        the agent the world's settings default to (the one with the operator's key)."""
        self._delivery += 1
        trigger = decode_delivery(event, f"delivery-{self._delivery}", payload,
                                  handle="porter", agents=frozenset(agents))
        assert isinstance(trigger, Trigger), trigger
        [result] = await self.store.record_triggers([trigger], default_agent=default_agent)
        assert result.task_id is not None
        return await self.task(result.task_id)

    def porter_comments(self, number: int = 1, repo: str = REPO) -> list[str]:
        return [c.body for c in self.fake.comments(repo, number) if c.user == self.fake.bot_login]

    def reactions(self, task_id: int) -> list[str]:
        return [r.content for r in self.fake.reactions(self.comment_ids[task_id])]

    # -- Porter's background, by hand ---------------------------------------------------------

    async def settle(self) -> None:
        """What the background loops would do: dispatcher passes and due jobs, until quiet."""
        dispatcher = self.runtime.dispatcher
        for _ in range(20):
            dispatcher.wake.clear()
            await dispatcher.tick()
            await self.drain()
            if not dispatcher.wake.is_set():
                return
        raise AssertionError("the dispatcher kept being woken")

    async def drain(self) -> None:
        """Run jobs until none is due, stepping the clock over short waits (a paced creation,
        a retry) but not over long ones."""
        for _ in range(200):
            if await self.runtime.jobs.run_due(self.clock.now):
                continue
            due = await self.store.next_job_due()
            if due is None or due > self.clock.now + 2:
                return
            self.clock.now = max(self.clock.now, due)
        raise AssertionError("jobs kept running")

    async def advance(self, seconds: float) -> None:
        self.clock.now += seconds
        await self.drain()

    # -- reading state ------------------------------------------------------------------------

    async def task(self, task_id: int) -> Task:
        task = await self.store.get_task(task_id)
        assert task is not None
        return task

    async def run(self, task_id: int) -> AgentRun:
        run = await self.store.current_run(task_id)
        assert run is not None
        return run

    async def events(self, task_id: int) -> list[str]:
        return [e.kind for e in await self.store.task_events(task_id)]

    async def machine(self, task_id: int) -> Caller:
        """The current attempt's machine, holding the token its runner was handed."""
        run = await self.run(task_id)
        [request] = [r for r in self.runner.launched if r.run_id == run.id]
        assert request.token == self.runtime.runs.token_for(run.id)
        return Caller(self.client, run.id, request.token)

    async def started(self, body: str = "@porter fix the typo", **where: Any
                      ) -> tuple[int, Caller]:
        """A task through dispatch and launch, its machine up and holding its spec."""
        task_id = await self.request(body, **where)
        await self.settle()
        assert (await self.task(task_id)).state is TaskState.STARTING
        caller = await self.machine(task_id)
        assert (await caller.spec()).status_code == 200
        assert (await self.task(task_id)).state is TaskState.RUNNING
        return task_id, caller

    async def snapshot(self, task_ids: Iterable[int], run_ids: Iterable[str] = ()
                       ) -> dict[str, Any]:
        """Everything a callback could change, to compare before and after."""
        task_ids = list(task_ids)
        runs = [await self.store.get_run(run_id) for run_id in run_ids]
        return {
            "tasks": [await self.task(t) for t in task_ids],
            "events": [await self.store.task_events(t) for t in task_ids],
            "runs": runs,
            "logs": [await self.store.run_logs(run.id) for run in runs if run],
            "jobs": await self.store.jobs(),
            "runner": (list(self.runner.launched), list(self.runner.stopped),
                       list(self.runner.destroyed)),
        }

    async def api(self, method: str, path: str) -> dict[str, Any]:
        response = await self.client.request(method, path, headers=ADMIN)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    async def log_text(self, task_id: int) -> str:
        return str((await self.api("GET", f"/api/tasks/{task_id}/logs"))["text"])

    def changeset(self, text: str = "# Hello\n\nThe greeting project.\n") -> dict[str, Any]:
        """What a machine hands back: README.md rewritten on top of main."""
        return {
            "base_sha": self.fake.ref_sha(REPO, "heads/main"),
            "message": "Fix the typo",
            "files": [{"path": "README.md", "mode": "100644",
                       "content_b64": base64.b64encode(text.encode()).decode()}],
        }


@contextlib.asynccontextmanager
async def open_world(tmp_path: Path, pem: str | None = None,
                     env: Mapping[str, str] | None = None, *,
                     github: bool = True, runner: Runner | None = None,
                     runner_from_settings: bool = False,
                     database: Path | str | None = None) -> AsyncIterator[World]:
    """Porter on this event loop; nothing runs in the background.

    github=False leaves the App unconfigured (no GitHub client: webhooks still queue, nothing is
    told). runner: the runner to inject (a fresh Machines by default); runner_from_settings uses
    the one Porter builds from its settings instead (the Fly runner, with PORTER_FLY_*).
    database: the store's database, in place of PORTER_DATABASE's file (the `store_database`
    fixture: SQLite's file or a PostgreSQL database).
    """
    clock = Clock()
    fake = FakeGitHub(tmp_path / "github", app_id="1", private_key_pem=pem or app_key(),
                      now=clock)
    populate(fake)
    settings = settings_for(tmp_path, fake, github=github, env=env)
    store = await Store.open(database or settings.database, clock=clock)
    used: Runner | None = None if runner_from_settings else (runner or Machines())
    built: list[Runtime] = []
    metrics = Metrics.create()  # shared by the app and its runtime, as porter/app.py shares it

    def runtime(opened: Store, _: Settings) -> Runtime:
        client = in_process(fake, clock=clock, metrics=metrics) if github else None
        built.append(Runtime(settings, opened, clock=clock, github=client, runner=used,
                             metrics=metrics))
        return built[-1]

    app = create_app(settings, store=store, runtime=runtime, background=False,
                     users_transport=httpx.ASGITransport(app=fake.app), metrics=metrics)
    try:
        async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://porter.test"
        ) as client:
            [engine] = built
            yield World(fake, clock, settings, store, engine, client, engine.runner,
                        app=app)
        if isinstance(used, Machines):
            assert used.closed  # the lifespan's end reached the runner
    finally:
        await store.close()
