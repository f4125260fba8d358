"""What a repository's `.porter.yml` changes about its tasks, through Porter whole
(tests/fakes/world.py): the agent and model that run, how long an attempt may run, and what one
run may spend through the gateway. The rules are docs/repo-config.md's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from porter.states import Stage, TaskState
from tests.fakes.world import REPO, World, open_world
from tests.gateway_helpers import gateway_world
from tests.integration.test_metering import claude
from tests.settings_helpers import saved
from tests.web_helpers import signed_in

# A second agent of the operator's, holding the same key as the world's default ("tester").
OTHER = {"PORTER_AGENT_OTHER_COMMAND": "other-cli --go", "PORTER_AGENT_OTHER_KEYS": "CANARY_KEY"}


async def spec_of(world: World, task_id: int) -> dict[str, Any]:
    response = await (await world.machine(task_id)).spec()
    assert response.status_code == 200, response.text
    spec: dict[str, Any] = response.json()
    return spec


async def test_a_named_agent_the_file_does_not_allow_fails_with_one_comment_and_no_machine(
    tmp_path: Path,
) -> None:
    async with open_world(tmp_path, env=OTHER) as world:
        world.fake.commit_files(REPO, "main", {".porter.yml": b"agents: [tester, codex]\n"})
        task_id = await world.request("@porter other fix the typo")
        await world.settle()

        task = await world.task(task_id)
        assert (task.state, task.stage) == (TaskState.FAILED, Stage.DISPATCH)
        [status] = world.porter_comments()
        assert "only codex and tester, not other" in status
        assert world.runner.launched == []
        assert await world.store.current_run(task_id) is None


async def test_with_no_agent_named_the_files_agent_and_model_run(tmp_path: Path) -> None:
    async with open_world(tmp_path, env=OTHER) as world:
        world.fake.commit_files(REPO, "main", {".porter.yml": b"agent: other\nmodel: m-1\n"})
        task_id = await world.request("@porter fix the typo")
        await world.settle()

        task = await world.task(task_id)
        assert (task.state, task.agent, task.model) == (TaskState.STARTING, "other", "m-1")
        [status] = world.porter_comments()
        assert "other (m-1)" in status
        spec = await spec_of(world, task_id)
        assert spec["agent"]["name"] == "other"
        assert spec["agent"]["env"]["PORTER_MODEL"] == "m-1"
        page = await world.api("GET", f"/api/tasks/{task_id}")
        assert (page["agent"], page["model"]) == ("other", "m-1")


async def test_a_named_agent_keeps_the_comments_model(tmp_path: Path) -> None:
    async with open_world(tmp_path, env=OTHER) as world:
        world.fake.commit_files(REPO, "main", {".porter.yml": b"agent: other\nmodel: m-1\n"})
        task_id = await world.request("@porter tester --model m-9 fix the typo")
        await world.settle()

        task = await world.task(task_id)
        assert (task.state, task.agent, task.model) == (TaskState.STARTING, "tester", "m-9")
        spec = await spec_of(world, task_id)
        assert (spec["agent"]["name"], spec["agent"]["env"]["PORTER_MODEL"]) == ("tester", "m-9")


async def test_the_file_comes_before_a_requesters_defaults_and_a_comments_model_first(
    tmp_path: Path,
) -> None:
    async with open_world(tmp_path, env=OTHER) as world:
        world.fake.commit_files(REPO, "main", {".porter.yml": b"agents: [tester]\nmodel: m-1\n"})
        for login in ("alice", "bob"):  # each has chosen another agent and model of their own
            await saved(await signed_in(world, login), default_agent="other", default_model="m-5")
        defaults = await world.request("@porter fix the typo", user="alice", number=1)
        model = await world.request("@porter --model m-9 fix the typo", user="bob", number=2)
        await world.settle()

        # `other` is not allowed here: the operator's default runs, with the file's model ...
        task = await world.task(defaults)
        assert (task.state, task.agent, task.model) == (TaskState.STARTING, "tester", "m-1")
        # ... unless the comment named a model.
        task = await world.task(model)
        assert (task.state, task.agent, task.model) == (TaskState.STARTING, "tester", "m-9")


async def test_the_watchdog_ends_a_run_past_the_files_shorter_timeout(tmp_path: Path) -> None:
    async with open_world(tmp_path) as world:
        world.fake.commit_files(REPO, "main", {".porter.yml": b"timeout: 10m\n"})
        task_id, machine = await world.started()
        start = (await world.run(task_id)).created_at
        # Within the file's 10 minutes (and far within the operator's hour), it keeps running.
        for at in (100, 200, 300, 400, 500, 599):
            world.clock.now = start + at
            await machine.heartbeat()
            await world.runtime.watchdog.tick(world.clock.now)
        assert (await world.task(task_id)).state is TaskState.RUNNING

        world.clock.now = start + 601
        await world.runtime.watchdog.tick(world.clock.now)

        task = await world.task(task_id)
        assert task.state is TaskState.TIMED_OUT
        assert task.reason == "it ran past the 10m 00s limit"


async def test_the_gateway_holds_a_run_to_the_files_smaller_budget(
    tmp_path: Path, pem: str,
) -> None:
    async with gateway_world(tmp_path, pem, env={"PORTER_RUN_BUDGET_USD": "1.00"}) as gw:
        gw.world.fake.commit_files(REPO, "main", {".porter.yml": b"budget_usd: 0.05\n"})
        task_id, caller = await gw.world.started()
        token = gw.token(caller.run_id)
        assert (await claude(gw, token)).status_code == 200  # $0.03 of $0.05
        assert (await claude(gw, token)).status_code == 200  # $0.06: crosses the line
        sent = len(gw.provider.requests)

        refused = await claude(gw, token)  # far under the operator's $1.00

        assert refused.status_code == 402
        reason = ("the run is over its per-run budget: $0.06 spent of $0.05 "
                  "(budget_usd in .porter.yml)")
        assert refused.json()["error"]["message"] == reason
        assert len(gw.provider.requests) == sent
        task = await gw.world.task(task_id)
        assert (task.state, task.stage, task.reason) == (TaskState.FAILED, Stage.BUDGET, reason)
