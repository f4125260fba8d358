"""Issue to pull request on this machine: real server, fake GitHub on git, real entrypoint."""

from __future__ import annotations

import base64
import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.e2e.stack import EDIT_TWO_DELETE_ONE, REPO, Stack
from tests.fakes.sandbox import needs_bwrap

pytestmark = needs_bwrap

CANARY = "sk-canary-8c1f2e9d4b7a6053"


def test_a_comment_ends_with_a_pull_request(tmp_path: Path) -> None:
    with Stack(tmp_path, script=EDIT_TWO_DELETE_ONE) as stack:
        response = stack.comment("@porter fix the typo")
        assert response.status_code == 202, response.text
        task = stack.wait(response.json()["task_id"])
        assert task["state"] == "succeeded", task

        [pull] = stack.fake.pulls(REPO)
        assert f"Closes #{stack.issue.number}" in pull.body
        main = stack.fake.ref_sha(REPO, "heads/main")
        head = stack.fake.ref_sha(REPO, f"heads/{pull.head_ref}")
        assert head is not None and main is not None
        assert stack.fake.commit_parents(REPO, head) == [main]
        before, after = stack.fake.read_tree(REPO, main), stack.fake.read_tree(REPO, head)
        changed = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
        assert changed == {"README.md", "src/app.py", "old.txt"}
        assert "old.txt" not in after
        assert after["README.md"][1] == b"# Hello\n\nThe greeting project.\n"
        assert after["bin/run.sh"] == before["bin/run.sh"]

        stack.status_comment(starts="✅")
        links = [c for c in stack.porter_comments() if "porter:link" in c.body]
        assert len(links) == 1 and f"/pull/{pull.number}" in links[0].body
        kinds = [e["kind"] for e in task["events"]]
        for kind in ("state.queued", "authorized", "state.starting", "machine.started",
                     "state.running", "stage.clone", "stage.agent", "state.publishing",
                     "state.succeeded"):
            assert kind in kinds, (kind, kinds)


def test_cancel_stops_the_agent_and_publishes_nothing(tmp_path: Path) -> None:
    script = [{"op": "write", "path": "x", "text": "x"}, {"op": "sleep", "seconds": 120}]
    with Stack(tmp_path, script=script) as stack:
        task_id = stack.comment("@porter fix the typo").json()["task_id"]
        stack.wait_for(lambda: len(stack.agent_pids()) == 3, what="the agent to start")
        pids = stack.agent_pids()
        assert stack.comment("@porter cancel").status_code == 202
        stack.wait_for(lambda: not any(map(_alive, pids)), timeout=10, what="the agent to exit")
        task = stack.wait(task_id)
        assert task["state"] == "cancelled"
        assert stack.fake.pulls(REPO) == []
        stack.status_comment(starts="🛑 Cancelled")


def test_killed_entrypoint_fails_the_task_and_destroys_the_machine(tmp_path: Path) -> None:
    script = [{"op": "sleep", "seconds": 120}]
    with Stack(tmp_path, script=script) as stack:
        task_id = stack.comment("@porter fix the typo").json()["task_id"]
        stack.wait_for(lambda: len(stack.agent_pids()) == 3, what="the agent to start")
        pids = stack.agent_pids()
        os.kill(_entrypoint_pid(pids), signal.SIGKILL)
        task = stack.wait(task_id, timeout=30)
        assert (task["state"], task["stage"]) == ("failed", "agent")
        stack.wait_for(lambda: not any(map(_alive, pids)), timeout=15,
                       what="the orphaned agent to be destroyed")
        status = stack.status_comment(starts="❌")
        assert "machine" in status.body


