"""`.porter.yml` at dispatch, through Porter whole (tests/fakes/world.py) and the fake GitHub.

Only the default branch's file counts (a pull request's branch is written by whoever can push to
it), and a file Porter cannot use fails the task with one status comment naming the line and the
problem, before any machine exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from porter.states import Stage, TaskState
from tests.fakes.world import REPO, World, open_world

INVALID = b'verify: ["python -m pytest -q"]\ntimeout: "3 days"\n'
VALID = b'verify: ["python -m pytest -q"]\ntimeout: 10m\n'


async def context(world: World, task_id: int) -> dict[str, Any]:
    return (await world.task(task_id)).context


async def test_an_invalid_file_fails_the_task_with_one_comment_and_no_machine(
    tmp_path: Path,
) -> None:
    async with open_world(tmp_path) as world:
        world.fake.commit_files(REPO, "main", {".porter.yml": INVALID})
        task_id = await world.request()
        await world.settle()

        task = await world.task(task_id)
        assert task.state is TaskState.FAILED
        assert task.stage == Stage.DISPATCH
        [status] = world.porter_comments()
        assert "line 2" in status
        assert "is not a duration" in status
        assert world.runner.launched == []
        assert await world.store.current_run(task_id) is None


async def test_the_pull_request_branchs_file_has_no_effect(tmp_path: Path) -> None:
    async with open_world(tmp_path) as world:
        main = world.fake.commit_files(REPO, "main", {".porter.yml": VALID})
        world.fake.commit_files(REPO, "feature", {".porter.yml": INVALID})
        pull = world.fake.add_pull(REPO, head_ref="feature", user="alice")

        task_id = await world.request(number=pull.number)
        await world.settle()

        task = await world.task(task_id)
        assert task.is_pull_request
        assert task.state is TaskState.STARTING
        assert [r.task_id for r in world.runner.launched] == [task_id]
        recorded = await context(world, task_id)
        assert recorded["repo_config_commit"] == main
        assert recorded["repo_config"]["timeout_s"] == 600
        assert recorded["repo_config"]["verify"] == ["python -m pytest -q"]


async def test_a_repository_without_the_file_starts_as_before(tmp_path: Path) -> None:
    async with open_world(tmp_path) as world:
        task_id = await world.request()
        await world.settle()

        assert (await world.task(task_id)).state is TaskState.STARTING
        assert [r.task_id for r in world.runner.launched] == [task_id]
        assert "repo_config" not in await context(world, task_id)


CONTENTS = rf"/repos/{REPO}/contents/\.porter\.yml"


async def test_a_passing_github_failure_leaves_the_task_queued_for_the_next_pass(
    tmp_path: Path,
) -> None:
    async with open_world(tmp_path) as world:
        world.fake.commit_files(REPO, "main", {".porter.yml": VALID})
        world.fake.fail("GET", CONTENTS, 502, times=1)
        task_id = await world.request()
        await world.runtime.dispatcher.tick()

        assert (await world.task(task_id)).state is TaskState.QUEUED
        assert world.runner.launched == []

        await world.settle()  # GitHub answers again
        assert (await world.task(task_id)).state is TaskState.STARTING
        assert (await world.task(task_id)).context["repo_config"]["timeout_s"] == 600


async def test_a_lasting_github_refusal_fails_the_task_saying_so(tmp_path: Path) -> None:
    async with open_world(tmp_path) as world:
        world.fake.commit_files(REPO, "main", {".porter.yml": VALID})
        # What GitHub answers an App without contents: read on the repository.
        world.fake.fail("GET", CONTENTS, 403, times=10,
                        body={"message": "Resource not accessible by integration"})
        task_id = await world.request()
        await world.settle()

        assert (await world.task(task_id)).state is TaskState.FAILED
        [status] = world.porter_comments()
        assert ".porter.yml could not be read" in status
        assert world.runner.launched == []


async def test_a_retry_reads_the_file_again(tmp_path: Path) -> None:
    async with open_world(tmp_path) as world:
        world.fake.commit_files(REPO, "main", {".porter.yml": VALID})
        task_id, machine = await world.started()
        assert (await machine.complete({"status": "failed", "error": "tests broke"})).is_success
        await world.settle()
        assert (await world.task(task_id)).state is TaskState.FAILED
        world.fake.commit_files(REPO, "main", {".porter.yml": None})  # removed since

        assert await world.store.retry(task_id) is not None
        await world.settle()

        assert (await world.task(task_id)).state is TaskState.STARTING
        assert (await world.task(task_id)).context.get("repo_config") is None
