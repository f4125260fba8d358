"""The task page in a real browser: the live log and state of a running task, cancel for those
allowed (and a forged cancel refused), nothing for those who do not reach the repository, and a
finished task's whole story."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.browser.conftest import screenshot, sign_in
from tests.browser.test_feed import claude_stack
from tests.e2e.stack import REPO

# Works visibly, then waits to be cancelled: enough output (over 6 KB) that Porter's log
# redaction, which holds back the last kilobyte or so in case a secret is still arriving,
# releases some of it while the agent runs.
WORKS_THEN_WAITS = [
    *({"op": "print", "text": f"step {n:03d}: looking through src/ for the greeting " + "." * 40,
       "stream": "stderr"} for n in range(80)),
    {"op": "print", "text": "STILL-WORKING marker", "stream": "stderr"},
    {"op": "print", "text": "x" * 3000, "stream": "stderr"},
    {"op": "sleep", "seconds": 120},
]


def test_a_running_task_shows_its_live_log_and_is_cancelled_from_its_page(
        tmp_path: Path, browser: Any) -> None:
    from playwright.sync_api import expect

    stack = claude_stack(tmp_path, WORKS_THEN_WAITS)
    stack.fake.set_permission(REPO, "carol", "read")  # sees the repository, may not write
    stack.fake.add_user("mallory")  # reaches nothing
    with stack:
        owner, reader, outsider = (browser.new_context() for _ in range(3))
        page = sign_in(owner, stack, "alice")
        task_id = stack.comment("@porter find where the greeting is printed").json()["task_id"]
        page.goto(f"{stack.url}/tasks/{task_id}")
        page.locator("#live-status, #task-head").first.wait_for()

        # Opened while the task waits for its machine: state and log arrive live.
        expect(page.locator("#task-head .state")).to_have_text("running", timeout=30_000)
        expect(page.locator("#task-log")).to_contain_text("step 000: looking through src/",
                                                          timeout=30_000)
        expect(page.locator("#task-timeline")).to_contain_text("state.running")
        cancel = page.get_by_role("button", name="Cancel")
        expect(cancel).to_be_visible()

        # A reader of the repository sees the task, without the button; an outsider gets a 404.
        carol = sign_in(reader, stack, "carol")
        carol.goto(f"{stack.url}/tasks/{task_id}")
        expect(carol.locator("#task-head .state")).to_have_text("running")
        assert carol.get_by_role("button", name="Cancel").count() == 0
        refused = carol.request.post(f"{stack.url}/tasks/{task_id}/cancel",
                                     form={"csrf": _csrf(carol)})
        assert refused.status == 403
        mallory = sign_in(outsider, stack, "mallory")
        answer = mallory.goto(f"{stack.url}/tasks/{task_id}")
        assert answer is not None and answer.status == 404
        assert "find where the greeting" not in mallory.content()
        assert mallory.request.post(f"{stack.url}/tasks/{task_id}/cancel",
                                    form={"csrf": _csrf(mallory)}).status == 404

        # A cancel without the page's CSRF token (a forged form) is refused; the task goes on.
        forged = page.request.post(f"{stack.url}/tasks/{task_id}/cancel", form={"csrf": "x"})
        assert forged.status == 403
        assert page.request.post(f"{stack.url}/api/tasks/{task_id}/cancel").status == 403
        assert stack.task(task_id)["state"] == "running"

        cancel.click()
        expect(page.locator(".notice")).to_have_text("Cancelled.")
        expect(page.locator("#task-head .state")).to_have_text("cancelled")
        expect(page.get_by_role("button", name="Retry")).to_be_visible()
        assert stack.wait(task_id)["state"] == "cancelled"
        # The reader's open page follows without a reload.
        expect(carol.locator("#task-head .state")).to_have_text("cancelled", timeout=5000)

        audit = page.request.get(f"{stack.url}/api/tasks/{task_id}")
        assert json.loads(audit.text())["state"] == "cancelled"
        for context in (owner, reader, outsider):
            context.close()


def test_a_finished_task_page_tells_the_whole_story(tmp_path: Path, browser: Any) -> None:
    from playwright.sync_api import expect

    stack = claude_stack(tmp_path)
    with stack:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = sign_in(context, stack, "alice")
        task_id = stack.comment("@porter fix the typo in the README").json()["task_id"]
        assert stack.wait(task_id)["state"] == "succeeded"
        [pull] = stack.fake.pulls(REPO)

        page.goto(f"{stack.url}/tasks/{task_id}")
        head = page.locator("#task-head")
        expect(head.locator(".state")).to_have_text("succeeded")
        pr = head.locator("a.pr")
        expect(pr).to_have_text(f"pull request #{pull.number}")
        assert pr.get_attribute("href") == f"{stack.fake.web_url}/{REPO}/pull/{pull.number}"
        issue = head.get_by_role("link", name=f"#{stack.issue.number}", exact=True)
        assert issue.get_attribute("href") == \
            f"{stack.fake.web_url}/{REPO}/issues/{stack.issue.number}"
        expect(head).to_contain_text("$0.42")
        expect(head).to_contain_text("input tokens 18234")
        expect(head).to_contain_text("Fixed the typo in the README.")
        expect(head).to_contain_text("local")  # the machine: a local process, its id as text
        for kind in ("state.queued", "state.running", "stage.agent", "state.publishing",
                     "state.succeeded"):
            expect(page.locator("#task-timeline")).to_contain_text(kind)
        expect(page.locator("#task-log")).to_contain_text("Fixed 'Teh' → 'The' in README.md")
        expect(page.get_by_role("button", name="Retry")).to_be_visible()
        assert page.get_by_role("button", name="Cancel").count() == 0

        page.locator("details summary").click()
        prompt = page.locator("pre.prompt")
        expect(prompt).to_contain_text("fix the typo in the README")
        assert "sk-ant-" not in prompt.inner_text()
        screenshot(page, "task")
        context.close()


def _csrf(page: Any) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.content())
    assert found is not None
    return found.group(1)
