"""An adversary's view of the web app: forged and odd input, the sign-in flow's edges, who may
reach what, and what pages say when GitHub is down. Each test names the attack it closes."""

from __future__ import annotations

import html
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from starlette.routing import Route

from porter.app import create_app
from porter.app_credentials import APP_URL
from porter.store.users import APP_OWNER
from porter.web.access import REFRESH_TOKEN
from tests.fakes.world import ADMIN, ADMIN_TOKEN, OTHER_REPO, REPO, World, open_world
from tests.web_helpers import (
    CSRF_FIELD,
    Browser,
    follow_sign_in,
    github_client,
    porter_client,
    signed_in,
)
from tests.web_sse import EventStream

HTML = {"Accept": "text/html"}
CSP = "content-security-policy"


def services(world: World) -> object:
    return world.client._transport.app.state.services  # type: ignore[attr-defined]


def user_id(world: World, login: str) -> int:
    return world.fake.user(login).id


async def start_sign_in(porter: httpx.AsyncClient, path: str = "/login") -> str:
    """GET /login; the state Porter sent to GitHub."""
    start = await porter.get(path)
    assert start.status_code == 302, start.text
    return parse_qs(urlsplit(start.headers["location"]).query)["state"][0]


def sessions(world: World) -> int:
    with sqlite3.connect(world.settings.database) as db:
        count: int = db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
    return count


# -- cookies ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["porter_session", "porter_anon", "porter_oauth"])
async def test_a_cookie_with_non_ascii_characters_is_ignored_not_a_500(
        tmp_path: Path, name: str) -> None:
    """Anyone can send any bytes in a cookie; comparing a non-ASCII str MAC raised TypeError."""
    async with open_world(tmp_path) as world, porter_client(world) as anyone:
        for forged in ("a.1.\u00e9", "\u00e9.1.abc", "a.\u00b2.x", "a.\u0663.x"):
            header = f"{name}={forged}".encode("latin-1", "replace")
            page = await anyone.get("/", headers={**HTML, "cookie": header})
            assert page.status_code == 200, (forged, page.status_code)
            assert "Sign in with GitHub" in page.text
        callback = await anyone.get("/auth/callback?code=x&state=a",
                                    headers={"cookie": b"porter_oauth=a.1.\xe9"})
        assert callback.status_code == 403


# -- the OAuth callback ---------------------------------------------------------------------------


async def test_cancelling_at_github_shows_a_friendly_page_without_githubs_text(
        tmp_path: Path) -> None:
    async with open_world(tmp_path) as world, porter_client(world) as porter:
        state = await start_sign_in(porter, "/login?next=/tasks")
        spoof = "Your account is locked: call +1 555 0100"
        back = await porter.get(
            f"/auth/callback?error=access_denied&error_description={quote(spoof)}"
            f"&state={state}", headers=HTML)
        assert back.status_code == 200, back.text
        assert "You cancelled signing in at GitHub" in back.text
        assert spoof not in back.text and "555" not in back.text
        assert 'href="/login?next=/tasks"' in back.text  # one click to try again
        assert back.headers[CSP]
        # The state is spent: the cookie is cleared, and replaying it signs no one in.
        cleared = [v for k, v in back.headers.multi_items()
                   if k == "set-cookie" and v.startswith("porter_oauth=")]
        assert cleared and "max-age=0" in cleared[0].lower()

        other = await porter.get("/auth/callback?error=redirect_uri_mismatch", headers=HTML)
        assert other.status_code == 400 and "callback" in other.text
        unknown = await porter.get("/auth/callback?error=%3Cb%3Ehi", headers=HTML)
        assert unknown.status_code == 400 and "GitHub did not sign you in" in unknown.text
        assert "<b>hi" not in unknown.text


async def test_a_forged_error_link_does_not_end_a_sign_in_under_way(tmp_path: Path) -> None:
    async with open_world(tmp_path) as world:
        world.fake.sign_in_as("alice")
        async with porter_client(world) as porter, github_client(world) as github:
            start = await porter.get("/login")
            # Someone's link, opened mid-sign-in: no state of ours, so our cookie stays.
            lured = await porter.get("/auth/callback?error=access_denied&state=forged",
                                     headers=HTML)
            assert lured.status_code == 200
            assert "porter_oauth" not in lured.headers.get("set-cookie", "")
            authorize = urlsplit(start.headers["location"])
            answer = await github.get(f"{authorize.path}?{authorize.query}")
            back = urlsplit(answer.headers["location"])
            done = await porter.get(f"{back.path}?{back.query}")
            assert done.status_code == 303


