"""Sign in with GitHub, sessions, sign-out, and the forgeries Porter refuses."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from starlette.routing import Route

from porter.app import create_app
from porter.settings import Settings
from tests.fakes.world import open_world
from tests.web_helpers import follow_sign_in, github_client, porter_client, signed_in

HTML = {"Accept": "text/html"}


def _database_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*") if p.is_file())


def _sessions(database: Path | str) -> int:
    """How many sessions the database holds, read straight from it, past the store."""
    if isinstance(database, Path):
        with contextlib.closing(sqlite3.connect(database)) as db:
            return int(db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0])
    with psycopg.connect(database) as pg:
        row = pg.execute("SELECT COUNT(*) FROM sessions").fetchone()
        assert row is not None
        return int(row[0])


async def test_sign_in_opens_a_session_and_records_who_signed_in(
        tmp_path: Path, store_database: Path | str) -> None:
    async with open_world(tmp_path, database=store_database) as world:
        browser = await signed_in(world, "alice")
        page = await browser.client.get("/", headers=HTML)
        assert "@alice" in page.text
        entries = await world.store.audit_entries()
        assert [(e.actor, e.action, e.source) for e in entries] == [("alice", "sign-in", "page")]
        user = await world.store.get_user(entries[0].actor_id or 0)
        assert user is not None and user.login == "alice"
        assert user.id == world.fake.user("alice").id
        await browser.client.aclose()


async def test_the_users_github_tokens_never_reach_the_database_in_plaintext(
        tmp_path: Path) -> None:
    """SQLite only: it reads every byte of the database's files (the WAL too); PostgreSQL's
    files are the server's. The sealing itself is the same code on both stores."""
    async with open_world(tmp_path) as world:
        browser = await signed_in(world, "alice")
        user = (await world.store.audit_entries())[0].actor_id
        from porter.vault import Vault

        tokens = await Vault(world.runtime.keyring, world.store).open(user or 0)
        assert tokens["github_access_token"].startswith("ghu_")
        database = world.settings.database_file
        assert database is not None
        raw = _database_bytes(database)
        for value in tokens.values():
            assert value.encode() not in raw
        await browser.client.aclose()


async def test_session_cookie_is_httponly_lax_and_secure_only_over_https(
        tmp_path: Path) -> None:
    for public, secure in (("http://porter.test", False), ("https://porter.example", True)):
        async with open_world(tmp_path / public[:5], env={"PORTER_PUBLIC_URL": public}) as world:
            world.fake.sign_in_as("alice")
            async with github_client(world) as github, porter_client(world) as porter:
                done = await follow_sign_in(porter, github)
            cookie = next(v for k, v in done.headers.multi_items()
                          if k == "set-cookie" and v.startswith("porter_session="))
            attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
            assert {"httponly", "samesite"} <= attributes
            assert "samesite=lax" in cookie.lower()
            assert ("secure" in attributes) is secure


async def test_a_forged_oauth_state_signs_nobody_in(tmp_path: Path) -> None:
    async with open_world(tmp_path) as world:
        world.fake.sign_in_as("mallory")
        async with github_client(world) as github, porter_client(world) as mallory:
            # Mallory starts a sign-in in her own browser and takes GitHub's answer...
            start = await mallory.get("/login")
            authorize = urlsplit(start.headers["location"])
            answer = await github.get(f"{authorize.path}?{authorize.query}")
            back = urlsplit(answer.headers["location"])
            code = parse_qs(back.query)["code"][0]
        async with porter_client(world) as victim:
            # ...and lures a victim, whose browser has no matching state cookie, to it.
            lured = await victim.get(f"{back.path}?{back.query}")
            assert lured.status_code == 403
            assert "porter_session" not in lured.headers.get("set-cookie", "")
            # A victim who started their own sign-in has a state, but not that one.
            await victim.get("/login")
            forged = await victim.get(f"/auth/callback?code={code}&state=forged")
            assert forged.status_code == 403
            assert "porter_session" not in forged.headers.get("set-cookie", "")
        assert await world.store.audit_entries() == []


