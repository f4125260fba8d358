"""The fake GitHub's OAuth web flow, user access tokens, /user routes and app manifests, driven
over real HTTP (httpx, and githubkit where its strict parsing checks the shapes)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from githubkit import AppAuthStrategy, GitHub, TokenAuthStrategy, UnauthAuthStrategy
from githubkit.cache import MemCacheStrategy
from githubkit.exception import RequestFailed

from tests.fakes.clock import Clock
from tests.fakes.github import FakeGitHub

SECRET = "s3cret-for-tests"
CALLBACK = "http://porter.test/auth/callback"
STATE = "st+te/with?odd=chars&more"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def fake(tmp_path: Path, pem: str, clock: Clock) -> AsyncIterator[FakeGitHub]:
    fake = FakeGitHub(tmp_path / "github", private_key_pem=pem, client_secret=SECRET, now=clock)
    fake.add_installation(42, account="alice")
    fake.add_repo("alice/one", installation_id=42, private=True)
    fake.add_repo("alice/two", installation_id=42)
    fake.add_installation(43, account="acme", account_type="Organization")
    for name in ("api", "web", "docs"):
        fake.add_repo(f"acme/{name}", installation_id=43, private=name != "docs")
    fake.set_permission("acme/api", "alice", "write")
    fake.set_permission("acme/web", "bob", "read")
    fake.add_installation(44, account="stranger")
    fake.add_repo("stranger/x", installation_id=44)
    async with fake.serve():
        yield fake


def web(fake: FakeGitHub) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=fake.web_url, follow_redirects=False)


def query(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["location"]).query).items()}


async def sign_in(http: httpx.AsyncClient, fake: FakeGitHub, redirect_uri: str = CALLBACK) -> str:
    """The browser's round: authorize, follow nothing, return the code GitHub redirected with."""
    answer = await http.get(
        "/login/oauth/authorize",
        params={"client_id": fake.client_id, "redirect_uri": redirect_uri, "state": STATE},
    )
    assert answer.headers["location"].startswith(redirect_uri + "?")
    back = query(answer)
    assert back["state"] == STATE  # echoed unchanged
    return back["code"]


async def exchange(http: httpx.AsyncClient, fake: FakeGitHub, **fields: str) -> dict[str, Any]:
    form = {"client_id": fake.client_id, "client_secret": SECRET, **fields}
    answer = await http.post(
        "/login/oauth/access_token", data=form, headers={"Accept": "application/json"}
    )
    assert answer.status_code == 200  # errors too
    assert answer.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = answer.json()
    return body


def api(fake: FakeGitHub, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=fake.api_url, headers={"Authorization": f"Bearer {token}"})


def user_client(fake: FakeGitHub, token: str) -> GitHub[Any]:
    return GitHub(
        TokenAuthStrategy(token),
        base_url=fake.api_url,
        http_cache=False,
        auto_retry=False,
        cache_strategy=MemCacheStrategy(),
    )


async def test_sign_in_list_refresh_and_expire(fake: FakeGitHub, clock: Clock) -> None:
    fake.sign_in_as("alice")
    async with web(fake) as http:
        code = await sign_in(http, fake)
        tokens = await exchange(http, fake, code=code, redirect_uri=CALLBACK)
        assert tokens["access_token"].startswith("ghu_")
        assert tokens["refresh_token"].startswith("ghr_")
        assert (tokens["expires_in"], tokens["refresh_token_expires_in"]) == (28800, 15897600)
        assert (tokens["token_type"], tokens["scope"]) == ("bearer", "")
        again = await exchange(http, fake, code=code, redirect_uri=CALLBACK)  # single use
        assert again["error"] == "bad_verification_code"
        assert again["error_description"] == "The code passed is incorrect or expired."
        assert again["error_uri"].startswith("https://docs.github.com/")

    gh = user_client(fake, tokens["access_token"])
    me = (await gh.rest.users.async_get_authenticated()).parsed_data
    assert (me.login, me.type) == ("alice", "User")
    found = await gh.rest.apps.async_list_installations_for_authenticated_user()
    assert found.parsed_data.total_count == 2
    assert [i.id for i in found.parsed_data.installations] == [42, 43]
    own = await gh.rest.apps.async_list_installation_repos_for_authenticated_user(42)
    assert own.parsed_data.repository_selection == "all"
    assert {
        r.full_name: r.permissions and r.permissions.admin for r in own.parsed_data.repositories
    } == {"alice/one": True, "alice/two": True}
    org = await gh.rest.apps.async_list_installation_repos_for_authenticated_user(43)
    [api_repo] = org.parsed_data.repositories  # not acme/web (bob's) nor public acme/docs
    assert api_repo.full_name == "acme/api"
    flags = org.json()["repositories"][0]["permissions"]
    assert flags == {"admin": False, "maintain": False, "push": True, "triage": True, "pull": True}
    with pytest.raises(RequestFailed) as hidden:
        await gh.rest.apps.async_list_installation_repos_for_authenticated_user(44)
    assert hidden.value.response.status_code == 404

    fake.user_token_lifetime = 60
    async with web(fake) as http:
        renewed = await exchange(
            http, fake, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
        )
        assert renewed["expires_in"] == 60
        assert renewed["access_token"] != tokens["access_token"]
        assert renewed["refresh_token"] != tokens["refresh_token"]
        stale = await exchange(
            http, fake, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
        )
        assert stale["error"] == "bad_refresh_token"

    async with api(fake, renewed["access_token"]) as http:
        assert (await http.get("/user")).json()["login"] == "alice"
        clock.advance(61)
        expired = await http.get("/user")
    assert expired.status_code == 401
    assert expired.json()["message"] == "Bad credentials"
    assert "documentation_url" in expired.json()

    exchanges = fake.calls_to("POST", "/login/oauth/access_token")
    assert [c.status for c in exchanges] == [200] * 4
    assert exchanges[0].json["code"] == code
    assert [c.auth for c in fake.calls_to("GET", "/user")] == ["user"] * 3
    assert fake.calls_to("GET", "/user")[0].token_id == fake.user_tokens[0].id