async def test_an_oauth_state_works_once(tmp_path: Path) -> None:
    """A state cookie sent again (a back button, or copied from the browser) is refused before
    GitHub is asked about the code."""
    async with open_world(tmp_path) as world:
        world.fake.sign_in_as("alice")
        async with porter_client(world) as porter, github_client(world) as github:
            start = await porter.get("/login")
            state_cookie = porter.cookies["porter_oauth"]
            authorize = urlsplit(start.headers["location"])
            answer = await github.get(f"{authorize.path}?{authorize.query}")
            back = urlsplit(answer.headers["location"])
            done = await porter.get(f"{back.path}?{back.query}")
            assert done.status_code == 303
        exchanges = len(world.fake.calls_to("POST", "/login/oauth/access_token"))
        async with porter_client(world, cookies={"porter_oauth": state_cookie}) as replay:
            again = await replay.get(f"{back.path}?{back.query}", headers=HTML)
        assert again.status_code == 403 and "sign in again" in again.text
        assert "porter_session" not in again.headers.get("set-cookie", "")
        assert len(world.fake.calls_to("POST", "/login/oauth/access_token")) == exchanges
        assert sessions(world) == 1


async def test_a_callback_without_a_code_asks_to_sign_in_again(tmp_path: Path) -> None:
    async with open_world(tmp_path) as world, porter_client(world) as porter:
        state = await start_sign_in(porter)
        answer = await porter.get(f"/auth/callback?state={state}", headers=HTML)
        assert answer.status_code == 400 and "sign in again" in answer.text
        assert sessions(world) == 0


async def test_signing_in_again_ends_the_browsers_previous_session(tmp_path: Path) -> None:
    async with open_world(tmp_path) as world:
        alice = await signed_in(world, "alice")
        old = alice.client.cookies["porter_session"]
        world.fake.sign_in_as("bob")
        async with github_client(world) as github:
            done = await follow_sign_in(alice.client, github)
        assert done.status_code == 303
        assert "@bob" in (await alice.client.get("/", headers=HTML)).text
        async with porter_client(world, cookies={"porter_session": old}) as copy:
            page = await copy.get("/", headers=HTML)
        assert "@alice" not in page.text and "Sign in with GitHub" in page.text
        assert sessions(world) == 1
        await alice.client.aclose()


async def test_a_long_page_to_return_to_survives_sign_in(tmp_path: Path) -> None:
    """A history page with long filters was lost: its state cookie outgrew what was accepted."""
    async with open_world(tmp_path) as world:
        world.fake.sign_in_as("alice")
        target = "/tasks?repo=octo%2Fhello&branch=" + "release-" * 40
        async with porter_client(world) as porter, github_client(world) as github:
            done = await follow_sign_in(porter, github, "/login?next=" + quote(target))
            assert done.status_code == 303, done.text
            assert done.headers["location"] == target
            # One too long to carry is dropped whole, never cut into another page.
            done = await follow_sign_in(porter, github, "/login?next=/" + "x" * 50_000)
            assert done.status_code == 303 and done.headers["location"] == "/"
            assert len(porter.cookies.get("porter_oauth") or "") < 1024


@pytest.mark.parametrize("target", ["/%09/evil.example", "/%0d%0aSet-Cookie:%20a=b",
                                    "/%5Cevil.example", "///evil.example", "http:evil.example"])
async def test_no_page_to_return_to_leaves_porter_or_splits_headers(
        tmp_path: Path, target: str) -> None:
    async with open_world(tmp_path) as world:
        world.fake.sign_in_as("alice")
        async with porter_client(world) as porter, github_client(world) as github:
            done = await follow_sign_in(porter, github, "/login?next=" + target)
        location = done.headers["location"]
        assert location.startswith("/") and not location.startswith(("//", "/\\"))
        assert not re.search(r"[\s\\]", location)
        assert all(not v.startswith("a=") for k, v in done.headers.multi_items()
                   if k == "set-cookie")


