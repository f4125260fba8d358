"""A Porter killed mid-work picks up at once on restart; two Porters on one host keep apart.

Real `porter serve` processes, the fake GitHub on git, agents in their sandbox.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tests.conftest import ROOT
from tests.e2e.stack import EDIT_TWO_DELETE_ONE, REPO, Stack
from tests.fakes.sandbox import needs_bwrap

pytestmark = needs_bwrap

PULLS = rf"/repos/{REPO}/pulls"
HOSTILE = [sys.executable, str(ROOT / "tests" / "fakes" / "hostile_agent.py")]
STATUS_EDIT = rf"/repos/{REPO}/issues/comments/\d+"
# Far below the 300 s job lease: a job taken back only when its lease ran out fails this.
SOON = 60
# The machine keeps running while Porter restarts, and its heartbeats find no one: on a busy
# host a restart can take longer than the stack's usual 8 s of allowed silence.
OUTLIVES_A_RESTART = {"PORTER_HEARTBEAT_TIMEOUT": "60"}


def test_a_porter_killed_while_publishing_opens_the_pull_request_at_once_on_restart(
    tmp_path: Path,
) -> None:
    with Stack(tmp_path, script=EDIT_TWO_DELETE_ONE, env=OUTLIVES_A_RESTART) as stack:
        # The first PR creation is held: Porter is inside its publish job when it is killed.
        stack.fake.delay("POST", PULLS, 600)
        task_id = stack.comment("@porter fix the typo").json()["task_id"]
        stack.wait_for(lambda: stack.fake.calls_to("POST", PULLS), timeout=60,
                       what="Porter to be opening the pull request")
        assert stack.task(task_id)["state"] == "publishing"

        stack.restart()  # SIGKILL, then a new process on the same database

        task = stack.wait(task_id, timeout=SOON)
        assert task["state"] == "succeeded", (task["stage"], task["reason"])
        assert len(stack.fake.pulls(REPO)) == 1
        stack.status_comment(starts="✅")


def test_a_porter_killed_after_a_state_change_shows_the_real_state_on_restart(
    tmp_path: Path,
) -> None:
    with Stack(tmp_path, script=EDIT_TWO_DELETE_ONE, env=OUTLIVES_A_RESTART) as stack:
        # The first edit of the status comment (for the task's first state change) is held, and
        # Porter is killed while it hangs: the comment still reads "queued". The restarted
        # Porter must bring it to the task's real state, from what the state changes committed.
        stack.fake.delay("PATCH", STATUS_EDIT, 600)
        task_id = stack.comment("@porter fix the typo").json()["task_id"]
        stack.wait_for(lambda: stack.fake.calls_to("PATCH", STATUS_EDIT), timeout=60,
                       what="the first status edit to be under way")
        stack.restart()
        task = stack.wait(task_id, timeout=SOON)
        assert task["state"] == "succeeded", (task["stage"], task["reason"])
        stack.status_comment(starts="✅", timeout=SOON)


def test_two_porters_on_one_host_each_finish_their_own_tasks(tmp_path: Path) -> None:
    # Each agent holds until the test lets it go, so both Porters' machines are alive together
    # while each Porter's watchdog (every second here) looks for orphans.
    command = [*HOSTILE, json.dumps({"name": "done", "wait_for": "go"})]
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    with Stack(tmp_path / "one", command=command) as one, \
            Stack(tmp_path / "two", command=command) as two:
        first = one.comment("@porter fix the typo").json()["task_id"]
        second = two.comment("@porter fix the typo").json()["task_id"]
        checkouts = [stack.wait_for(lambda s=stack: s.agent_checkout("done.txt"),
                                    what="the agent to start") for stack in (one, two)]
        assert one.instance_id() != two.instance_id()
        time.sleep(3)  # several watchdog passes of each; what they may not do is kill the other
        for checkout in checkouts:
            (checkout / "go").write_text("")
        for stack, task_id in ((one, first), (two, second)):
            task = stack.wait(task_id)
            assert task["state"] == "succeeded", (task["stage"], task["reason"])
            assert len(stack.fake.pulls(REPO)) == 1