async def test_user_lists_paginate_with_link_headers(fake: FakeGitHub) -> None:
    token = fake.mint_user_token("alice").token
    for n in range(3):
        fake.add_repo(f"alice/more{n}", installation_id=42)
    async with api(fake, token) as http:
        first = await http.get("/user/installations", params={"per_page": 1})
        assert first.json()["total_count"] == 2
        assert [i["id"] for i in first.json()["installations"]] == [42]
        assert 'rel="next"' in first.headers["link"]
        assert first.links["next"]["url"].startswith(fake.api_url + "/user/installations?")
        second = await http.get(first.links["next"]["url"])
        assert [i["id"] for i in second.json()["installations"]] == [43]
        assert "next" not in second.links and "prev" in second.links

        pages: list[list[str]] = []
        url: str | None = f"{fake.api_url}/user/installations/42/repositories?per_page=2"
        while url:
            page = await http.get(url)
            assert page.json()["total_count"] == 5
            pages.append([r["name"] for r in page.json()["repositories"]])
            url = page.links.get("next", {}).get("url")
        assert pages == [["one", "two"], ["more0", "more1"], ["more2"]]
        unpaged = await http.get("/user/installations")
        assert "link" not in unpaged.headers


async def test_form_and_json_exchanges_and_their_errors(fake: FakeGitHub, clock: Clock) -> None:
    fake.sign_in_as("bob")
    async with web(fake) as http:
        code = await sign_in(http, fake)
        base = {"client_id": fake.client_id, "client_secret": SECRET, "redirect_uri": CALLBACK}

        wrong = await http.post(
            "/login/oauth/access_token", data={**base, "client_secret": "x", "code": code}
        )
        assert wrong.status_code == 200
        assert wrong.headers["content-type"].startswith("application/x-www-form-urlencoded")
        assert parse_qs(wrong.text)["error"] == ["incorrect_client_credentials"]

        elsewhere = await exchange(http, fake, code=code, redirect_uri="http://evil.test/cb")
        assert elsewhere["error"] == "redirect_uri_mismatch"

        form = await http.post("/login/oauth/access_token", data={**base, "code": code})
        assert form.headers["content-type"].startswith("application/x-www-form-urlencoded")
        fields = parse_qs(form.text)
        assert fields["access_token"][0].startswith("ghu_")
        assert fields["token_type"] == ["bearer"] and fields["expires_in"] == ["28800"]

        code = await sign_in(http, fake)
        as_json = await http.post(
            "/login/oauth/access_token",
            json={**base, "code": code},
            headers={"Accept": "application/json"},
        )
        assert as_json.json()["access_token"].startswith("ghu_")

        code = await sign_in(http, fake)
        clock.advance(601)  # codes live ten minutes
        assert (await exchange(http, fake, code=code))["error"] == "bad_verification_code"
        odd = await exchange(http, fake, grant_type="password")
        assert odd["error"] == "unsupported_grant_type"

        fake.user_token_lifetime = None  # an App with user-token expiration turned off
        forever = await exchange(http, fake, code=await sign_in(http, fake))
    assert set(forever) == {"access_token", "token_type", "scope"}
    assert [c.status for c in fake.calls_to("POST", "/login/oauth/access_token")] == [200] * 7


