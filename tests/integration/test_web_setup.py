"""/setup: registering the GitHub App through the manifest flow, and who may do it."""

from __future__ import annotations

import html
import re
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from porter.app_credentials import overlay, stored_app_in_file
from tests.fakes.github_http import API_PREFIX
from tests.fakes.world import ADMIN_TOKEN, open_world
from tests.web_helpers import CSRF_FIELD, github_client, signed_in

HTML = {"Accept": "text/html"}
FORM = re.compile(r'<form method="post" action="([^"]+)">\s*<input type="hidden" '
                  r'name="manifest" value="([^"]+)"')


def database_bytes(folder: Path) -> bytes:
    """The database file with its WAL and shared memory, as they are on disk now."""
    return b"".join(p.read_bytes() for p in folder.glob("porter.db*"))


def remote(world: object, address: str = "203.0.113.7") -> httpx.AsyncClient:
    """A browser somewhere else on the internet, not on Porter's host."""
    app = world.client._transport.app  # type: ignore[attr-defined]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 40000)),
                             base_url=world.settings.public_url)  # type: ignore[attr-defined]


async def unlocked(world: object) -> httpx.AsyncClient:
    browser = remote(world)
    locked = await browser.get("/setup", headers=HTML)
    assert locked.status_code == 403 and "Admin token" in locked.text
    csrf = CSRF_FIELD.search(locked.text)
    assert csrf is not None
    wrong = await browser.post("/setup/unlock", data={"csrf": csrf.group(1), "token": "guess"})
    assert wrong.status_code == 403
    right = await browser.post("/setup/unlock", data={"csrf": csrf.group(1),
                                                      "token": ADMIN_TOKEN})
    assert right.status_code == 303
    return browser


async def test_the_app_is_registered_from_its_manifest_and_used_at_once(tmp_path: Path) -> None:
    async with open_world(tmp_path, github=False, env={
            "PORTER_GITHUB_CLIENT_ID": "", "PORTER_GITHUB_CLIENT_SECRET": "",
            # Where GitHub's API is (the fake's, served in process); no App settings.
            "PORTER_GITHUB_API_URL": "http://127.0.0.1" + API_PREFIX}) as world:
        browser = await unlocked(world)
        page = await browser.get("/setup", headers=HTML)
        assert page.status_code == 200 and "Create GitHub App" in page.text
        assert "Diagnostics" in page.text
        ready = await browser.get("/setup?name=Porter+Test&org=porter-dev", headers=HTML)
        action, manifest = FORM.search(ready.text).groups()  # type: ignore[union-attr]
        action = html.unescape(action)
        organization = f"{world.fake.web_url}/organizations/porter-dev"
        assert action.startswith(f"{organization}/settings/apps/new?")

        # The browser submits the manifest to GitHub, which sends it back with a code.
        target = urlsplit(action)
        async with github_client(world) as github:
            answer = await github.post(f"{target.path}?{target.query}",
                                       data={"manifest": html.unescape(manifest)})
        assert answer.status_code == 302, answer.text
        back = urlsplit(answer.headers["location"])
        assert back.path == "/setup/callback"
        done = await browser.get(f"{back.path}?{back.query}")
        assert done.status_code == 303, done.text
        finished = await browser.get("/setup?done=1", headers=HTML)
        assert "install the App" in finished.text and "/installations/new" in finished.text

        [registered] = world.fake.manifests
        hook = registered.manifest["hook_attributes"]["url"]
        assert hook == f"{world.settings.public_url}/webhooks/github"
        assert registered.manifest["callback_urls"] == [
            f"{world.settings.public_url}/auth/callback"]

        services = world.client._transport.app.state.services  # type: ignore[attr-defined]
        assert services.settings.github_app_id == world.fake.app_id
        assert services.users is not None
        # The private key and secrets are in the database only as ciphertext.
        raw = database_bytes(tmp_path)
        pem_body = world.fake.private_key_pem.splitlines()[1].encode()
        assert pem_body not in raw
        with sqlite3.connect(world.settings.database) as db:
            names = {row[0] for row in db.execute(
                "SELECT name FROM user_secrets WHERE user_id = 0")}
        assert {"GITHUB_APP_ID", "GITHUB_PRIVATE_KEY", "GITHUB_CLIENT_SECRET"} <= names
        # Commands beside the server (doctor, serve's first line) see the stored App too.
        beside = overlay(world.settings, stored_app_in_file(world.settings))
        assert beside.github_app_id == world.fake.app_id
        assert beside.github_private_key is not None and beside.missing()["github"] == []
        # Sign-in now works with the client secret GitHub just issued.
        alice = await signed_in(world, "alice")
        assert "@alice" in (await alice.client.get("/", headers=HTML)).text
        entries = await world.store.audit_entries(action="app.setup")
        assert len(entries) == 1 and entries[0].address == "203.0.113.7"
        for client in (browser, alice.client):
            await client.aclose()


async def test_a_registration_from_another_browser_is_refused(tmp_path: Path) -> None:
    async with open_world(tmp_path, github=False) as world:
        victim = await unlocked(world)
        attacker = await unlocked(world)
        ready = await attacker.get("/setup?name=Evil", headers=HTML)
        action, manifest = FORM.search(ready.text).groups()  # type: ignore[union-attr]
        target = urlsplit(html.unescape(action))
        async with github_client(world) as github:
            answer = await github.post(f"{target.path}?{target.query}",
                                       data={"manifest": html.unescape(manifest)})
        back = urlsplit(answer.headers["location"])
        # The attacker's code and state, replayed in the victim's browser, do nothing.
        refused = await victim.get(f"{back.path}?{back.query}")
        assert refused.status_code == 403
        services = world.client._transport.app.state.services  # type: ignore[attr-defined]
        assert not services.settings.github_app_id
        with sqlite3.connect(world.settings.database) as db:
            assert db.execute("SELECT COUNT(*) FROM user_secrets").fetchone()[0] == 0
        for client in (victim, attacker):
            await client.aclose()


async def test_once_the_app_exists_only_admins_open_setup(tmp_path: Path) -> None:
    async with open_world(tmp_path, env={"PORTER_ADMIN_LOGINS": "boss"}) as world:
        alice = await signed_in(world, "alice")
        assert (await alice.client.get("/setup", headers=HTML)).status_code == 403
        boss = await signed_in(world, "boss")
        page = await boss.client.get("/setup", headers=HTML)
        assert page.status_code == 200 and "Create GitHub App" not in page.text
        assert "Diagnostics" in page.text
        for browser in (alice, boss):
            await browser.client.aclose()
