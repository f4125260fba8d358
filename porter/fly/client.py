"""Async client of the Fly Machines API: the one module that speaks HTTP to api.machines.dev.

Each call is one attempt, spaced to the per-action limits first. Retrying belongs to the job
runner (porter/jobs.py), so a launch is never retried by two layers at once: a failure raises
FlyError saying whether trying again may help (`retryable`: 408, 429, 5xx, no answer) and, when
Fly said how long to wait, FlyRetryLater with `retry_after`, which the job runner obeys.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from porter.errors import ConfigError, FlyError
from porter.fly.limits import RateLimiter
from porter.fly.shapes import (
    FlyMachine,
    MachineSpec,
    authorization_header,
    error_detail,
    name_taken,
    retry_after,
)
from porter.redact import PLACEHOLDER

DEFAULT_BASE_URL = "https://api.machines.dev"


class FlyRetryLater(FlyError):
    """Fly asked Porter to wait before trying again."""

    def __init__(self, message: str, *, status: int, retry_after: float) -> None:
        super().__init__(message, status=status, retryable=True)
        self.retry_after = retry_after  # read by the job runner, as GitHubError's is


class MachineNameTaken(FlyError):
    """Another machine already has this name."""


class FlyClient:
    """Async client of the Fly Machines API for one app."""

    def __init__(
        self,
        *,
        token: str,
        app: str,
        base_url: str = DEFAULT_BASE_URL,
        http: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,  # for the client made when no `http`
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not app:
            raise ConfigError("The Fly app name is empty.")
        self._headers = {"Authorization": authorization_header(token), "Accept": "application/json"}
        self._token_text = self._headers["Authorization"].split(" ", 1)[1]
        self._base = base_url.rstrip("/")
        self._app = app
        self._machines = f"/v1/apps/{quote(app, safe='')}/machines"
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0),
                                               transport=transport)
        self._limiter = RateLimiter(clock, sleep)

    async def __aenter__(self) -> FlyClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def create_machine(self, spec: MachineSpec) -> FlyMachine:
        """Create and launch a machine.

        Not idempotent by itself: a failure without an answer may still have created it, so a
        caller that tries again first looks for it (FlyRunner does, by run id).
        """
        resp = await self._send(
            "create", self._app, "POST", self._machines, "create machine", json=spec.to_api()
        )
        return FlyMachine.from_api(_json(resp))

    async def get_machine(self, machine_id: str) -> FlyMachine | None:
        """The machine, or None once it is destroyed (or never existed)."""
        resp = await self._send(
            "get", machine_id, "GET", self._path(machine_id), "get machine", absent_ok=True
        )
        return None if resp.status_code == 404 else FlyMachine.from_api(_json(resp))

    async def list_machines(
        self, metadata: Mapping[str, str] | None = None, *, include_deleted: bool = False
    ) -> list[FlyMachine]:
        params = {f"metadata.{key}": value for key, value in (metadata or {}).items()}
        if include_deleted:
            params["include_deleted"] = "true"
        resp = await self._send(
            "list", self._app, "GET", self._machines, "list machines", params=params
        )
        data = _json(resp)
        if not isinstance(data, list):
            raise FlyError("list machines: Fly returned something that is not a list.")
        return [FlyMachine.from_api(item) for item in data]

    async def get_app(self) -> dict[str, Any] | None:
        """The app as Fly describes it (`name`, `organization`, `status`), or None when Fly knows
        no app of that name, or none the token may see (porter/diagnostics.py asks)."""
        resp = await self._send(
            "get_app", self._app, "GET", f"/v1/apps/{quote(self._app, safe='')}", "get app",
            absent_ok=True,
        )
        if resp.status_code == 404:
            return None
        data = _json(resp)
        if not isinstance(data, dict):
            raise FlyError("get app: Fly returned something that is not an object.")
        return data

    async def create_app(self, org_slug: str) -> None:
        """Create this client's app in the organization `org_slug` (A.2). App names are global
        on Fly: a name someone else holds is refused (422), as is an organization the token is
        not in (404)."""
        await self._send("create_app", org_slug, "POST", "/v1/apps", "create app",
                         json={"app_name": self._app, "org_slug": org_slug})

    async def stop(
        self,
        machine_id: str,
        *,
        signal: str = "SIGTERM",
        timeout: str = "10s",  # noqa: ASYNC109 - Fly's grace period before the kill, sent as is
    ) -> None:
        """Ask the machine to stop: `signal` now, a kill after `timeout`. Gone counts as stopped."""
        await self._send(
            "stop",
            machine_id,
            "POST",
            f"{self._path(machine_id)}/stop",
            "stop machine",
            json={"signal": signal, "timeout": timeout},
            absent_ok=True,
        )

    async def destroy(self, machine_id: str, *, force: bool = True) -> None:
        """Destroy the machine (killing it when `force`); one already destroyed counts as done."""
        await self._send(
            "destroy",
            machine_id,
            "DELETE",
            self._path(machine_id),
            "destroy machine",
            params={"force": "true" if force else "false"},
            absent_ok=True,
        )

    def _path(self, machine_id: str) -> str:
        return f"{self._machines}/{quote(machine_id, safe='')}"

    async def _send(
        self,
        action: str,
        scope: str,
        method: str,
        path: str,
        what: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        absent_ok: bool = False,
    ) -> httpx.Response:
        """One attempt once its slot comes; a 404 is an answer, not an error, when `absent_ok`."""
        await self._limiter.acquire(action, scope)
        try:
            resp = await self._http.request(
                method, self._base + path, params=params, json=json, headers=self._headers
            )
        except httpx.TransportError as exc:
            # Fly may or may not have acted: another try may help, and create guards against
            # doubling by looking first (see create_machine).
            raise FlyError(f"{what}: no answer ({type(exc).__name__})", retryable=True) from exc
        if resp.status_code < 400 or (absent_ok and resp.status_code == 404):
            return resp
        raise self._error(resp, what)

    def _error(self, resp: httpx.Response, what: str) -> FlyError:
        code = resp.status_code
        try:
            body = resp.json()
        except ValueError:
            body = None
        # The API's own words, never the request body, and never the token if Fly echoes it.
        detail = error_detail(body).replace(self._token_text, PLACEHOLDER)
        message = f"{what}: HTTP {code}" + (f": {detail}" if detail else "")
        if code in (409, 422) and name_taken(body):
            return MachineNameTaken(message, status=code)
        if code not in (408, 429) and code < 500:
            return FlyError(message, status=code)  # the request itself is refused: not retried
        after = retry_after(resp.headers.get("retry-after"))
        if after is not None:
            return FlyRetryLater(message, status=code, retry_after=after)
        return FlyError(message, status=code, retryable=True)


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise FlyError(
            f"Fly answered HTTP {resp.status_code} with a body that is not JSON."
        ) from None