async def test_sign_in_form_when_nobody_is_signed_in(fake: FakeGitHub) -> None:
    params = {"client_id": fake.client_id, "redirect_uri": CALLBACK, "state": STATE}
    async with web(fake) as http:
        page = await http.get("/login/oauth/authorize", params=params)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "<label for='login_field'>Username</label>" in page.text
        assert ">Authorize</button>" in page.text

        typo = await http.post(
            "/login/oauth/authorize", data={**params, "login": "nobody", "authorize": "1"}
        )
        assert typo.status_code == 200 and "Incorrect username or password." in typo.text
        signed = await http.post(
            "/login/oauth/authorize", data={**params, "login": "alice", "authorize": "1"}
        )
        back = query(signed)
        assert back["state"] == STATE
        tokens = await exchange(http, fake, code=back["code"], redirect_uri=CALLBACK)
        denied = await http.post("/login/oauth/authorize", data={**params, "cancel": "1"})
        assert query(denied)["error"] == "access_denied"
        assert query(denied)["state"] == STATE

        stranger = await http.get("/login/oauth/authorize", params={**params, "client_id": "Iv1.x"})
        assert stranger.status_code == 404 and "location" not in stranger.headers
        bare = await http.get("/login/oauth/authorize", params={"client_id": fake.client_id})
        assert bare.status_code == 400 and "location" not in bare.headers
    async with api(fake, tokens["access_token"]) as gh:
        assert (await gh.get("/user")).json()["login"] == "alice"
    assert fake.signed_in is None  # the form signs in for this authorization only


async def test_user_tokens_stay_on_user_routes(fake: FakeGitHub) -> None:
    user = fake.mint_user_token("alice").token
    installation = fake.mint_token(42).token
    async with api(fake, user) as http:
        app = await http.get("/app")
        listing = await http.get("/installation/repositories")
        repo = await http.get("/repos/alice/one")
        public = await http.get("/users/bob")
    assert app.status_code == 401
    assert listing.status_code == 403
    assert listing.json()["message"].startswith("You must authenticate with an installation")
    assert repo.status_code == 403
    assert public.status_code == 200
    async with api(fake, installation) as http:
        as_installation = await http.get("/user/installations")
    async with httpx.AsyncClient(base_url=fake.api_url) as http:
        anonymous = await http.get("/user")
    assert as_installation.status_code == 403
    assert as_installation.json()["message"] == "Resource not accessible by integration"
    assert anonymous.status_code == 401
    fake.revoke_user_token(user)
    async with api(fake, user) as http:
        assert (await http.get("/user")).status_code == 401


MANIFEST: dict[str, Any] = {
    "name": "Porter for Alice",
    "url": "http://porter.test",
    "hook_attributes": {"url": "http://porter.test/webhooks/github", "active": True},
    "redirect_url": "http://porter.test/setup/created",
    "callback_urls": [CALLBACK],
    "setup_url": "http://porter.test/setup/installed",
    "description": "Runs agents",
    "public": False,
    "default_events": ["issue_comment", "pull_request_review_comment"],
    "default_permissions": {"issues": "write", "contents": "write", "pull_requests": "write"},
    "request_oauth_on_install": False,
    "setup_on_update": True,
}


