"""The settings page in a real browser: a key saved, a default agent chosen, a Fly app checked
and created from the page; then a task the person asks for runs with their key, which shows up
nowhere: not in the page, the task's log, Porter's own output or the database's bytes."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.browser.conftest import screenshot, sign_in, web_env
from tests.e2e.stack import EDIT_TWO_DELETE_ONE, Stack
from tests.fakes.fly import FakeFly
from tests.settings_helpers import database_bytes

KEY = "sk-ant-browser-Rw4Tz8Yq2Mx6"
FLY_TOKEN = "fm2_browserAliceHk3Vn7"
LABELS = ("Anthropic API key", "OpenAI API key", "Gemini API key", "Fly API token",
          "Fly app name")
# The agent prints the key it was given: Porter must scrub it from the log.
PRINTS_ITS_KEY = [{"op": "print_secret", "var": "ANTHROPIC_API_KEY", "style": "raw"},
                  *EDIT_TWO_DELETE_ONE]


@contextlib.contextmanager
def serving(stack: Stack) -> Iterator[Stack]:
    """`with stack:`, left from another thread: leaving runs asyncio.run, which Playwright's
    own event loop in this thread refuses."""
    stack.__enter__()
    try:
        yield stack
    finally:
        leave = threading.Thread(target=stack.__exit__, args=(None, None, None))
        leave.start()
        leave.join()


@contextlib.contextmanager
def fly_serving(fake: FakeFly) -> Iterator[FakeFly]:
    """The fake Fly on its own event loop, in a thread beside Playwright's."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = asyncio.Event()

    async def serve() -> None:
        async with fake.serve():
            ready.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the fake Fly did not start"
    try:
        yield fake
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)
        loop.close()


def test_settings_saved_from_the_page_and_a_task_run_with_the_persons_key(
        tmp_path: Path, browser: Any) -> None:
    fly = FakeFly(token="fm2_operatorOnly", app="porter-runs")
    fly.add_token(FLY_TOKEN, orgs=["alice-org"])
    with fly_serving(fly):
        stack = Stack(tmp_path, script=PRINTS_ITS_KEY)
        stack.extra_env.update(web_env(stack, PORTER_FLY_API_URL=fly.url,
                                       PORTER_AGENT_SCRIPTED_KEYS="ANTHROPIC_API_KEY"))
        with serving(stack):
            assert stack.server is not None
            url = stack.server.url
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = sign_in(context, stack, "alice")
            page.goto(f"{url}/settings")
            for label in LABELS:
                assert page.get_by_label(label).is_visible(), label
            assert page.get_by_role("button", name="Save").is_visible()

            # A form posted without the page's CSRF token (another site's form would be) is
            # refused, though the browser sends the session cookie.
            forged = context.request.post(f"{url}/settings", form={"ANTHROPIC_API_KEY": KEY},
                                          headers={"Accept": "text/html"})
            assert forged.status == 403

            page.get_by_label("Anthropic API key").fill(KEY)
            page.get_by_label("Default agent").select_option("scripted")
            page.get_by_label("Fly API token").fill(FLY_TOKEN)
            page.get_by_label("Fly app name").fill("alice-agents")
            page.get_by_role("button", name="Save").click()
            page.get_by_text("App alice-agents does not exist").wait_for()
            page.get_by_label("Fly organization").fill("alice-org")
            page.get_by_role("button", name="Create app").click()
            page.wait_for_url("**/settings?done=saved")
            page.get_by_text(f"set, ends in …{KEY[-4:]}").wait_for()
            page.get_by_text(f"set, ends in …{FLY_TOKEN[-4:]}").wait_for()
            assert fly.apps["alice-agents"].org == "alice-org"
            assert page.get_by_label("Fly app name").input_value() == "alice-agents"
            html = page.content()
            assert KEY not in html and FLY_TOKEN not in html
            screenshot(page, "settings")

            task_id = int(stack.comment("@porter fix the typo").json()["task_id"])
            task = stack.wait(task_id)
            assert task["state"] == "succeeded", (task["stage"], task["reason"],
                                                  stack.logs(task_id))
            assert (task["agent"], task["key_source"]) == ("scripted", "requester")
            log = stack.logs(task_id)
            assert "the key is" in log and KEY not in log
            raw = database_bytes(tmp_path / "porter.db")  # while Porter has it open
            assert KEY.encode() not in raw and FLY_TOKEN.encode() not in raw
            context.close()
        assert stack.server.process is not None and stack.server.process.stdout is not None
        output = stack.server.process.stdout.read()  # everything Porter logged
        assert KEY not in output and FLY_TOKEN not in output
