"""Signing in to Porter's web app without a browser, through the real OAuth flow.

`signed_in(world, login)` does what a browser does: GET /login (Porter sets the state cookie
and sends it to GitHub), GET GitHub's authorize URL (the fake, already knowing the browser's
user, redirects back with a code), GET /auth/callback with that code and state. The client it
returns holds Porter's session cookie, and `csrf` is the token Porter put in its pages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from tests.fakes.world import World

CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Browser:
    client: httpx.AsyncClient
    csrf: str
    login: str


async def follow_sign_in(porter: httpx.AsyncClient, github: httpx.AsyncClient,
                         login_path: str = "/login") -> httpx.Response:
    """The three hops of a sign-in; the callback's answer."""
    start = await porter.get(login_path)
    assert start.status_code == 302, start.text
    authorize = urlsplit(start.headers["location"])
    at_github = await github.get(f"{authorize.path}?{authorize.query}")
    assert at_github.status_code == 302, at_github.text
    back = urlsplit(at_github.headers["location"])
    return await porter.get(f"{back.path}?{back.query}")


def porter_client(world: World, **options: object) -> httpx.AsyncClient:
    """A client at Porter's public URL: its cookies are Secure when that URL is https."""
    return httpx.AsyncClient(transport=world.client._transport,
                             base_url=world.settings.public_url, **options)  # type: ignore[arg-type]


def github_client(world: World) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=world.fake.app),
                             base_url="http://github.test")


async def signed_in(world: World, login: str) -> Browser:
    world.fake.sign_in_as(login)
    client = porter_client(world)
    async with github_client(world) as github:
        done = await follow_sign_in(client, github)
    assert done.status_code == 303, done.text
    page = await client.get("/", headers={"Accept": "text/html"})
    found = CSRF_FIELD.search(page.text)
    assert found is not None, page.text[:500]
    return Browser(client, found.group(1), login)