async def test_a_session_cookie_tampered_with_or_past_its_time_opens_nothing(
        tmp_path: Path) -> None:
    async with open_world(tmp_path) as world:
        alice = await signed_in(world, "alice")
        cookie = alice.client.cookies["porter_session"]
        value, issued, mac = cookie.split(".")

        def changed(text: str) -> str:
            return text[:-1] + ("B" if text.endswith("A") else "A")

        forged = (f"{value}.{int(issued) + 3600}.{mac}", f"{value}.{issued}.{changed(mac)}",
                  f"{changed(value)}.{issued}.{mac}", f"{value}.{issued}", value, f"{cookie}.x")
        for attempt in forged:
            async with porter_client(world, cookies={"porter_session": attempt}) as copy:
                page = await copy.get("/", headers=HTML)
            assert "@alice" not in page.text, attempt
        assert "@alice" in (await alice.client.get("/", headers=HTML)).text
        await world.advance(world.settings.session_hours * 3600 + 1)
        page = await alice.client.get("/", headers=HTML)
        assert "@alice" not in page.text and "Sign in with GitHub" in page.text
        await alice.client.aclose()


async def test_requests_at_once_refresh_an_expired_user_token_once(tmp_path: Path) -> None:
    """A refresh token works once: two pages refreshing together would sign the user out."""
    import asyncio

    async with open_world(tmp_path) as world:
        world.fake.user_token_lifetime = 600
        alice = await signed_in(world, "alice")
        await world.advance(3600)
        access = services(world).access  # type: ignore[attr-defined]
        access.forget(user_id(world, "alice"))
        before = len(world.fake.calls_to("POST", "/login/oauth/access_token"))
        pages = await asyncio.gather(*(alice.client.get("/", headers=HTML) for _ in range(4)))
        assert all(page.status_code == 200 for page in pages)
        assert all("GitHub did not answer" not in p.text and "run out" not in p.text
                   for p in pages)
        assert len(world.fake.calls_to("POST", "/login/oauth/access_token")) == before + 1
        await alice.client.aclose()


# -- headers --------------------------------------------------------------------------------------


async def test_redirects_carry_the_headers_every_page_carries(tmp_path: Path) -> None:
    async with open_world(tmp_path) as world:
        task_id = await world.request("@porter fix the typo")
        world.fake.sign_in_as("alice")
        redirects: list[tuple[str, httpx.Response]] = []
        async with porter_client(world) as porter, github_client(world) as github:
            redirects.append(("login", await porter.get("/login")))
            redirects.append(("callback", await follow_sign_in(porter, github)))
        alice = await signed_in(world, "alice")
        redirects.append(("cancel", await alice.client.post(f"/tasks/{task_id}/cancel",
                                                            data={"csrf": alice.csrf})))
        redirects.append(("settings", await alice.client.post(
            "/settings", data={"csrf": alice.csrf, "default_model": "m-1"})))
        redirects.append(("logout", await alice.client.post("/logout",
                                                            data={"csrf": alice.csrf})))
        for name, answer in redirects:
            assert answer.status_code in (302, 303), (name, answer.status_code)
            assert "script-src 'self'" in answer.headers.get(CSP, ""), name
            assert answer.headers.get("cache-control") == "no-store", name
            assert answer.headers.get("x-frame-options") == "DENY", name
        await alice.client.aclose()


async def test_error_pages_carry_the_content_security_policy(tmp_path: Path) -> None:
    async with open_world(tmp_path) as world, porter_client(world) as anyone:
        for method, path in (("GET", "/no/such/page"), ("GET", "/logout"),
                             ("GET", "/tasks/abc"), ("GET", "/tasks/1"), ("POST", "/logout"),
                             ("GET", "/audit"), ("GET", "/auth/callback")):
            answer = await anyone.request(method, path, headers=HTML)
            assert answer.status_code >= 400, path
            assert "text/html" in answer.headers["content-type"], path
            assert "script-src 'self'" in answer.headers.get(CSP, ""), path


# -- live streams ---------------------------------------------------------------------------------


