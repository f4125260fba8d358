"""Signing in and out in a real browser, through the fake GitHub's OAuth pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.browser.conftest import web_env
from tests.e2e.stack import Stack


def test_a_person_signs_in_with_github_and_out_again(tmp_path: Path, browser: Any) -> None:
    stack = Stack(tmp_path)
    stack.extra_env.update(web_env(stack))
    with stack:
        assert stack.server is not None
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{stack.server.url}/")
        page.get_by_role("link", name="Sign in with GitHub").first.click()
        # Nobody is signed in to GitHub in this browser: GitHub asks who.
        page.get_by_label("Username").fill("alice")
        page.get_by_role("button", name="Authorize").click()
        page.get_by_text("@alice").first.wait_for()
        cookies = {c["name"]: c for c in context.cookies()}
        session = cookies["porter_session"]
        assert session["httpOnly"] and session["sameSite"] == "Lax"
        page.get_by_role("button", name="Sign out").click()
        page.get_by_role("link", name="Sign in with GitHub").first.wait_for()
        assert page.get_by_text("@alice").count() == 0
        context.close()
