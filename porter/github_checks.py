"""The GitHub half of the diagnostics: the App's key is accepted, the App asks for the permissions
and events Porter needs, and so does every installation.

GitHub is asked over HTTP with a freshly signed App JWT, not through the server's App client: a
check must see GitHub's own answer within its short timeout, and leave no token in the caches a
running server shares.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
import jwt

from porter.check import Check, Network, unreachable
from porter.errors import ConfigError
from porter.github import load_private_key
from porter.github_errors import error_message
from porter.manifest import DEFAULT_EVENTS, missing_permissions, required_permissions
from porter.settings import Settings

MAX_INSTALLATION_PAGES = 10  # 1,000 installations: a check never pages forever


class _Answered(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"GitHub answered {status}: {message}")
        self.status, self.message = status, message


def app_jwt(app_id: str, private_key: str, *, now: float) -> str:
    """The App's JWT (platform-notes §C.1): backdated a minute for clock drift, 9 minutes left."""
    return jwt.encode({"iat": int(now) - 60, "exp": int(now) + 540, "iss": app_id},
                      private_key, algorithm="RS256")


async def github_checks(settings: Settings, network: Network, *,
                        clock: Callable[[], float] = time.time) -> list[Check]:
    """The App's key is accepted, the App asks for what Porter needs, and so does every
    installation."""
    name = "GitHub App"
    if settings.missing().get("github") or not settings.github_app_id:
        return [Check(name, None, "not checked until the App's id and key are set",
                      blocking=False)]
    try:
        key = load_private_key(
            settings.github_private_key.get() if settings.github_private_key else None,
            str(settings.github_private_key_file) if settings.github_private_key_file else None)
    except ConfigError:
        return [Check(name, None, "not checked: the private key does not load (configuration)",
                      blocking=False)]
    headers = {"Accept": "application/vnd.github+json", "User-Agent": "porter",
               "Authorization": f"Bearer {app_jwt(settings.github_app_id, key, now=clock())}"}
    async with network.client(base_url=settings.github_api_url + "/", headers=headers) as http:
        try:
            app = await _get(http, "app")
            if not isinstance(app, dict):
                raise _Answered(200, "GET /app answered something that is not an App")
        except _Answered as answer:
            return [_refused_app(settings, answer)]
        except httpx.HTTPError as exc:
            return [unreachable(name, settings.github_api_url, exc)]
        checks = [Check(name, True, f"App id {app.get('id')} ({app.get('slug')}) accepts "
                        "Porter's key"), app_check(settings, app)]
        try:
            installations = await _installations(http)
        except _Answered as answer:
            return [*checks, Check("installations", False, str(answer),
                                   "try again; if it persists, see githubstatus.com",
                                   blocking=False)]
        except httpx.HTTPError as exc:
            return [*checks, unreachable("installations", settings.github_api_url, exc)]
    return [*checks, *installation_checks(settings, app, installations)]


async def _get(http: httpx.AsyncClient, path: str, **params: str | int) -> Any:
    response = await http.get(path, params=params)
    if response.status_code != 200:
        try:
            body = response.json()
        except ValueError:
            body = None
        raise _Answered(response.status_code, error_message(body))
    return response.json()


async def _installations(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for page in range(1, MAX_INSTALLATION_PAGES + 1):
        batch = await _get(http, "app/installations", per_page=100, page=page)
        if not isinstance(batch, list):
            raise _Answered(200, "GET /app/installations answered something that is not a list")
        found += [item for item in batch if isinstance(item, dict)]
        if len(batch) < 100:
            break
    return found


def _refused_app(settings: Settings, answer: _Answered) -> Check:
    app_id, where = settings.github_app_id, f"{settings.github_url}/settings/apps"
    if answer.status >= 500:
        return Check("GitHub App", False, str(answer), "try again; if it persists, see "
                     "githubstatus.com", blocking=False)
    if "Expiration time" in answer.message or "Issued at" in answer.message:
        return Check("GitHub App", False, f"GitHub refused the App's JWT as expired or not yet "
                     f"valid ({answer.message}): this host's clock is off",
                     "synchronise this host's clock (NTP)")
    return Check("GitHub App", False,
                 f"GitHub refused the App's JWT ({answer.status}: {answer.message}): the private "
                 f"key does not belong to App id {app_id}, or {app_id} is not the App's id",
                 f"check PORTER_GITHUB_APP_ID against the App's page under {where}, generate a "
                 "private key there and point PORTER_GITHUB_PRIVATE_KEY_FILE at it")


def _login(account: object) -> str | None:
    return str(account.get("login")) if isinstance(account, Mapping) else None


def _owner_path(account: object) -> str:
    """Where an account's settings live on GitHub's web UI: /organizations/ORG or the user's."""
    organization = isinstance(account, Mapping) and account.get("type") == "Organization"
    return f"/organizations/{_login(account)}" if organization else ""


def app_check(settings: Settings, app: Mapping[str, Any]) -> Check:
    """The App itself asks for every permission and event Porter needs: an installation can
    never hold more than its App asks for."""
    granted = app.get("permissions")
    missing = missing_permissions(granted if isinstance(granted, Mapping) else {},
                                  required_permissions(settings))
    events = app.get("events") if isinstance(app.get("events"), list) else []
    unsubscribed = [event for event in DEFAULT_EVENTS if event not in (events or [])]
    if not missing and not unsubscribed:
        return Check("App permissions", True, "asks for every permission and event Porter needs")
    page = (f"{settings.github_url}{_owner_path(app.get('owner'))}/settings/apps/"
            f"{app.get('slug')}/permissions")
    lacking = [*(f"{name}: {level}" for name, level in required_permissions(settings).items()
                 if name in missing), *(f"the {event} event" for event in unsubscribed)]
    return Check("App permissions", False, "the App does not ask for " + ", ".join(lacking),
                 f"add them at {page}; each installation then accepts them")


def installation_checks(settings: Settings, app: Mapping[str, Any],
                        installations: Sequence[Mapping[str, Any]]) -> list[Check]:
    if not installations:
        return [Check("installations", False, "the App is not installed anywhere yet",
                      f"install it: {settings.github_url}/apps/{app.get('slug')}/installations/new",
                      blocking=False)]
    required = required_permissions(settings)
    checks = []
    for installation in installations:
        account, number = installation.get("account"), installation.get("id")
        name = f"installation {_login(account) or number}"
        page = f"{settings.github_url}{_owner_path(account)}/settings/installations/{number}"
        granted = installation.get("permissions")
        missing = missing_permissions(granted if isinstance(granted, Mapping) else {}, required)
        if installation.get("suspended_at"):
            checks.append(Check(name, False, f"installation {number} is suspended",
                                f"unsuspend it at {page}"))
        elif missing:
            lacking = ", ".join(f"{perm}: {required[perm]} (has {has})"
                                for perm, has in missing.items())
            checks.append(Check(name, False, f"installation {number} lacks {lacking}",
                                f"accept the new permissions at {page}"))
        else:
            checks.append(Check(name, True, f"installation {number} has every permission "
                                "Porter needs"))
    return checks


# -- runner, image, agents --------------------------------------------------------------------