async def test_manifest_registers_the_app_with_working_credentials(fake: FakeGitHub) -> None:
    fake.sign_in_as("alice")
    async with web(fake) as http:
        posted = await http.post(
            "/settings/apps/new", params={"state": STATE}, data={"manifest": json.dumps(MANIFEST)}
        )
        back = query(posted)
        assert posted.headers["location"].startswith(MANIFEST["redirect_url"] + "?")
        assert back["state"] == STATE
        [record] = fake.manifests
        assert (record.manifest, record.state, record.owner) == (MANIFEST, STATE, "alice")

        anonymous = GitHub(
            UnauthAuthStrategy(),
            base_url=fake.api_url,
            http_cache=False,
            auto_retry=False,
            cache_strategy=MemCacheStrategy(),
        )
        converted = await anonymous.rest.apps.async_create_from_manifest(back["code"])
        assert converted.status_code == 201
        assert converted.parsed_data.pem == fake.private_key_pem  # githubkit's strict model
        app: dict[str, Any] = json.loads(converted.text)
        assert (app["id"], app["client_id"]) == (int(fake.app_id), fake.client_id)
        assert app["pem"] == fake.private_key_pem
        assert app["client_secret"] == fake.client_secret != SECRET
        assert app["webhook_secret"] == fake.webhook_secret and len(app["webhook_secret"]) >= 20
        assert (app["name"], app["slug"]) == ("Porter for Alice", "porter-for-alice")
        assert app["owner"]["login"] == "alice"
        assert app["permissions"] == {**MANIFEST["default_permissions"], "metadata": "read"}
        assert app["events"] == MANIFEST["default_events"]
        assert app["html_url"] == f"{fake.web_url}/apps/porter-for-alice"
        for key in ("node_id", "description", "external_url", "created_at", "updated_at"):
            assert key in app
        with pytest.raises(RequestFailed) as reused:
            await anonymous.rest.apps.async_create_from_manifest(back["code"])
        assert reused.value.response.status_code == 404

        # The handed-out key and id sign JWTs the fake accepts.
        now = int(time.time())
        token = jwt.encode(
            {"iat": now - 30, "exp": now + 540, "iss": str(app["id"])},
            app["pem"],
            algorithm="RS256",
        )
        async with api(fake, token) as gh:
            me = await gh.get("/app")
        assert me.status_code == 200
        assert (me.json()["name"], me.json()["permissions"]) == (app["name"], app["permissions"])
        as_app = GitHub(
            AppAuthStrategy(str(app["id"]), app["pem"]),
            base_url=fake.api_url,
            http_cache=False,
            cache_strategy=MemCacheStrategy(),
        )
        registered = (await as_app.rest.apps.async_get_authenticated()).parsed_data
        assert registered is not None and registered.slug == app["slug"]

        # The new client secret is the one OAuth accepts; callback URLs now bind redirect_uri.
        code = await sign_in(http, fake)
        assert (await exchange(http, fake, code=code))["error"] == "incorrect_client_credentials"
        form = {"client_id": app["client_id"], "client_secret": app["client_secret"], "code": code}
        ok = await http.post("/login/oauth/access_token", data=form)
        assert "access_token=ghu_" in ok.text
        astray = await http.get(
            "/login/oauth/authorize",
            params={"client_id": fake.client_id, "redirect_uri": "http://evil.test/", "state": "s"},
        )
        assert astray.headers["location"].startswith(CALLBACK + "?")
        assert query(astray)["error"] == "redirect_uri_mismatch"
    assert [c.status for c in fake.calls_to("POST", "/settings/apps/new")] == [302]
    assert [c.status for c in fake.calls_to("POST", r"/app-manifests/\w+/conversions")] == [
        201,
        404,
    ]


@pytest.mark.parametrize(
    ("manifest", "problem"),
    [
        ({k: v for k, v in MANIFEST.items() if k != "url"}, "url is required"),
        ({**MANIFEST, "hook_attributes": {"active": True}}, "hook_attributes.url is required"),
        ({**MANIFEST, "callback_urls": [CALLBACK] * 11}, "at most 10"),
        ({**MANIFEST, "default_permissions": {"issues": "all"}}, "default_permissions"),
        ("{not json", "not JSON"),
    ],
)
async def test_invalid_manifests_are_refused(fake: FakeGitHub, manifest: Any, problem: str) -> None:
    raw = manifest if isinstance(manifest, str) else json.dumps(manifest)
    async with web(fake) as http:
        answer = await http.post("/settings/apps/new", data={"manifest": raw})
    assert answer.status_code == 422 and "location" not in answer.headers
    assert problem in answer.text
    assert fake.manifests == []


async def test_org_manifest_and_manifest_codes_expire(fake: FakeGitHub, clock: Clock) -> None:
    async with web(fake) as http:
        org = await http.post(
            "/organizations/acme/settings/apps/new", data={"manifest": json.dumps(MANIFEST)}
        )
        code = query(org)["code"]
        assert "state" not in query(org)
        assert (fake.manifests[-1].org, fake.manifests[-1].owner) == ("acme", "acme")
        nowhere = await http.post(
            "/organizations/nope/settings/apps/new", data={"manifest": json.dumps(MANIFEST)}
        )
        assert nowhere.status_code == 404
        clock.advance(3601)
        async with httpx.AsyncClient(base_url=fake.api_url) as gh:
            late = await gh.post(f"/app-manifests/{code}/conversions")
            unknown = await gh.post("/app-manifests/nope/conversions")
    assert (late.status_code, unknown.status_code) == (404, 404)
    assert late.json()["message"] == "Not Found"