async def test_a_crafted_run_id_cannot_write_events_into_a_task_stream(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from porter.web import live

    monkeypatch.setattr(live, "HEARTBEAT", 0.05)  # a keep-alive carries the position
    monkeypatch.setattr(live, "WAKE", 0.05)
    async with open_world(tmp_path) as world:
        task_id = await world.request("@porter fix the typo")  # queued: no run yet
        alice = await signed_in(world, "alice")
        injected = "x\nevent: state\ndata: {\"head\": \"<img src=x onerror=alert(1)>\"}\n"
        for url, headers in (
                (f"/live/tasks/{task_id}?run={quote(injected)}&after=1", {}),
                (f"/live/tasks/{task_id}", {"last-event-id": injected.replace("\n", "\r")
                                            + ":1"})):
            async with EventStream(world, url, cookies=alice.client.cookies,
                                   headers=headers) as stream:
                assert stream.status == 200
                await stream.drain(0.5)
            assert "onerror" not in stream.body, stream.body
            assert all(name != "state" or "onerror" not in str(data)
                       for name, data in stream.seen)
        await alice.client.aclose()


# -- /setup ---------------------------------------------------------------------------------------


async def test_setup_trusts_this_host_only_by_this_hosts_name(tmp_path: Path) -> None:
    """A page whose domain re-points at 127.0.0.1 (DNS rebinding) runs in a browser on this
    host, but asks for its own name: it gets the unlock page, not the App registration."""
    async with open_world(tmp_path, github=False) as world:
        app = world.client._transport.app  # type: ignore[attr-defined]
        local = httpx.AsyncClient(transport=httpx.ASGITransport(app=app,
                                                                client=("127.0.0.1", 5000)),
                                  base_url="http://127.0.0.1:8000")
        async with local:
            for host, opens in (("evil.example:8000", False), ("localhost:8000", True),
                                ("127.0.0.1:8000", True), ("[::1]:8000", True),
                                ("porter.example.com", True), ("", False)):
                page = await local.get("/setup?name=Porter", headers={**HTML, "host": host})
                assert (page.status_code == 200) is opens, (host, page.status_code)
                assert ("Continue to GitHub" in page.text) is opens, host
                set_cookies = page.headers.get("set-cookie", "")
                assert ("porter_setup=" in set_cookies) is opens, host
                callback = await local.get("/setup/callback?code=abc&state=x",
                                           headers={**HTML, "host": host})
                assert callback.status_code == 403, host


async def test_the_install_link_only_ever_points_at_github(tmp_path: Path) -> None:
    async with open_world(tmp_path) as world:
        vault = services(world).vault  # type: ignore[attr-defined]
        await vault.put(APP_OWNER, {APP_URL: "javascript:alert(document.cookie)//"})
        page = await world.client.get("/setup", headers={**HTML, **ADMIN})
        assert page.status_code == 200
        assert "javascript:" not in page.text
        await vault.put(APP_OWNER, {APP_URL: f"{world.fake.web_url}/apps/porter"})
        page = await world.client.get("/setup", headers={**HTML, **ADMIN})
        assert f'href="{world.fake.web_url}/apps/porter/installations/new"' in page.text


async def test_a_setup_state_registers_at_most_one_app(tmp_path: Path) -> None:
    async with open_world(tmp_path, github=False) as world:
        from tests.integration.test_web_setup import FORM, unlocked

        browser = await unlocked(world)
        ready = await browser.get("/setup?name=Porter", headers=HTML)
        action, _ = FORM.search(ready.text).groups()  # type: ignore[union-attr]
        target = urlsplit(html.unescape(action))
        state = parse_qs(target.query)["state"][0]
        # GitHub fails the conversion once (say, it is down); the state is spent by then.
        world.fake.fail("POST", r"/app-manifests/.*/conversions", 502)
        first = await browser.get(f"/setup/callback?code=abc&state={state}", headers=HTML)
        assert first.status_code == 502
        again = await browser.get(f"/setup/callback?code=abc&state={state}", headers=HTML)
        assert again.status_code == 403 and "start again" in again.text
        await browser.aclose()


# -- GitHub down ---------------------------------------------------------------------------------


async def test_when_github_fails_pages_say_so_instead_of_showing_an_empty_account(
        tmp_path: Path) -> None:
    async with open_world(tmp_path) as world:
        task_id = await world.request("@porter fix the typo")
        alice = await signed_in(world, "alice")
        access = services(world).access  # type: ignore[attr-defined]
        for status, body in ((502, None), (200, b"<html>Unicorn!</html>"),
                             (200, {"installations": "nope"})):
            access.forget(user_id(world, "alice"))
            world.fake.fail("GET", "/user/installations", status, body=body, times=100)
            for path in ("/", "/tasks", f"/tasks/{task_id}"):
                page = await alice.client.get(path, headers=HTML)
                assert page.status_code in (200, 404), (status, path, page.status_code)
                assert "GitHub did not answer" in page.text, (status, path)
                assert "You reach no repository" not in page.text
            assert (await alice.client.get("/api/tasks")).status_code == 200
            world.fake._faults.clear()
        # GitHub is back: after the short memory of the failure, the tasks are there again.
        await world.advance(30)
        page = await alice.client.get("/", headers=HTML)
        assert f'id="task-{task_id}"' in page.text and "GitHub did not answer" not in page.text
        await alice.client.aclose()


async def test_a_user_whose_github_sign_in_ran_out_is_asked_to_sign_in_again(
        tmp_path: Path) -> None:
    async with open_world(tmp_path) as world:
        world.fake.user_token_lifetime = 600
        alice = await signed_in(world, "alice")
        alice_id = user_id(world, "alice")
        svc = services(world)
        # GitHub is down when the token needs refreshing: that is not "sign in again".
        await world.advance(3600)
        svc.access.forget(alice_id)  # type: ignore[attr-defined]
        world.fake.fail("POST", "/login/oauth/access_token", 502)
        page = await alice.client.get("/", headers=HTML)
        assert "GitHub did not answer" in page.text and "Sign in again" not in page.text
        # The refresh token is gone (revoked, say): only a new sign-in helps.
        await svc.vault.put(alice_id, {REFRESH_TOKEN: None})  # type: ignore[attr-defined]
        svc.access.forget(alice_id)  # type: ignore[attr-defined]
        page = await alice.client.get("/tasks", headers=HTML)
        assert page.status_code == 200
        assert "Your GitHub sign-in has run out" in page.text
        assert 'href="/login?next=/tasks"' in page.text
        await alice.client.aclose()


async def test_signing_in_while_github_answers_nonsense_is_a_clear_error_not_a_500(
        tmp_path: Path) -> None:
    async with open_world(tmp_path) as world:
        world.fake.sign_in_as("alice")
        for body in (b"<html>maintenance</html>", {"login": "alice"}, {"id": 0, "login": "x"}):
            world.fake.fail("GET", "/user", 200, body=body)
            async with porter_client(world) as porter, github_client(world) as github:
                start = await porter.get("/login")
                authorize = urlsplit(start.headers["location"])
                answer = await github.get(f"{authorize.path}?{authorize.query}")
                back = urlsplit(answer.headers["location"])
                done = await porter.get(f"{back.path}?{back.query}", headers=HTML)
            assert done.status_code == 502, (body, done.status_code)
            assert "GitHub" in done.text
        assert sessions(world) == 0


# -- who reaches what -----------------------------------------------------------------------------


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with open_world(tmp_path, env={"PORTER_ADMIN_LOGINS": "dana"}) as opened:
        opened.fake.set_permission(REPO, "carol", "read")
        for login in ("mallory", "dana"):
            opened.fake.add_user(login)
        yield opened


SECRET_WORDS = "widgets green"


def task_data_routes(mine: int, theirs: int) -> list[str]:
    return ["/", "/tasks", f"/tasks/{theirs}", f"/tasks?repo={OTHER_REPO}",
            "/api/tasks", f"/api/tasks/{theirs}", f"/api/tasks/{theirs}/logs",
            f"/api/tasks?repo={OTHER_REPO}", "/history/suggest?field=repo&q=",
            "/history/suggest?field=repo&q=acme",
            f"/history/suggest?field=branch&q=&repo={OTHER_REPO}", f"/live/tasks/{theirs}",
            "/audit", "/api/audit", "/setup"]


async def test_no_route_shows_a_repository_the_viewer_does_not_reach(world: World) -> None:
    mine = await world.request("@porter fix the typo")
    theirs = await world.request(f"@porter make the {SECRET_WORDS}", repo=OTHER_REPO,
                                 installation_id=43)
    viewers: dict[str, httpx.AsyncClient] = {"anonymous": porter_client(world)}
    browsers: list[Browser] = []
    for login in ("mallory", "carol"):
        browsers.append(await signed_in(world, login))
        viewers[login] = browsers[-1].client
    for who, client in viewers.items():
        for path in task_data_routes(mine, theirs):
            for accept in (HTML, {"Accept": "application/json"}):
                answer = await client.get(path, headers=accept)
                assert answer.status_code < 500, (who, path, answer.status_code)
                assert SECRET_WORDS not in answer.text, (who, path)
                assert f'id="task-{theirs}"' not in answer.text, (who, path)
                if "acme" not in path:  # else the page may repeat what was asked for
                    assert "acme" not in answer.text, (who, path, answer.text[:300])
                if path.startswith(("/audit", "/api/audit", "/setup")):
                    assert answer.status_code in (401, 403), (who, path)
        # A hidden task answers exactly as a missing one, whatever the route and method.
        missing = theirs + 1000
        for method, template in (("GET", "/tasks/{}"), ("GET", "/api/tasks/{}"),
                                 ("GET", "/api/tasks/{}/logs"), ("GET", "/live/tasks/{}")):
            hidden = await client.request(method, template.format(theirs))
            absent = await client.request(method, template.format(missing))
            assert hidden.status_code == absent.status_code, (who, template)
            assert hidden.text == absent.text.replace(str(missing), str(theirs)), (who, template)
    for browser in browsers:
        for action in ("cancel", "retry"):
            hidden = await browser.client.post(f"/tasks/{theirs}/{action}",
                                               data={"csrf": browser.csrf})
            absent = await browser.client.post(f"/tasks/{theirs + 1000}/{action}",
                                               data={"csrf": browser.csrf})
            assert hidden.status_code == absent.status_code == 404
    for client in viewers.values():
        await client.aclose()


async def test_admins_by_login_and_by_token_reach_everything_and_others_only_their_own(
        world: World) -> None:
    theirs = await world.request(f"@porter make the {SECRET_WORDS}", repo=OTHER_REPO,
                                 installation_id=43)
    dana = await signed_in(world, "dana")
    for client, headers in ((dana.client, {}), (world.client, ADMIN)):
        for path in (f"/tasks/{theirs}", f"/api/tasks/{theirs}", "/audit", "/api/audit",
                     "/setup", "/history/suggest?field=repo&q=acme"):
            answer = await client.get(path, headers={**HTML, **headers})
            assert answer.status_code == 200, (path, answer.status_code)
    # Settings belong to a person: the admin token has none, and gets none of anyone's.
    assert (await world.client.get("/api/settings", headers=ADMIN)).status_code == 403
    assert (await world.client.get("/api/settings")).status_code == 401
    await dana.client.aclose()


def get_routes(world: World) -> list[str]:
    app = create_app(world.settings)
    return [route.path for route in app.routes
            if isinstance(route, Route) and route.methods and "GET" in route.methods]


async def test_get_requests_change_nothing_but_cookies(world: World) -> None:
    """SameSite=Lax cookies ride along on a cross-site link: a GET must not act on them."""
    task_id = await world.request("@porter fix the typo")
    dana = await signed_in(world, "dana")

    def tables() -> dict[str, list[tuple[object, ...]]]:
        with sqlite3.connect(world.settings.database) as db:
            names = [r[0] for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")]
            return {n: db.execute(f'SELECT * FROM "{n}"').fetchall()  # noqa: S608
                    for n in names}

    before = tables()
    for path in get_routes(world):
        # The callbacks act on purpose, once GitHub's code and this browser's state match.
        if path in ("/auth/callback", "/setup/callback") or path.startswith(
                ("/live/", "/api/runs/", "/llm/")):
            continue
        path = path.replace("{task_id}", str(task_id))
        for client in (dana.client, world.client):
            answer = await client.get(path + "?name=X&done=1&next=/", headers=HTML)
            assert answer.status_code < 500, (path, answer.status_code)
    assert tables() == before
    await dana.client.aclose()


# -- odd and oversized input ----------------------------------------------------------------------


async def test_odd_paths_and_huge_parameters_are_plain_refusals(world: World) -> None:
    carol = await signed_in(world, "carol")
    huge = "a" * 50_000  # httpx refuses URLs over 64 KiB
    for path in ("/tasks/%ff", "/tasks/%00", "/tasks/1%2f..", "/tasks/%D9%A3", "/tasks/\u00b2",
                 "/tasks/99999999999999999999999", "/tasks/-1", "/tasks/%3Cscript%3E",
                 "/live/tasks/%3Cb%3E", "/api/tasks/1%0d%0aX:y", "/static/..%2f..%2fapp.py",
                 "/static/%2e%2e/%2e%2e/settings.py", f"/tasks?branch={huge}",
                 f"/tasks?repo={huge}", f"/tasks?issue={huge}", f"/api/tasks?repo={huge}",
                 f"/history/suggest?field=repo&q={huge}", f"/live/feed?since={huge}",
                 f"/audit?actor={huge}", f"/login?next={huge}", f"/tasks?requester=%00{huge}"):
        answer = await carol.client.get(path, headers=HTML)
        assert answer.status_code < 500, (path[:60], answer.status_code)
        assert "<script>" not in answer.text and "<b>" not in answer.text
        assert huge not in answer.text, path[:60]
        if path.startswith("/live/feed"):
            break  # a stream: the next request is the browser's
    await carol.client.aclose()


# -- hostile text from GitHub and agents ---------------------------------------------------------


HOSTILE = '"><img src=x onerror=alert(1)><script>alert(2)</script>'


async def test_hostile_text_from_github_is_inert_on_every_page_and_stream(world: World) -> None:
    payload = world.payload(f"@porter {HOSTILE}")
    payload["comment"]["html_url"] = "javascript:alert(document.cookie)"
    accepted = await world.deliver("issue_comment", payload)
    assert accepted.status_code == 202, accepted.text
    task_id = int(accepted.json()["task_id"])
    dana = await signed_in(world, "dana")
    pages = [await dana.client.get(path, headers=HTML) for path in
             ("/", "/tasks", f"/tasks/{task_id}", "/tasks?requester=alice")]
    async with EventStream(world, "/live/feed", cookies=dana.client.cookies) as stream:
        await stream.next("task", within=2)
    for text in [page.text for page in pages] + [str(data) for _, data in stream.seen]:
        assert "<img" not in text and "<script>alert" not in text
        assert '="javascript:' not in text and "='javascript:" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in pages[2].text
    await dana.client.aclose()


async def test_settings_never_echo_what_was_typed_into_a_key_field(world: World) -> None:
    alice = await signed_in(world, "alice")
    typed = "sk-ant-" + "Q" * 20 + " <b>" + "Z" * 2000
    page = await alice.client.post("/settings", data={
        "csrf": alice.csrf, "ANTHROPIC_API_KEY": typed, "OPENAI_API_KEY": "x" * 50_000,
        "FLY_API_TOKEN": "fo1_" + "T" * 20_000, "fly_app": "my-app",
        "default_agent": "<i>nope" + "n" * 5000, "default_model": "m" * 5000})
    assert page.status_code == 400, page.status_code
    for secret in ("QQQQQQQQ", "ZZZZ", "xxxxxxxx", "TTTTTTTT", "<i>", "n" * 41):
        assert secret not in page.text, secret
    assert CSRF_FIELD.search(page.text) is not None  # the form is there to try again
    await alice.client.aclose()


async def test_an_unexpected_error_is_a_plain_500_with_the_page_headers_and_no_details(
        tmp_path: Path) -> None:
    async with open_world(tmp_path) as world:
        async def broken(*args: object, **kwargs: object) -> object:
            raise RuntimeError("database says: secret-looking detail sk-ant-xyz")

        world.store.list_tasks = broken  # type: ignore[method-assign]
        app = world.client._transport.app  # type: ignore[attr-defined]
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport,
                                     base_url=world.settings.public_url) as client:
            page = await client.get("/tasks", headers={"Accept": "text/html",
                                                       "Authorization": f"Bearer {ADMIN_TOKEN}"})
            assert page.status_code == 500
            assert "Content-Security-Policy" in page.headers
            assert "sk-ant-xyz" not in page.text and "failed to answer" in page.text
            api = await client.get("/api/tasks",
                                   headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            assert api.status_code == 500 and "sk-ant-xyz" not in api.text
            assert api.json()["error"].startswith("Porter failed")
