"""A task's artifacts in a real browser: listed on its page, and a link downloads the file, byte
for byte, under Porter's name for it.

The artifacts are written into Porter's database as the run service writes them
(`Store.put_artifact`), on the run of a task that went through Porter for real and is still
running (so no completion of Porter's own races the test's); the page reads them from there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from porter.store import Store
from tests.browser.conftest import sign_in
from tests.browser.test_feed import claude_stack

VERIFICATION = json.dumps({"outcome": "passed", "results": [
    {"phase": "verify", "command": "pytest -q", "exit_code": 0, "duration_s": 4.2}]}).encode()
WORKS_THEN_WAITS = [{"op": "print", "text": "looking at README.md", "stream": "stderr"},
                   {"op": "sleep", "seconds": 120}]
CHANGESET = (b"--- a/README.md\n+++ b/README.md\n@@ -1,3 +1,3 @@\n # Hello\n \n"
             b"-Teh greeting project.\n+The greeting project.\n")


def stored(database: Path, task_id: int, run_id: str) -> dict[str, bytes]:
    """Puts a verification and a changeset on the run; what the store then holds for each
    name, read back (a put is once per run and name: a name already there keeps its bytes)."""

    async def put() -> dict[str, bytes]:
        store = await Store.open(database, migrate=False)  # the server keeps the schema
        try:
            kept = {}
            for name, content in (("verification", VERIFICATION), ("changeset", CHANGESET)):
                artifact_id = await store.put_artifact(task_id, run_id, name, None, content)
                artifact = await store.artifact(artifact_id)
                assert artifact is not None
                kept[name] = artifact.content
            return kept
        finally:
            await store.close()

    # In a thread of its own: Playwright's sync API runs an event loop on this one.
    with concurrent.futures.ThreadPoolExecutor(1) as worker:
        return worker.submit(asyncio.run, put()).result()


def test_a_tasks_artifacts_are_listed_on_its_page_and_download(tmp_path: Path,
                                                                browser: Any) -> None:
    from playwright.sync_api import expect

    stack = claude_stack(tmp_path, WORKS_THEN_WAITS)
    with stack:
        context = browser.new_context(accept_downloads=True)
        page = sign_in(context, stack, "alice")
        task_id = stack.comment("@porter fix the typo in the README").json()["task_id"]
        assert stack.wait(task_id, {"running"})["state"] == "running"
        kept = stored(tmp_path / "porter.db", task_id, only_run(tmp_path / "porter.db", task_id))

        page.goto(f"{stack.url}/tasks/{task_id}")
        section = page.locator("#task-artifacts")
        for name in ("verification", "changeset"):
            row = section.locator("tr", has=page.locator("td.name", has_text=name))
            expect(row.locator("td.attempt")).to_contain_text("attempt 1")
            expect(row.locator("td.size")).to_have_text(f"{len(kept[name])} B")

        row = section.locator("tr", has=page.locator("td.name", has_text="changeset"))
        with page.expect_download() as started:
            row.get_by_role("link", name="Download").click()
        download = started.value
        assert download.suggested_filename == f"task-{task_id}-changeset.diff"
        assert Path(download.path()).read_bytes() == kept["changeset"]
        context.close()


def only_run(database: Path, task_id: int) -> str:
    """The task's one run, from the database the server writes."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        [(run_id,)] = db.execute("SELECT id FROM runs WHERE task_id = ?", (task_id,)).fetchall()
    return str(run_id)
