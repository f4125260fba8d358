"""The same flow with PORTER_RUNNER=fly, against a fake Machines API that starts the real
entrypoint as the machine's process."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.e2e.stack import REPO, Stack
from tests.e2e.test_flow import EDIT_TWO_DELETE_ONE
from tests.fakes.fly import FakeFly
from tests.fakes.sandbox import SANDBOX_ARGS, needs_bwrap

pytestmark = needs_bwrap

FLY_TOKEN = "fm2_lJPECAAAAAAAAMQ9test"
FLY_APP = "porter-agents"


async def test_fly_runner_creates_the_documented_machine_and_destroys_it(tmp_path: Path) -> None:
    fly = FakeFly(token=FLY_TOKEN, app=FLY_APP,
                  command=[sys.executable, str(ROOT / "container" / "porter_entrypoint"),
                           *SANDBOX_ARGS])
    async with fly.serve():
        env = {"PORTER_RUNNER": "fly", "PORTER_FLY_API_TOKEN": FLY_TOKEN,
               "PORTER_FLY_APP": FLY_APP, "PORTER_FLY_API_URL": fly.url,
               "PORTER_FLY_REGION": "ams", "PORTER_AGENT_IMAGE": "registry.fly.io/porter:test"}
        stack = Stack(tmp_path, script=EDIT_TWO_DELETE_ONE, env=env)
        await asyncio.to_thread(stack.__enter__)
        try:
            response = await asyncio.to_thread(stack.comment, "@porter fix the typo")
            task = await asyncio.to_thread(stack.wait, response.json()["task_id"])
            assert task["state"] == "succeeded", task
            assert len(stack.fake.pulls(REPO)) == 1

            [create] = fly.requests_to("POST", rf"/v1/apps/{FLY_APP}/machines")
            assert create.auth_scheme == "FlyV1"
            body = create.json
            assert body["region"] == "ams"
            config = body["config"]
            assert config["image"] == "registry.fly.io/porter:test"
            assert config["auto_destroy"] is True
            assert config["restart"] == {"policy": "no"}
            assert set(config["env"]) == {"PORTER_URL", "PORTER_RUN_ID", "PORTER_RUN_TOKEN"}
            assert config["guest"]["cpus"] >= 1 and config["guest"]["memory_mb"] >= 256
            assert config["metadata"]["porter_task_id"] == str(task["id"])

            [machine] = fly.machines
            for _ in range(100):
                if machine.state == "destroyed":
                    break
                await asyncio.sleep(0.1)
            assert machine.state == "destroyed"
            assert fly.live_processes() == {}
        finally:
            await asyncio.to_thread(stack.__exit__, None, None, None)
