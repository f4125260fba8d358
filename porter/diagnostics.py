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
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

import httpx
import psycopg

from porter.agents import Registry
from porter.check import NETWORK_TIMEOUT_S, Check, Network
from porter.errors import ConfigError, FlyError, PorterError
from porter.fly import FlyClient
from porter.gateway.health import health_checks
from porter.github_checks import github_checks
from porter.key_check import no_ring, reconcile, refusal
from porter.runners.local import DEFAULT_ENTRYPOINT
from porter.runners.sandbox import UNSANDBOXED_WARNING, SandboxPolicy
from porter.runners.sandbox import check as sandbox_check
from porter.runtime import check_config, has_keyring, load_keyring
from porter.settings import CAPABILITIES, Settings
from porter.settings.database import DatabaseUrl
from porter.store import Store

_SQLITE_HEADER = b"SQLite format 3\x00"


SandboxProbe = Callable[[Settings], str | None]


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
        return await _database(store, settings, settings.database)
    if isinstance(settings.database, DatabaseUrl):
        return await _postgres(settings.database, settings)
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
        return await _database(opened, settings, path)
    finally:
        await opened.close()


async def _postgres(url: DatabaseUrl, settings: Settings) -> list[Check]:
    """The PostgreSQL database, opened without migrating; a driver's error is shown with the
    URL's password masked."""
    try:
        opened = await Store.open(url.get(), migrate=False)
    except (PorterError, OSError, psycopg.Error) as exc:
        return [Check("database", False, f"{url}: {url.redact(f'{type(exc).__name__}: {exc}')}",
                      "check that the server is up and PORTER_DATABASE's host, user, password "
                      "and database name")]
    try:
        return await _database(opened, settings, url)
    finally:
        await opened.close()


async def _database(store: Store, settings: Settings,
                    where: Path | DatabaseUrl) -> list[Check]:
    schema = await _schema(store, where)
    return [schema, *await _key_ring(store, settings)] if schema.ok is True else [schema]


async def _key_ring(store: Store, settings: Settings) -> list[Check]:
    """Whether this Porter's key ring is the one its database's other processes use, as
    `porter serve` checks at start (porter/key_check.py); doctor records nothing."""
    stored = await store.key_fingerprints()
    if not has_keyring(settings):
        if not stored:
            return []  # the first start generates a ring and records it
        problem: str | dict[str, str] = no_ring(settings.keys_file)
    else:
        try:
            problem = reconcile(stored, load_keyring(settings).fingerprints())
        except ConfigError:
            return []  # a malformed PORTER_SECRET_KEYS: the settings checks say so
    if isinstance(problem, str):
        return [Check("key ring", False, refusal(problem).message,
                      "give this Porter the PORTER_SECRET_KEYS every other process of the "
                      "database uses (docs/operator.md)")]
    detail = "the one this database's processes use" if stored else "recorded at first start"
    return [Check("key ring", True, detail)]


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


def _broken(path: Path | DatabaseUrl, problem: str) -> Check:
    if isinstance(path, DatabaseUrl):
        return Check("database", False, f"{path}: {path.redact(problem)}",
                     "restore it from a backup (pg_dump's), or point PORTER_DATABASE at "
                     "another database")
    return Check("database", False, f"{path}: {problem}",
                 "restore it from a backup, or point PORTER_DATABASE at a new file")


async def _schema(store: Store, path: Path | DatabaseUrl) -> Check:
    try:
        reachable = await store.ping()
        applied = await store.applied_versions()
    except (sqlite3.Error, psycopg.Error, ValueError) as exc:  # ValueError: closed aiosqlite
        return _broken(path, f"{type(exc).__name__}: {exc}")
    if not reachable:
        return _broken(path, "it does not answer queries")
    known = store.known_migrations()
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
