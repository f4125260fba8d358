"""A repository that verifies its changes, end to end: its default branch's `.porter.yml` runs
`python -m pytest -q` after the agent, in the agent's sandbox, and the pull request's body and
Porter's Check Run on its commit say whether the change passed. Real `porter serve`, the fake
GitHub on git, the real entrypoint and sandbox, a scripted agent."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import pytest

from tests.e2e.stack import REPO, Stack
from tests.fakes.sandbox import needs_bwrap

pytestmark = needs_bwrap

CALC_RIGHT = "def add(a, b):\n    return a + b\n"
CALC_WRONG = "def add(a, b):\n    return a - b\n"
TESTS = "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n"
PORTER_YML = 'verify: ["python -m pytest -q"]\n'


def write_calc(text: str, summary: str) -> list[dict[str, str]]:
    return [{"op": "write", "path": "calc.py", "text": text}, {"op": "print", "text": summary}]


@pytest.mark.parametrize(("start", "agent_writes", "conclusion", "headline"), [
    (CALC_RIGHT, CALC_WRONG, "failure", "❌ failed"),
    (CALC_WRONG, CALC_RIGHT, "success", "✅ passed"),
], ids=["breaks-a-test", "fixes-a-test"])
def test_the_pull_request_and_its_check_run_say_whether_verify_passed(
        tmp_path: Path, start: str, agent_writes: str, conclusion: str, headline: str) -> None:
    with Stack(tmp_path, script=write_calc(agent_writes, "Changed add.")) as stack:
        stack.fake.commit_files(REPO, "main", {
            "calc.py": start, "test_calc.py": TESTS, ".porter.yml": PORTER_YML})
        response = stack.comment("@porter change add")
        assert response.status_code == 202, response.text
        task = stack.wait(response.json()["task_id"], timeout=120)
        assert task["state"] == "succeeded", (task["stage"], task["reason"],
                                              stack.logs(task["id"])[-3000:])

        [pull] = stack.fake.pulls(REPO)
        assert f"**Verification: {headline}**" in pull.body
        assert "python -m pytest -q" in pull.body
        if conclusion == "failure":  # the failing test's output is shown under the table
            assert "assert -1 == 5" in pull.body
        head = stack.fake.ref_sha(REPO, f"heads/{pull.head_ref}")
        # The check run follows the pull request, as a job of its own.
        [check] = stack.wait_for(lambda: [run for run in stack.fake.check_runs(REPO)
                                          if run.status == "completed"], what="the check run")
        assert check.head_sha == head  # on the commit Porter wrote, not the base
        assert check.name == "Porter"
        assert check.history == [("queued", None), ("in_progress", None),
                                 ("completed", conclusion)]
        assert check.details_url == f"{stack.url}/tasks/{task['id']}"
        assert "python -m pytest -q" in check.output["text"]
        assert "Changed add." in check.output["summary"]
        assert f"/pull/{pull.number}" in check.output["summary"]

        # The run's verification, log and diff are artifacts of the task, as Porter keeps them.
        artifacts = stored_artifacts(tmp_path / "porter.db", task["id"])
        assert set(artifacts) == {"log", "verification", "changeset"}
        [result] = json.loads(artifacts["verification"])["results"]
        assert result["command"] == "python -m pytest -q"
        assert (result["exit_code"] == 0) == (conclusion == "success")
        assert "+    return a " in artifacts["changeset"].decode()
        assert "python -m pytest -q" in artifacts["log"].decode()


def stored_artifacts(database: Path, task_id: int) -> dict[str, bytes]:
    with contextlib.closing(sqlite3.connect(database)) as db:
        rows = db.execute("SELECT name, content FROM artifacts WHERE task_id = ?",
                          (task_id,)).fetchall()
    return {str(name): bytes(content) for name, content in rows}
