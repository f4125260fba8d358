"""What stands between this Porter and doing its job: the checks `porter doctor` and the
/setup page share.

`diagnose` looks at the settings, the database, the GitHub App and its installations, the
runner, the agent image and each agent's key, and returns one `Check` each, in that order. It
never raises for what it finds: network checks have a short timeout, and an unreachable API is a
check that does not block (this host may just have no route to it). Nothing is created on the
way: a database that does not exist yet is reported, not made. GitHub is asked over HTTP with a
freshly signed App JWT, not through the server's App client: a check must see GitHub's own
answer within its short timeout, and leave no token in the caches a running server shares.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import jwt

from porter.agents import Registry
from porter.errors import ConfigError, FlyError, PorterError
from porter.fly import FlyClient
from porter.gateway.health import health_checks
from porter.github import load_private_key
from porter.github_errors import error_message
from porter.manifest import DEFAULT_EVENTS, missing_permissions, required_permissions
from porter.runners.local import DEFAULT_ENTRYPOINT
from porter.runners.sandbox import UNSANDBOXED_WARNING, SandboxPolicy
from porter.runners.sandbox import check as sandbox_check
from porter.runtime import check_config
from porter.settings import CAPABILITIES, Settings
from porter.store import Store, migrations

NETWORK_TIMEOUT_S = 5.0
MAX_INSTALLATION_PAGES = 10  # 1,000 installations: a check never pages forever
_SQLITE_HEADER = b"SQLite format 3\x00"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: skipped, or information only
    detail: str
    next_action: str | None = None  # every failing check says what to do about it
    blocking: bool = True  # failed, it means Porter cannot do its job: `porter doctor` exits 1
    area: str = ""  # settings, database, github, runner, agents or gateway (set by diagnose)

    @property
    def blocks(self) -> bool:
        return self.ok is False and self.blocking


SandboxProbe = Callable[[Settings], str | None]


@dataclass(frozen=True)
class Network:
    """How the checks reach GitHub and Fly: a transport (tests) and a short timeout."""

    transport: httpx.AsyncBaseTransport | None = None
    timeout: float = NETWORK_TIMEOUT_S

    def client(self, **options: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.timeout, transport=self.transport, **options)


def sandbox_problem(settings: Settings) -> str | None:
    """Why the local runner's sandbox cannot run agents here (the entrypoint's own check)."""
    return sandbox_check(sys.executable, str(DEFAULT_ENTRYPOINT),
                         SandboxPolicy.from_settings(settings))


async def diagnose(
    settings: Settings,
    *,
    store: Store | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    sandbox: SandboxProbe = sandbox_problem,
    network_timeout: float = NETWORK_TIMEOUT_S,
    clock: Callable[[], float] = time.time,
) -> list[Check]:
    """Every check, in order. `store` is an open store to check (a running server's); without
    one the settings' database file is opened, if it exists. `transport` carries the GitHub and
    Fly requests (tests); `sandbox` is the local runner's sandbox probe."""
    network = Network(transport, network_timeout)
    database, github, runner = await asyncio.gather(
        database_checks(settings, store), github_checks(settings, network, clock=clock),
        runner_checks(settings, network, sandbox=sandbox))
    areas = {"settings": settings_checks(settings), "database": database, "github": github,
             "runner": runner, "agents": agent_checks(settings),
             # The LLM gateway's providers as this process saw them: only a running server
             # (the caller that passes its store) has calls to show.
             "gateway": health_checks() if store is not None else []}
    return [replace(check, area=area) for area, checks in areas.items() for check in checks]


# -- settings ---------------------------------------------------------------------------------


def settings_checks(settings: Settings) -> list[Check]:
    """What each capability still needs, the runner, settings that do not parse as a whole,
    and names that are not settings at all."""
    checks = []
    missing = settings.missing()
    for capability in CAPABILITIES:
        if (names := missing.get(capability.name)) is None:
            continue
        if names:
            checks.append(Check(capability.label, False, "needs " + ", ".join(names),
                                f"set {' and '.join(names)} (docs/settings.md)",
                                blocking=capability.blocking))
        else:
            checks.append(Check(capability.label, True, "ready"))
    checks.append(Check("runner", None, settings.effective_runner, blocking=False))
    checks += [Check("configuration", False, problem, "correct that setting")
               for problem in check_config(settings)]
    checks += [Check("unknown setting", False, line, "rename it or remove it", blocking=False)
               for line in settings.suggestions()]
    return checks


# -- database ---------------------------------------------------------------------------------


async def database_checks(settings: Settings, store: Store | None) -> list[Check]:
    if store is not None:
        return [await _schema(store, settings.database)]
    path = settings.database
    if not path.exists():
        return [Check("database", None, f"{path} not created yet",
                      "`porter serve` or `porter migrate` creates it",
                      blocking=False)]
    if problem := _unopenable(path):
        return [_broken(path, problem)]
    try:
        opened = await Store.open(path, migrate=False)
    except (PorterError, OSError, sqlite3.Error) as exc:
        return [_broken(path, f"{type(exc).__name__}: {exc}")]
    try:
        return [await _schema(opened, path)]
    finally:
        await opened.close()


def _unopenable(path: Path) -> str | None:
    """Why SQLite could not use this file, found without opening it (a failed open would leave
    the driver's threads behind)."""
    try:
        with path.open("rb") as handle:
            header = handle.read(len(_SQLITE_HEADER))
    except OSError as exc:
        return f"cannot read it ({exc.strerror})"
    if header and header != _SQLITE_HEADER:
        return "it is not a SQLite database"
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
        return "Porter's user cannot write it or its directory (SQLite keeps a log beside it)"
    return None


def _broken(path: Path, problem: str) -> Check:
    return Check("database", False, f"{path}: {problem}",
                 "restore it from a backup, or point PORTER_DATABASE at a new file")


async def _schema(store: Store, path: Path) -> Check:
    try:
        reachable = await store.ping()
        applied = await store.applied_versions()
    except (sqlite3.Error, ValueError) as exc:  # ValueError: aiosqlite's closed connection
        return _broken(path, f"{type(exc).__name__}: {exc}")
    if not reachable:
        return _broken(path, "it does not answer queries")
    known = migrations()
    if unknown := sorted(applied - {m.version for m in known}):
        return Check("database", False,
                     f"{path} has migrations this Porter does not know "
                     f"({', '.join(f'{v:04d}' for v in unknown)}): a newer Porter migrated it",
                     "run that newer Porter, or restore a backup taken before it")
    if pending := [m for m in known if m.version not in applied]:
        names = ", ".join(f"{m.version:04d} {m.name}" for m in pending)
        return Check("database", False, f"{path}: migrations pending ({names})",
                     "`porter migrate` applies them (`porter serve` does at start)",
                     blocking=False)
    return Check("database", True, f"{path}, migrations current ({known[-1].version:04d})")


# -- GitHub -----------------------------------------------------------------------------------


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
            return [_unreachable(name, settings.github_api_url, exc)]
        checks = [Check(name, True, f"App id {app.get('id')} ({app.get('slug')}) accepts "
                        "Porter's key"), app_check(settings, app)]
        try:
            installations = await _installations(http)
        except _Answered as answer:
            return [*checks, Check("installations", False, str(answer),
                                   "try again; if it persists, see githubstatus.com",
                                   blocking=False)]
        except httpx.HTTPError as exc:
            return [*checks, _unreachable("installations", settings.github_api_url, exc)]
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


def _unreachable(name: str, url: str, exc: Exception) -> Check:
    return Check(name, False, f"not checked: could not reach {url} ({type(exc).__name__})",
                 f"check that this host reaches {url} (PORTER_GITHUB_API_URL)", blocking=False)


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


async def runner_checks(settings: Settings, network: Network, *,
                        sandbox: SandboxProbe = sandbox_problem) -> list[Check]:
    if settings.effective_runner == "local":
        return [await _sandbox_check(settings, sandbox)]
    return [await _fly_check(settings, network), _image_check(settings)]


async def _sandbox_check(settings: Settings, sandbox: SandboxProbe) -> Check:
    name = "agent sandbox"
    if settings.local_runner_unsandboxed:
        return Check(name, False, "OFF",
                     f"{UNSANDBOXED_WARNING}; unset it once bubblewrap works here",
                     blocking=False)
    problem = await asyncio.to_thread(sandbox, settings)
    if problem is None:
        return Check(name, True, "ready (bubblewrap)")
    return Check(name, False,
                 "needs bubblewrap: the local runner starts no agent until its sandbox works",
                 problem)


async def _fly_check(settings: Settings, network: Network) -> Check:
    name, app = "Fly app", settings.fly_app
    if settings.fly_api_token is None or not app:
        return Check(name, None, "not checked until PORTER_FLY_API_TOKEN and PORTER_FLY_APP "
                     "are set", blocking=False)
    async with network.client() as http:
        try:
            client = FlyClient(token=settings.fly_api_token.get(), app=app,
                               base_url=settings.fly_api_url, http=http)
            found = await client.get_app()
        except ConfigError as exc:
            return Check(name, False, exc.message, "set PORTER_FLY_API_TOKEN")
        except FlyError as exc:
            if exc.status in (401, 403):
                return Check(name, False, f"Fly refused PORTER_FLY_API_TOKEN ({exc.message})",
                             f"make a token for the app (`fly tokens create deploy -a {app}`) "
                             "and set PORTER_FLY_API_TOKEN to it")
            return Check(name, False, f"not checked: {exc.message}",
                         f"check that this host reaches {settings.fly_api_url} "
                         "(PORTER_FLY_API_URL)", blocking=False)
    if found is None:
        return Check(name, False, f"Fly has no app {app}, or none the token may see",
                     f"create it (`fly apps create {app}`) in the token's organization, or "
                     "correct PORTER_FLY_APP")
    organization = found.get("organization")
    org = organization.get("slug") if isinstance(organization, Mapping) else None
    return Check(name, True, f"{app} answers (organization {org or '?'}, "
                 f"status {found.get('status') or '?'})")


def _image_check(settings: Settings) -> Check:
    if settings.agent_image:
        return Check("agent image", True, settings.agent_image)
    return Check("agent image", False, "PORTER_AGENT_IMAGE is not set: no machine starts",
                 "build the image from container/, push it (docs/operator.md) and set "
                 "PORTER_AGENT_IMAGE")


def agent_checks(settings: Settings) -> list[Check]:
    """Whose key each agent runs with: the operator's, or each requester's own."""
    checks = []
    for agent in Registry.from_settings(settings):
        name = f"agent {agent.name}"
        provided = [key for key in agent.key_names if key in settings.agent_secrets]
        if not agent.key_names:
            checks.append(Check(name, True, "takes no key"))
        elif provided:
            checks.append(Check(name, True, f"operator key ({', '.join(provided)})"))
        else:
            checks.append(Check(
                name, None, "no operator key: each requester must add theirs at "
                f"{settings.public_url}/settings",
                f"to give everyone a key, set PORTER_SECRET_{agent.key_names[0]}",
                blocking=False))
    return checks