def test_porter_restarted_mid_run_still_publishes(tmp_path: Path) -> None:
    # The agent holds until the test lets it go, after the restart: it runs through it.
    script = [{"op": "write", "path": "README.md", "text": "fixed\n"},
              {"op": "wait_for", "path": "go"}]
    # Heartbeats find no one while Porter restarts; a busy host's restart may outlast 8 s.
    with Stack(tmp_path, script=script, env={"PORTER_HEARTBEAT_TIMEOUT": "60"}) as stack:
        task_id = stack.comment("@porter fix the typo").json()["task_id"]
        checkout = stack.wait_for(lambda: stack.agent_checkout("README.md"),
                                  what="the agent to start")
        agent = stack.agent_pids()
        assert stack.server is not None and stack.server.process is not None
        before = stack.server.process.pid
        stack.restart()
        assert stack.server.process is not None and stack.server.process.pid != before
        assert stack.task(task_id)["state"] == "running"
        assert agent and all(map(_alive, agent))  # the same agent, still at work

        (checkout / "go").write_text("")
        task = stack.wait(task_id, timeout=60)
        assert task["state"] == "succeeded", task
        assert task["attempt"] == 1  # finished by the run started before the restart
        [pull] = stack.fake.pulls(REPO)
        main = stack.fake.ref_sha(REPO, "heads/main")
        head = stack.fake.ref_sha(REPO, f"heads/{pull.head_ref}")
        assert main is not None and head is not None
        before_tree, after_tree = stack.fake.read_tree(REPO, main), stack.fake.read_tree(REPO, head)
        assert {p for p in before_tree.keys() | after_tree.keys()
                if before_tree.get(p) != after_tree.get(p)} == {"README.md"}
        assert after_tree["README.md"][1] == b"fixed\n"
        stack.status_comment(starts="✅")


def test_a_canary_secret_never_surfaces(tmp_path: Path) -> None:
    script = [
        {"op": "write", "path": "README.md", "text": "fixed\n"},
        {"op": "print_secret", "var": "CANARY_KEY", "style": "raw"},
        {"op": "print_secret", "var": "CANARY_KEY", "style": "base64"},
        {"op": "print_secret", "var": "CANARY_KEY", "style": "split"},
        {"op": "print", "text": f"summary mentions {CANARY[:10]}"},
        {"op": "print_secret", "var": "CANARY_KEY", "style": "raw"},
    ]
    env = {"PORTER_SECRET_CANARY_KEY": CANARY, "PORTER_AGENT_SCRIPTED_KEYS": "CANARY_KEY"}
    with Stack(tmp_path, script=script, env=env) as stack:
        task_id = stack.comment("@porter fix the typo").json()["task_id"]
        task = stack.wait(task_id)
        assert task["state"] == "succeeded", task
        logs = stack.logs(task_id)
        assert "redacted" in logs.lower()
        surfaces = [logs, str(task), *(c.body for c in stack.porter_comments()),
                    *(p.body for p in stack.fake.pulls(REPO))]
        encoded = base64.b64encode(CANARY.encode()).decode()
        for text in surfaces:
            joined = "".join(text.split())
            assert CANARY not in joined and encoded[:-2] not in joined


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic abc"])
def test_callbacks_need_the_runs_own_token(tmp_path: Path, header: str | None) -> None:
    script = [{"op": "sleep", "seconds": 120}]
    with Stack(tmp_path, script=script) as stack:
        task_id = stack.comment("@porter fix the typo").json()["task_id"]
        stack.wait_for(stack.agent_pids, what="the agent to start")
        run_id = stack.task(task_id)["events"][2]["data"]["run_id"]
        headers = {"Authorization": header} if header else {}
        for method, path, body in (("GET", "spec", None),
                                   ("POST", "heartbeat", {"stage": "agent", "message": "x"}),
                                   ("POST", "complete", {"status": "succeeded"})):
            response = httpx.request(method, f"{stack.url}/api/runs/{run_id}/{path}",
                                     json=body, headers=headers)
            assert response.status_code == 401, (path, response.text)
        assert stack.task(task_id)["state"] == "running"


def _entrypoint_pid(sandboxed: list[int]) -> int:
    """The entrypoint is the parent of the outermost sandboxed process (bwrap)."""
    parents = {pid: int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
               for pid in sandboxed}
    [outside] = {ppid for ppid in parents.values() if ppid not in parents}
    return outside


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
