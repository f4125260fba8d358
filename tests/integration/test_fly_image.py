"""No agent image, no Fly machine: Porter still starts, doctor says what is missing, and each task
fails at dispatch with the reason on its status comment.

Porter publishes no agent image, so PORTER_AGENT_IMAGE has no default. The flow test runs Porter
whole and in-process (create_app, the real FlyRunner built from settings) against the fake GitHub
and the fake Fly Machines API on loopback, with the dispatcher and jobs driven by hand.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from porter.app import create_app
from porter.cli import cmd_doctor
from porter.crypto import KeyRing
from porter.fly import FlyClient
from porter.github import GitHubApp
from porter.launcher import LAUNCH
from porter.runners.base import LaunchRequest, RunnerError
from porter.runners.fly import NO_IMAGE, FlyRunner
from porter.runtime import Runtime, check_config
from porter.settings import Settings
from porter.states import TaskState
from porter.store import Store
from tests.conftest import WEBHOOK_SECRET, comment_payload, signed
from tests.fakes.clock import Clock
from tests.fakes.fly import FakeFly
from tests.fakes.github import FakeGitHub

FLY_TOKEN = "fm2_lJPECAAAAAAAAMQ9test"
FLY_APP = "porter-agents"
REPO = "octo/hello"
PUBLIC_URL = "https://porter.example.com"
IMAGE = "registry.fly.io/porter-agents:1"


def fly_settings(**extra: str) -> Settings:
    """Everything a Fly deployment needs except what a test leaves out or adds."""
    return Settings.from_mapping({
        "PORTER_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PORTER_ADMIN_TOKEN": "test-admin-token",
        "PORTER_FLY_API_TOKEN": FLY_TOKEN,
        "PORTER_FLY_APP": FLY_APP,
        **extra,
    })


def test_the_image_has_no_default_and_the_fly_capability_needs_it() -> None:
    assert Settings().agent_image is None
    assert fly_settings().missing()["fly"] == ["PORTER_AGENT_IMAGE"]
    assert fly_settings(PORTER_AGENT_IMAGE=IMAGE).missing()["fly"] == []
    # The local runner never uses the image, so it is not asked for.
    assert "fly" not in Settings.from_mapping({}).missing()


def test_serve_is_not_refused_without_an_image() -> None:
    # `porter serve` refuses to start only on check_config's problems.
    assert check_config(fly_settings()) == []


def test_doctor_names_the_image_and_exits_1_until_it_is_set(
    capsys: pytest.CaptureFixture[str], pem: str
) -> None:
    app = {"PORTER_GITHUB_APP_ID": "1", "PORTER_GITHUB_PRIVATE_KEY": pem}
    assert cmd_doctor(fly_settings(**app), argparse.Namespace()) == 1
    out = capsys.readouterr().out
    assert "start agent machines on Fly  needs PORTER_AGENT_IMAGE" in out
    assert "PORTER_AGENT_IMAGE" in out.split("Capabilities:")[0]  # listed among the settings

    assert cmd_doctor(fly_settings(**app, PORTER_AGENT_IMAGE=IMAGE), argparse.Namespace()) == 0
    out = capsys.readouterr().out
    assert "start agent machines on Fly  ready" in out
    assert "Porter has what it needs." in out


async def test_the_fly_runner_refuses_to_launch_without_an_image() -> None:
    fake = FakeFly(token=FLY_TOKEN, app=FLY_APP)
    async with fake.serve():
        runner = FlyRunner(FlyClient(token=FLY_TOKEN, app=FLY_APP, base_url=fake.url),
                           image=None, region="ams")
        try:
            with pytest.raises(RunnerError) as refused:
                await runner.launch(LaunchRequest(run_id="r1", task_id=1, token="rt-r1",
                                                  porter_url="http://127.0.0.1:9"))
        finally:
            await runner.aclose()
    assert refused.value.message == NO_IMAGE
    assert "PORTER_AGENT_IMAGE" in NO_IMAGE
    assert fake.requests == []  # nothing reached Fly


async def drain(porter: Runtime, store: Store, clock: Clock) -> None:
    """Run jobs until none is due, stepping the clock over the per-installation write spacing."""
    for _ in range(100):
        if await porter.jobs.run_due(clock.now):
            continue
        due = await store.next_job_due()
        if due is None or due > clock.now + 2:
            return
        clock.now = max(clock.now, due)
    raise AssertionError("jobs kept running")


@pytest.fixture
async def served(tmp_path: Path, pem: str
                 ) -> AsyncIterator[tuple[FakeGitHub, FakeFly, Clock]]:
    clock = Clock()
    github = FakeGitHub(tmp_path / "github", app_id="1", private_key_pem=pem, now=clock)
    github.add_installation(42, account="octo")
    github.add_repo(REPO, files={"README.md": b"# Hello\n"}, installation_id=42)
    github.add_issue(REPO, 1, "Fix the typo", "It says Teh.", user="alice")
    github.set_permission(REPO, "alice", "write")
    fly = FakeFly(token=FLY_TOKEN, app=FLY_APP)
    async with github.serve(), fly.serve():
        yield github, fly, clock


async def test_a_task_fails_at_dispatch_saying_the_image_is_missing(
    tmp_path: Path, pem: str, served: tuple[FakeGitHub, FakeFly, Clock]
) -> None:
    fake, fly, clock = served
    settings = fly_settings(
        PORTER_DATABASE=str(tmp_path / "porter.db"),
        PORTER_PUBLIC_URL=PUBLIC_URL,
        PORTER_SECRET_KEYS=KeyRing.generate().serialize(),
        PORTER_GITHUB_APP_ID=fake.app_id,
        PORTER_GITHUB_PRIVATE_KEY=pem,
        PORTER_GITHUB_API_URL=fake.api_url,
        PORTER_GITHUB_URL=fake.web_url,
        PORTER_FLY_API_URL=fly.url,
    )
    store = await Store.open(settings.database, clock=clock)
    built: list[Runtime] = []

    def runtime(opened: Store) -> Runtime:
        # No runner passed in: the one Porter builds from its settings, the real FlyRunner.
        github = GitHubApp(app_id=fake.app_id, private_key=pem, api_url=fake.api_url,
                           clock=clock)
        built.append(Runtime(settings, opened, clock=clock, github=github))
        return built[-1]

    app = create_app(settings, store=store, runtime=runtime, background=False)
    try:
        async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://porter.test"
        ) as client:
            [porter] = built
            assert isinstance(porter.runner, FlyRunner)
            made = fake.add_issue_comment(REPO, 1, "@porter fix the typo", user="alice")
            payload = comment_payload("issue_comment", made.body, name="created.with-installation")
            payload["comment"] = fake.json_comment(made.id)
            payload["issue"] = fake.json_issue(REPO, 1)
            payload["repository"] = fake.json_repository(REPO)
            payload["sender"] = fake.json_user("alice")
            payload["installation"]["id"] = 42
            raw = json.dumps(payload).encode()
            response = await client.post("/webhooks/github", content=raw,
                                         headers=signed(raw, "issue_comment"))
            assert response.status_code == 202, response.text
            task_id = int(response.json()["task_id"])

            for _ in range(3):  # dispatch, launch (refused at once, not retried), report
                await porter.dispatcher.tick()
                await drain(porter, store, clock)

            task = await store.get_task(task_id)
            assert task is not None
            assert task.state is TaskState.FAILED
            assert task.stage == "dispatch"
            assert task.reason == f"the machine could not be started: {NO_IMAGE}"
            [launch] = await store.jobs(kind=LAUNCH)
            assert (launch.state, launch.attempts) == ("given_up", 1)  # at once, never retried
    finally:
        await store.close()

    assert fly.requests == []  # no machine was ever asked for
    [status] = [c.body for c in fake.comments(REPO, 1) if c.user == fake.bot_login]
    assert status.startswith("❌ Failed while starting the machine: the machine could not be "
                             f"started: {NO_IMAGE}\n")
    assert [r.content for r in fake.reactions(made.id)] == ["eyes", "confused"]
