"""No agent image, no Fly machine: Porter still starts, doctor says what is missing, and each task
fails at dispatch with the reason on its status comment.

Porter publishes no agent image, so PORTER_AGENT_IMAGE has no default. The flow test runs Porter
whole and in-process (tests/fakes/world.py, with the real FlyRunner built from settings) against
the fake GitHub and the fake Fly Machines API on loopback, with the dispatcher and jobs driven by
hand.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from porter.cli import cmd_doctor
from porter.fly import FlyClient
from porter.launcher import LAUNCH
from porter.runners.base import LaunchRequest, RunnerError
from porter.runners.fly import NO_IMAGE, FlyRunner
from porter.runtime import check_config
from porter.settings import Settings
from porter.states import TaskState
from tests.conftest import WEBHOOK_SECRET
from tests.fakes.fly import FakeFly
from tests.fakes.world import open_world

FLY_TOKEN = "fm2_lJPECAAAAAAAAMQ9test"
FLY_APP = "porter-agents"
IMAGE = "registry.fly.io/porter-agents:1"


def fly_settings(**extra: str) -> Settings:
    """Everything a Fly deployment needs except what a test leaves out or adds."""
    return Settings.from_mapping({
        "PORTER_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PORTER_ADMIN_TOKEN": "test-admin-token",
        "PORTER_FLY_API_TOKEN": FLY_TOKEN,
        "PORTER_FLY_APP": FLY_APP,
        # Doctor asks GitHub and Fly: here nothing listens (port 9, discard), which it reports
        # as unreachable without failing, so the test never reaches the real services.
        "PORTER_GITHUB_API_URL": "http://127.0.0.1:9",
        "PORTER_FLY_API_URL": "http://127.0.0.1:9",
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


async def test_a_task_fails_at_dispatch_saying_the_image_is_missing(
    tmp_path: Path, pem: str
) -> None:
    fly = FakeFly(token=FLY_TOKEN, app=FLY_APP)
    async with fly.serve():
        fly_env = {"PORTER_FLY_API_TOKEN": FLY_TOKEN, "PORTER_FLY_APP": FLY_APP,
                   "PORTER_FLY_API_URL": fly.url}
        # No runner passed in: the one Porter builds from its settings, the real FlyRunner.
        async with open_world(tmp_path, pem, fly_env, runner_from_settings=True) as world:
            assert isinstance(world.runtime.runner, FlyRunner)
            task_id = await world.request("@porter fix the typo")

            for _ in range(3):  # dispatch, launch (refused at once, not retried), report
                await world.settle()

            task = await world.task(task_id)
            assert task.state is TaskState.FAILED
            assert task.stage == "dispatch"
            assert task.reason == f"the machine could not be started: {NO_IMAGE}"
            [launch] = await world.store.jobs(kind=LAUNCH)
            assert (launch.state, launch.attempts) == ("given_up", 1)  # at once, never retried

    assert fly.requests == []  # no machine was ever asked for
    [status] = world.porter_comments()
    assert status.startswith("❌ Failed while starting the machine: the machine could not be "
                             f"started: {NO_IMAGE}\n")
    assert world.reactions(task_id) == ["eyes", "confused"]