async def test_after_sign_in_only_local_paths_are_followed(tmp_path: Path) -> None:
    async with open_world(tmp_path) as world:
        world.fake.sign_in_as("alice")
        async with github_client(world) as github, porter_client(world) as porter:
            for target, lands in (("/tasks", "/tasks"), ("//evil.example/x", "/"),
                                  ("https://evil.example/", "/"), ("/\\evil.example", "/")):
                done = await follow_sign_in(porter, github, f"/login?next={target}")
                assert done.headers["location"] == lands


async def test_sign_out_needs_the_csrf_token_and_ends_the_session(
        tmp_path: Path, store_database: Path | str) -> None:
    async with open_world(tmp_path, database=store_database) as world:
        browser = await signed_in(world, "alice")
        refused = await browser.client.post("/logout", data={})
        assert refused.status_code == 403
        assert "@alice" in (await browser.client.get("/", headers=HTML)).text
        stolen_cookie = browser.client.cookies.get("porter_session")
        done = await browser.client.post("/logout", data={"csrf": browser.csrf})
        assert done.status_code == 303
        assert "@alice" not in (await browser.client.get("/", headers=HTML)).text
        # The old cookie, replayed, opens nothing: the session is gone from the database.
        async with porter_client(world,
                                 cookies={"porter_session": stolen_cookie or ""}) as replay:
            assert "@alice" not in (await replay.get("/", headers=HTML)).text
        assert _sessions(store_database) == 0
        await browser.client.aclose()


async def test_an_expired_user_token_is_refreshed_and_the_old_refresh_token_retired(
        tmp_path: Path, store_database: Path | str) -> None:
    async with open_world(tmp_path, database=store_database) as world:
        world.fake.user_token_lifetime = 600
        browser = await signed_in(world, "alice")
        from porter.vault import Vault

        vault = Vault(world.runtime.keyring, world.store)
        user_id = (await world.store.audit_entries())[0].actor_id or 0
        before = await vault.open(user_id)
        await world.advance(3600)
        user = await world.store.get_user(user_id)
        assert user is not None
        services = world.client._transport.app.state.services  # type: ignore[attr-defined]
        token = await services.access.token(user)
        after = await vault.open(user_id)
        assert token == after["github_access_token"] != before["github_access_token"]
        assert after["github_refresh_token"] != before["github_refresh_token"]
        assert world.fake.refresh_user_token(before["github_refresh_token"]) is None
        await browser.client.aclose()


# Routes machines and GitHub call with their own credentials, never a browser's cookie (the
# LLM gateway's, /llm/, take a run's token: porter/gateway/auth.py).
NOT_FROM_BROWSERS = ("/webhooks/", "/api/runs/", "/llm/")


def _state_changing_routes(settings: Settings) -> list[str]:
    app = create_app(settings)
    paths = []
    for route in app.routes:
        changes = isinstance(route, Route) and route.methods and (
            {"POST", "PUT", "PATCH", "DELETE"} & route.methods)
        if changes and not route.path.startswith(NOT_FROM_BROWSERS):
            paths.append(route.path.replace("{task_id}", "1").replace("{id}", "1"))
    return paths


@pytest.mark.parametrize("token", [None, "", "wrong"])
async def test_every_state_changing_request_needs_the_csrf_token(
        tmp_path: Path, token: str | None) -> None:
    async with open_world(tmp_path) as world:
        browser = await signed_in(world, "alice")
        paths = _state_changing_routes(world.settings)
        assert "/logout" in paths and len(paths) >= 3
        for path in paths:
            form = {} if token is None else {"csrf": token}
            answer = await browser.client.post(path, data=form)
            assert answer.status_code in (401, 403), (path, answer.status_code, answer.text[:200])
        assert "@alice" in (await browser.client.get("/", headers=HTML)).text
        await browser.client.aclose()
