"""Browser tests: Debian's Chromium, driven by Playwright, against a real `porter serve`.

The browser is the system's (`/usr/bin/chromium`, which .ci/run installs), never one Playwright
downloads. It runs headless with background networking off: this machine's network is closed,
and Chromium would otherwise try Google's hosts at every start. Tests are plain functions using
Playwright's sync API (it runs its own event loop), and sign in through the fake GitHub's OAuth
endpoints exactly as a person would: Porter's "Sign in with GitHub" → GitHub → back.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.e2e.stack import Stack

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = ROOT / "docs" / "images"
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's own sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

# A developer without Chromium is told what to install; CI, which installs it, never skips.
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("CI"),
    reason="Chromium is not installed (apt-get install chromium)",
)
pytestmark = needs_chromium


@pytest.fixture
def browser() -> Iterator[object]:
    """One Chromium per test. Playwright's sync API runs an event loop on this thread while it
    is open; held across tests, that loop would break every async test the same worker runs
    next ("cannot be called from a running event loop")."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                              headless=True)
        try:
            yield launched
        finally:
            launched.close()


def web_env(stack: Stack, **extra: str) -> dict[str, str]:
    """Settings that turn on sign-in against the stack's fake GitHub."""
    return {
        "PORTER_GITHUB_CLIENT_ID": stack.fake.client_id,
        "PORTER_GITHUB_CLIENT_SECRET": stack.fake.client_secret,
        **extra,
    }


def sign_in(context: object, stack: Stack, login: str) -> object:
    """A page signed in as `login` through the real OAuth flow; GitHub already knows the
    browser's user, as it would for someone signed in to github.com."""
    assert stack.server is not None
    stack.fake.sign_in_as(login)
    page = context.new_page()  # type: ignore[attr-defined]
    page.goto(f"{stack.server.url}/")
    page.get_by_role("link", name="Sign in with GitHub").first.click()
    page.wait_for_url(f"{stack.server.url}/**")
    page.get_by_text(f"@{login}").first.wait_for()
    return page


def screenshot(page: object, name: str) -> Path:
    """Saved under docs/images/, where the README shows it."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)  # type: ignore[attr-defined]
    return path
