"""The machine's side of verification, through Porter whole (tests/fakes/world.py): the spec
hands the machine the default branch's setup and verify commands, their time limit and the
repository's instructions; the completion's verification report, log and diff are validated,
redacted and kept as the task's artifacts, and the report reaches the pull request."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from porter.states import TaskState
from tests.fakes.world import ADMIN, CANARY, REPO, World, open_world

CONFIG = b"""\
setup: ["pip install -e ."]
verify: ["python -m pytest -q", "ruff check ."]
verify_timeout: 5m
instructions: |
  Write tests with pytest.
"""


def report(*, tail: str = "1 passed", exit_code: int = 0) -> dict[str, Any]:
    def command(phase: str, text: str, code: int, output: str) -> dict[str, Any]:
        return {"phase": phase, "command": text, "exit_code": code, "duration_s": 1.5,
                "timed_out": False, "output_tail": output, "junit_xml": None}

    return {"commands": [command("setup", "pip install -e .", 0, "installed"),
                         command("verify", "python -m pytest -q", exit_code, tail),
                         command("verify", "ruff check .", 0, "All checks passed!")]}


async def artifacts(world: World, task_id: int) -> dict[str, bytes]:
    listed = (await world.api("GET", f"/api/tasks/{task_id}"))["artifacts"]
    found = {}
    for item in listed:
        response = await world.client.get(item["url"], headers=ADMIN)
        assert response.status_code == 200, response.text
        found[item["name"]] = response.content
    return found


async def test_the_spec_carries_the_default_branchs_commands_limit_and_instructions(
        tmp_path: Path) -> None:
    async with open_world(tmp_path) as world:
        world.fake.commit_files(REPO, "main", {".porter.yml": CONFIG})
        task_id = await world.request("@porter fix the typo")
        await world.settle()
        spec = (await (await world.machine(task_id)).spec()).json()
        assert spec["setup"] == ["pip install -e ."]
        assert spec["verify"] == ["python -m pytest -q", "ruff check ."]
        assert spec["verify_timeout_s"] == 300
        # Both phases' limits are set aside from the task's time: the agent gets the rest.
        timeout = world.settings.task_timeout
        assert spec["limits"]["agent_timeout_s"] <= timeout - 2 * 300
        assert "Write tests with pytest." in spec["prompt"]
        assert "its .porter.yml, on the default branch" in spec["prompt"]


async def test_no_file_means_no_commands_and_the_whole_time_for_the_agent(
        tmp_path: Path) -> None:
    async with open_world(tmp_path) as world:
        task_id = await world.request("@porter fix the typo")
        await world.settle()
        spec = (await (await world.machine(task_id)).spec()).json()
        assert "verify" not in spec and "setup" not in spec
        assert spec["limits"]["agent_timeout_s"] >= world.settings.task_timeout - 61


async def test_a_completion_keeps_its_report_log_and_diff_redacted_and_the_pr_shows_them(
        tmp_path: Path) -> None:
    async with open_world(tmp_path) as world:
        world.fake.commit_files(REPO, "main", {".porter.yml": CONFIG})
        task_id, machine = await world.started()
        await machine.post("logs", {"seq": 0, "text": f"agent says {CANARY}\n"})
        patch = (f"--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-Teh\n+The {CANARY}\n")
        response = await machine.complete({
            "status": "succeeded", "summary": "Fixed it.", "changeset": world.changeset(),
            "patch": patch,
            "verification": report(exit_code=1, tail=f"FAILED token={CANARY}")})
        assert response.status_code == 200, response.text
        await world.settle()

        assert (await world.task(task_id)).state is TaskState.SUCCEEDED
        kept = await artifacts(world, task_id)
        assert set(kept) == {"log", "verification", "changeset"}
        for content in kept.values():
            assert CANARY.encode() not in content
        assert b"agent says" in kept["log"]
        assert b"+The " in kept["changeset"]
        results = json.loads(kept["verification"])
        assert results["outcome"] == "failed"
        assert [r["exit_code"] for r in results["results"]] == [0, 1, 0]
        [pull] = world.fake.pulls(REPO)
        assert "**Verification: ❌ failed**" in pull.body
        assert "FAILED token=" in pull.body and CANARY not in pull.body
        [status] = [c for c in world.porter_comments() if "porter:status" in c]
        assert status.startswith(f"✅ Opened #{pull.number}")
        assert "· verification ❌ failed ·" in status.split("\n")[0]


async def test_a_machine_that_sends_no_diff_still_leaves_its_changes_readable(
        tmp_path: Path) -> None:
    async with open_world(tmp_path) as world:
        task_id, machine = await world.started()
        response = await machine.complete({"status": "succeeded", "summary": "Fixed it.",
                                           "changeset": world.changeset()})
        assert response.status_code == 200, response.text
        listing = (await artifacts(world, task_id))["changeset"].decode()
        assert "+++ README.md (100644)\n# Hello\n\nThe greeting project." in listing


async def test_a_malformed_report_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    async with open_world(tmp_path) as world:
        task_id, machine = await world.started()
        before = await world.snapshot([task_id], [machine.run_id])
        bad = report()
        bad["commands"][1]["exit_code"] = "one"
        for verification in (bad, {"commands": "all"}, {"commands": [], "extra": 1}):
            response = await machine.complete({"status": "succeeded", "summary": "x",
                                               "changeset": world.changeset(),
                                               "verification": verification})
            assert response.status_code == 400, response.text
        assert await world.snapshot([task_id], [machine.run_id]) == before
        assert (await world.api("GET", f"/api/tasks/{task_id}"))["artifacts"] == []


async def test_a_retry_builds_on_the_default_branch_and_reads_its_file_as_they_are_now(
        tmp_path: Path) -> None:
    async with open_world(tmp_path) as world:
        first_head = world.fake.commit_files(REPO, "main", {".porter.yml": CONFIG})
        task_id, machine = await world.started()
        spec = (await machine.spec()).json()
        assert (spec["base_sha"], spec["verify"][0]) == (first_head, "python -m pytest -q")
        assert (await machine.complete({"status": "failed", "exit_code": 1})).status_code == 200
        await world.settle()

        # Meanwhile the default branch moves on, and its file with it.
        new_head = world.fake.commit_files(REPO, "main", {".porter.yml": b"verify: [make]\n"})
        await world.comment("@porter retry")
        await world.settle()

        task = await world.task(task_id)
        assert (task.state, task.attempt) == (TaskState.STARTING, 2)
        spec = (await (await world.machine(task_id)).spec()).json()
        assert (spec["base_sha"], spec["verify"]) == (new_head, ["make"])
        assert task.context["repo_config_commit"] == new_head


async def test_a_retry_on_a_pull_request_builds_on_its_branchs_new_head(tmp_path: Path) -> None:
    async with open_world(tmp_path) as world:
        first_head = world.fake.commit_files(REPO, "feature", {"notes.txt": b"one\n"})
        pull = world.fake.add_pull(REPO, head_ref="feature", user="alice")
        task_id = await world.request(number=pull.number)
        await world.settle()
        machine = await world.machine(task_id)
        assert (await machine.spec()).json()["base_sha"] == first_head
        assert (await machine.complete({"status": "failed", "exit_code": 1})).status_code == 200
        await world.settle()

        # Someone pushes to the pull request's branch; a retry starts from what is there now.
        new_head = world.fake.commit_files(REPO, "feature", {"notes.txt": b"two\n"})
        await world.comment("@porter retry", number=pull.number)
        await world.settle()

        assert (await world.task(task_id)).attempt == 2
        spec = (await (await world.machine(task_id)).spec()).json()
        assert spec["base_sha"] == new_head
