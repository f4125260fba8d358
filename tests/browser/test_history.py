"""The history page in a real browser: filters, type-ahead, pages, and its screenshot.

One task goes through Porter for real (comment, agent, pull request); the rest of a busy
history is written into Porter's database directly, as bench/pages.py does at scale, across
repositories the signed-in person reaches and one they do not.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.browser.conftest import screenshot, sign_in, web_env
from tests.e2e.stack import EDIT_TWO_DELETE_ONE, REPO, Stack

VISIBLE = {"octo/hello": 42, "octo/api": 42, "octo/docs": 42, "acme/widgets": 43}
HIDDEN = "acme/secret"  # alice has no role there: its tasks must never reach her page
BRANCHES = {"octo/hello": ["main", "release/1.2"], "octo/api": ["main", "develop"],
            "octo/docs": ["main"], "acme/widgets": ["master", "release/2.0"],
            HIDDEN: ["main", "secret-plan"]}
INSTRUCTIONS = (
    "fix the flaky login test", "add pagination to the /users endpoint",
    "update the README install steps", "bump lodash to 4.17.21",
    "make the widgets green", "rename getUser to fetchUser everywhere",
    "add a dark mode toggle to the settings page", "document the retry flag",
    "remove the deprecated v1 client", "speed up the CSV export",
)
STATES = ("succeeded", "succeeded", "succeeded", "failed", "cancelled", "timed_out", "rejected")
PEOPLE = ("alice", "bob", "carol", "dmitri")
AGENTS = ("claude", "claude", "codex", "aider", "gemini")


def fill_history(database: Path, count: int) -> None:
    """`count` finished tasks over the last days, written as the store writes them."""
    rng = random.Random(9)
    now = time.time()
    db = sqlite3.connect(database)
    try:
        with db:
            for n in range(count):
                repo = rng.choice([*VISIBLE, HIDDEN])
                state = rng.choice(STATES)
                at = now - (count - n) * 2400 - rng.random() * 600
                number = rng.randint(3, 60)
                pull = rng.random() < 0.3
                key = f"issue_comment:{9_000_000 + n}"
                db.execute("INSERT INTO deliveries VALUES (?, 'issue_comment', ?, ?)",
                           (f"seed-{n}", key, at))
                db.execute(
                    "INSERT INTO tasks (delivery_id, comment_key, repo, installation_id,"
                    " issue_number, is_pull_request, comment_kind, comment_id, requester, agent,"
                    " instruction, state, created_at, updated_at, base_ref, pr_number, cost_usd,"
                    " finished_at) VALUES (?, ?, ?, ?, ?, ?, 'issue_comment', ?, ?, ?, ?, ?, ?,"
                    " ?, ?, ?, ?, ?)",
                    (f"seed-{n}", key, repo, VISIBLE.get(repo, 43), number, int(pull),
                     9_000_000 + n, rng.choice(PEOPLE), rng.choice(AGENTS),
                     rng.choice(INSTRUCTIONS), state, at, at + 600,
                     rng.choice(BRANCHES[repo]),
                     100 + n if state == "succeeded" else None,
                     round(rng.uniform(0.05, 2.5), 2) if state != "rejected" else None,
                     at + 600))
    finally:
        db.close()


@contextlib.contextmanager
def serving(stack: Stack) -> Iterator[Stack]:
    """`with stack:`, except that the stack is left from another thread: leaving runs
    asyncio.run, which Playwright's own event loop in this thread refuses."""
    stack.__enter__()
    try:
        yield stack
    finally:
        leave = threading.Thread(target=stack.__exit__, args=(None, None, None))
        leave.start()
        leave.join()


def options(page: Any, datalist: str) -> list[str]:
    values: list[str] = page.locator(f"#{datalist} option").evaluate_all(
        "options => options.map(option => option.value)")
    return values


def suggested(page: Any, datalist: str, expected: list[str]) -> None:
    """Wait until the type-ahead has filled `datalist` with exactly `expected`."""
    deadline = time.monotonic() + 10
    while options(page, datalist) != expected:
        assert time.monotonic() < deadline, (datalist, options(page, datalist), expected)
        page.wait_for_timeout(50)


def test_history_filters_type_ahead_and_pages(tmp_path: Path, browser: Any) -> None:
    stack = Stack(tmp_path, script=EDIT_TWO_DELETE_ONE)
    stack.extra_env.update(web_env(stack))
    for repo, installation in [*VISIBLE.items(), (HIDDEN, 43)]:
        if repo != REPO:
            stack.fake.add_repo(repo, files={"README.md": b"hi\n"}, installation_id=installation)
    for repo in VISIBLE:
        stack.fake.set_permission(repo, "alice", "write")
    with serving(stack):
        assert stack.server is not None
        fill_history(tmp_path / "porter.db", 60)
        # And one task the whole way: comment, agent, pull request.
        response = stack.comment("@porter fix the typo in the README")
        real = int(response.json()["task_id"])
        assert stack.wait(real)["state"] == "succeeded"

        context = browser.new_context(viewport={"width": 1440, "height": 900})
        page = sign_in(context, stack, "alice")
        page.goto(f"{stack.server.url}/tasks?limit=15")
        rows = page.locator("tr.task-row")
        assert rows.count() == 15
        assert rows.first.get_attribute("id") == f"task-{real}"
        assert HIDDEN not in page.content()
        screenshot(page, "history")

        # Type-ahead: only what alice reaches, the best match first.
        repo_field = page.get_by_label("Repository")
        repo_field.fill("wid")
        suggested(page, "history-repos", ["acme/widgets"])
        repo_field.fill("ac")
        suggested(page, "history-repos", ["acme/widgets"])  # never acme/secret
        repo_field.fill("o")
        suggested(page, "history-repos", ["octo/api", "octo/docs", "octo/hello"])
        repo_field.fill("octo/hello")
        page.get_by_label("Branch").click()
        suggested(page, "history-branches", ["main", "release/1.2"])
        page.get_by_label("Branch").fill("main")
        page.get_by_label("State").select_option("succeeded")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url("**/tasks?*state=succeeded*")

        assert "repo=octo%2Fhello" in page.url and "branch=main" in page.url
        assert "limit=15" in page.url  # the page size survives the form
        shown = page.locator("tr.task-row")
        assert shown.count() >= 1
        for index in range(shown.count()):
            text = shown.nth(index).inner_text()
            assert "octo/hello" in text and "succeeded" in text and "main" in text
        assert page.get_by_label("Repository").input_value() == "octo/hello"

        # Pages: older, then newer again, keep the filter.
        page.goto(f"{stack.server.url}/tasks?state=failed&limit=3")
        first = [rows.nth(i).get_attribute("id") for i in range(rows.count())]
        page.get_by_role("link", name="Older →").click()
        page.wait_for_url("**before=*")
        assert "state=failed" in page.url
        second = [rows.nth(i).get_attribute("id") for i in range(rows.count())]
        assert second and not set(first) & set(second)
        page.get_by_role("link", name="← Newer").click()
        page.wait_for_url("**after=*")
        assert [rows.nth(i).get_attribute("id") for i in range(rows.count())] == first
        context.close()
