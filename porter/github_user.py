"""GitHub as a signed-in user: the OAuth web flow of the App, and what the user can reach.

OAuth lives on the web host (`PORTER_GITHUB_URL`/login/oauth/…), the rest on the API host, so
GitHub Enterprise and the test fake work the same way (docs/platform-notes.md §C.4). User tokens
expire (8 h); the refresh token gives a new pair and is itself replaced.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from porter.errors import GitHubError
from porter.github_errors import failed

TIMEOUT = httpx.Timeout(10.0)
MAX_PAGES = 20  # 2,000 installations or repositories: past that, the list is cut


@dataclass(frozen=True)
class UserTokens:
    access: str
    refresh: str | None
    expires_at: float | None


class OAuthError(GitHubError):
    """GitHub refused the sign-in."""

    status_code = 400


def permission_of(flags: dict[str, Any]) -> str:
    """A repository's `permissions` booleans as the collaborator-permission word."""
    for word, flag in (("admin", "admin"), ("maintain", "maintain"), ("write", "push"),
                       ("triage", "triage"), ("read", "pull")):
        if flags.get(flag):
            return word
    return "none"


class GitHubUsers:
    def __init__(self, *, web_url: str, api_url: str, client_id: str, client_secret: str,
                 transport: httpx.AsyncBaseTransport | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._web = web_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._clock = clock
        self._http = httpx.AsyncClient(base_url=api_url.rstrip("/"), timeout=TIMEOUT,
                                       transport=transport, headers={
                                           "Accept": "application/vnd.github+json",
                                           "X-GitHub-Api-Version": "2022-11-28",
                                           "User-Agent": "porter"})

    async def aclose(self) -> None:
        await self._http.aclose()

    def authorize_url(self, *, redirect_uri: str, state: str) -> str:
        query = urlencode({"client_id": self._client_id, "redirect_uri": redirect_uri,
                           "state": state})
        return f"{self._web}/login/oauth/authorize?{query}"

    async def exchange(self, code: str, *, redirect_uri: str) -> UserTokens:
        return await self._token({"code": code, "redirect_uri": redirect_uri})

    async def refresh(self, refresh_token: str) -> UserTokens:
        return await self._token({"grant_type": "refresh_token",
                                  "refresh_token": refresh_token})

    async def _token(self, fields: dict[str, str]) -> UserTokens:
        now = self._clock()
        try:
            response = await self._http.post(
                f"{self._web}/login/oauth/access_token",
                data={"client_id": self._client_id, "client_secret": self._client_secret,
                      **fields},
                # Without it GitHub answers form-encoded.
                headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise GitHubError(f"could not reach GitHub to sign in ({type(exc).__name__})",
                              retryable=True) from None
        _check(response, self._clock())
        try:
            body = response.json()
        except ValueError:
            raise OAuthError("GitHub's token endpoint did not answer JSON") from None
        if not isinstance(body, dict) or "error" in body or not body.get("access_token"):
            error = body.get("error", "no token") if isinstance(body, dict) else "no token"
            # error codes are GitHub's fixed words (bad_verification_code, …): safe to show.
            raise OAuthError(f"GitHub refused the sign-in: {str(error)[:80]}")
        expires_in = body.get("expires_in")
        return UserTokens(
            access=str(body["access_token"]),
            refresh=str(body["refresh_token"]) if body.get("refresh_token") else None,
            expires_at=now + float(expires_in) if expires_in else None)

    async def me(self, access: str) -> dict[str, Any]:
        body = await self._get(access, "/user")
        if not isinstance(body, dict) or type(body.get("id")) is not int or body["id"] <= 0 \
                or not isinstance(body.get("login"), str) or not body["login"]:
            raise GitHubError("GitHub's answer for the signed-in user lacks their id or login")
        return body

    async def repositories(self, access: str) -> dict[str, str]:
        """full_name → permission, for every repository the user reaches through the App's
        installations."""
        found: dict[str, str] = {}
        for installation in await self._pages(access, "/user/installations", "installations"):
            if type(installation.get("id")) is not int:
                raise GitHubError("GitHub listed an installation without an id")
            for repo in await self._pages(
                    access, f"/user/installations/{installation['id']}/repositories",
                    "repositories"):
                name, flags = repo.get("full_name"), repo.get("permissions")
                if not isinstance(name, str):
                    raise GitHubError("GitHub listed a repository without a name")
                found[name] = permission_of(flags if isinstance(flags, dict) else {})
        return found

    async def _pages(self, access: str, path: str, key: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        for page in range(1, MAX_PAGES + 1):
            body = await self._get(access, path, {"per_page": 100, "page": page})
            batch = body.get(key) if isinstance(body, dict) else None
            if not isinstance(batch, list) or not all(isinstance(i, dict) for i in batch):
                raise GitHubError(f"GitHub's answer for {path} has no list of {key}")
            items.extend(batch)
            if len(batch) < 100:
                break
        return items

    async def _get(self, access: str, path: str,
                   params: dict[str, Any] | None = None) -> Any:
        try:
            response = await self._http.get(path, params=params,
                                            headers={"Authorization": f"Bearer {access}"})
        except httpx.HTTPError as exc:
            raise GitHubError(f"could not reach GitHub ({type(exc).__name__})",
                              retryable=True) from None
        _check(response, self._clock())
        try:
            return response.json()
        except ValueError:  # a proxy's or an outage page's HTML, with a 200
            raise GitHubError(f"GitHub's answer for {path} is not JSON", retryable=True) from None


def _check(response: httpx.Response, now: float) -> None:
    if response.is_success:
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    raise failed(response.status_code, response.headers, body, now=now)
