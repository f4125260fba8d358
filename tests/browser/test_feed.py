"""The live feed in a real browser: a task created by a webhook appears on an open page within
two seconds, and follows its state to the pull request, without a reload; a person who does not
reach the repository sees none of it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.browser.conftest import screenshot, sign_in, web_env
from tests.e2e.stack import EDIT_TWO_DELETE_ONE, REPO, Stack, agent_command

# What Claude Code prints: a few lines of work, then its JSON result with the cost and usage.
CLAUDE_FIXES_THE_TYPO = [
    {"op": "print", "text": "Reading README.md", "stream": "stderr"},
    {"op": "write", "path": "README.md", "text": "# Hello\n\nThe greeting project.\n"},
    {"op": "print", "text": "Fixed 'Teh' → 'The' in README.md", "stream": "stderr"},
    {"op": "claude_result", "subtype": "success", "is_error": False, "num_turns": 6,
     "result": "Fixed the typo in the README.\n\n'Teh greeting project' now reads "
               "'The greeting project'.",
     "total_cost_usd": 0.4213,
     "usage": {"input_tokens": 18234, "output_tokens": 1893, "cache_read_input_tokens": 40960}},
]
# The operator's key for Claude: never used by the scripted stand-in, but Porter will not start
# an agent that has none.
ANTHROPIC_KEY = "sk-ant-api03-browser-test-not-a-real-key-0000000000"


def claude_stack(tmp_path: Path, script: list[dict[str, Any]] | None = None) -> Stack:
    """A stack whose `claude` is the scripted agent, reporting as Claude Code does."""
    stack = Stack(tmp_path, script=EDIT_TWO_DELETE_ONE)  # the `scripted` agent's work
    stack.extra_env.update(web_env(stack))
    stack.extra_env.update({
        "PORTER_AGENT_CLAUDE_COMMAND": agent_command(script or CLAUDE_FIXES_THE_TYPO, stack.tag),
        "PORTER_SECRET_ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "PORTER_DEFAULT_AGENT": "claude",
    })
    return stack


def open_feed(context: Any, stack: Stack, login: str) -> Any:
    page = sign_in(context, stack, login)
    page.goto(f"{stack.url}/")
    page.locator("#live-status[data-state=open]").wait_for(timeout=5000)  # the stream is up
    return page


def test_a_webhooks_task_appears_on_an_open_feed_and_follows_its_state(
        tmp_path: Path, browser: Any) -> None:
    from playwright.sync_api import expect

    stack = claude_stack(tmp_path)
    stack.fake.add_user("mallory")  # reaches no repository of the App
    second = stack.fake.add_issue(REPO, title="Say hello louder", body="Use an exclamation mark.",
                                  user="alice")
    with stack:
        alice, outsider = browser.new_context(), browser.new_context()
        feed = open_feed(alice, stack, "alice")
        blind = open_feed(outsider, stack, "mallory")
        expect(feed.locator("#feed-empty")).to_be_visible()

        response = stack.comment("@porter fix the typo in the README")
        assert response.status_code == 202, response.text
        task_id = response.json()["task_id"]
        row = feed.locator(f"#task-{task_id}")
        expect(row).to_be_visible(timeout=2000)
        expect(feed.locator("#feed-empty")).to_be_hidden()
        expect(row).to_contain_text("fix the typo in the README")
        expect(row).to_contain_text("@alice")

        # Its state changes reach the same page, through to the pull request and its cost.
        ended = stack.wait(task_id, timeout=90)
        assert ended["state"] == "succeeded", ended  # says why, when it did not
        expect(row.locator(".state")).to_have_text("succeeded", timeout=5000)
        [pull] = stack.fake.pulls(REPO)
        expect(row.locator("a.pr")).to_have_text(f"#{pull.number}")
        expect(row).to_contain_text("$0.42")

        # A second task comes in on top, as a timeline does.
        response = stack.comment("@porter scripted make the greeting louder",
                                 number=second.number)
        newer = response.json()["task_id"]
        expect(feed.locator(f"#task-{newer}")).to_be_visible(timeout=2000)
        assert feed.locator("tr.task-row").first.get_attribute("id") == f"task-{newer}"
        ended = stack.wait(newer, timeout=90)
        assert ended["state"] == "succeeded", ended
        expect(feed.locator(f"#task-{newer} .state")).to_have_text("succeeded", timeout=5000)

        # Nothing of it ever reached the outsider's open feed.
        assert blind.locator("tr.task-row").count() == 0
        expect(blind.locator("#feed-empty")).to_be_visible()
        blind.reload()
        assert blind.locator("tr.task-row").count() == 0
        answer = blind.request.get(f"{stack.url}/api/tasks")
        assert answer.ok and json.loads(answer.text())["tasks"] == []

        screenshot(feed, "feed")
        alice.close()
        outsider.close()
