"""Fly Machines API client: the one module that speaks to api.machines.dev.

Takes a MachineSpec, returns Machine values, and turns every failure into FlyError. The facts it
relies on (auth schemes, endpoints, exit events, rate limits) are in PLATFORM_NOTES section A and
are cited by number below.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import quote

import httpx

from porter.errors import ConfigError, FlyError

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.machines.dev"
WAIT_STATES = frozenset({"started", "stopped", "suspended", "destroyed"})

_MACAROON_PREFIXES = ("fm2_", "fm1", "m2.")
_BACKOFF_BASE_S = 0.5
_BACKOFF_CAP_S = 20.0
_MAX_RETRY_AFTER_S = 60.0
_MAX_WAIT_S = 60  # A.5: the API blocks at most 60 s per wait call
# A.6: 1 req/s with bursts of 3 per action, except Get Machine at 5 req/s with bursts of 10.
_RATES: Mapping[str, tuple[float, float]] = {"get": (5.0, 10.0)}
_DEFAULT_RATE = (1.0, 3.0)
_MAX_IDLE_BUCKETS = 1024


def authorization_header(token: str) -> str:
    """The Authorization value Fly expects for `token` (A.1, after fly-go's tokens.normalized).

    Macaroons (`fm2_…`, `fm1…`, `m2.…`, possibly a comma-separated bundle that must stay whole)
    go as `FlyV1 <token>`, anything else as `Bearer <token>`; a scheme the user pasted is dropped
    first, so `Bearer FlyV1 …` can never be produced.
    """
    rest = token.strip()
    pasted_flyv1 = False
    while True:
        scheme, _, tail = rest.partition(" ")
        if scheme.lower() not in ("bearer", "flyv1"):
            break
        pasted_flyv1 = pasted_flyv1 or scheme.lower() == "flyv1"
        rest = tail.strip()
    if not rest:
        raise ConfigError("The Fly API token is empty.")
    if pasted_flyv1 or rest.startswith(_MACAROON_PREFIXES):
        return f"FlyV1 {rest}"
    return f"Bearer {rest}"


@dataclass(frozen=True)
class MachineSpec:
    """What Porter asks Fly for: a one-shot machine that runs the agent image once."""

    image: str
    env: dict[str, str]
    metadata: dict[str, str]
    region: str = "iad"
    cpu_kind: str = "shared"
    cpus: int = 1
    memory_mb: int = 2048
    name: str | None = None
    auto_destroy: bool = True

    def to_api(self) -> dict[str, Any]:
        """The create body (A.3/A.4). Region is always explicit: unset means "near the caller"."""
        body: dict[str, Any] = {
            "region": self.region,
            "config": {
                "image": self.image,
                "env": dict(self.env),
                "guest": {
                    "cpu_kind": self.cpu_kind,
                    "cpus": self.cpus,
                    "memory_mb": self.memory_mb,
                },
                "auto_destroy": self.auto_destroy,
                # A one-shot job must not be restarted; the API default is on-failure (A.4).
                "restart": {"policy": "no"},
                "metadata": dict(self.metadata),
            },
        }
        if self.name:
            body["name"] = self.name
        return body


class ExitInfo(NamedTuple):
    exit_code: int | None
    oom_killed: bool
    requested_stop: bool


def exit_info(events: object) -> ExitInfo:
    """Exit details from a machine's `events` (A.5); exit_code is None until it has exited.

    The newest `exit` event wins (by timestamp; on ties the earlier entry, since the API lists
    newest first). Like fly-go, `request.MonitorEvent.exit_event` is read before
    `request.exit_event`, and a missing `exit_code` is 0 because the API omits zero values.
    """
    newest: Mapping[str, Any] | None = None
    newest_ts = -math.inf
    for event in events if isinstance(events, list) else []:
        if not isinstance(event, Mapping) or event.get("type") != "exit":
            continue
        stamp = event.get("timestamp")
        ts = float(stamp) if isinstance(stamp, int | float) else -math.inf
        if newest is None or ts > newest_ts:
            newest, newest_ts = event, ts
    if newest is None:
        return ExitInfo(None, False, False)
    request = _mapping(newest.get("request"))
    detail = _mapping(_mapping(request.get("MonitorEvent")).get("exit_event"))
    if not detail:
        detail = _mapping(request.get("exit_event"))
    if not detail:
        return ExitInfo(None, False, False)
    code = detail.get("exit_code", 0)
    return ExitInfo(
        code if isinstance(code, int) else None,
        detail.get("oom_killed") is True,
        detail.get("requested_stop") is True,
    )


@dataclass(frozen=True)
class Machine:
    id: str
    name: str
    state: str
    region: str
    instance_id: str | None
    metadata: dict[str, str]
    exit_code: int | None
    oom_killed: bool
    requested_stop: bool

    @classmethod
    def from_api(cls, data: object) -> Machine:
        if not isinstance(data, Mapping) or not isinstance(data.get("id"), str):
            raise FlyError("Fly returned something that is not a machine.")
        config = _mapping(data.get("config"))
        metadata = {str(k): str(v) for k, v in _mapping(config.get("metadata")).items()}
        instance_id = data.get("instance_id")
        info = exit_info(data.get("events"))
        return cls(
            id=data["id"],
            name=str(data.get("name") or ""),
            state=str(data.get("state") or "unknown"),
            region=str(data.get("region") or ""),
            instance_id=instance_id if isinstance(instance_id, str) and instance_id else None,
            metadata=metadata,
            exit_code=info.exit_code,
            oom_killed=info.oom_killed,
            requested_stop=info.requested_stop,
        )


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class _RateLimiter:
    """Queue, don't refuse (A.6): each call reserves the next slot of its bucket, then sleeps.

    Reserving before sleeping keeps concurrent callers in arrival order and needs no lock. Buckets
    are keyed by action and identifier (the app for create/list, the machine otherwise), as the
    limits are scoped.
    """

    def __init__(
        self, clock: Callable[[], float], sleep: Callable[[float], Awaitable[None]]
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    async def acquire(self, action: str, scope: str) -> None:
        delay = self._reserve(action, scope)
        if delay > 0:
            await self._sleep(delay)

    def _reserve(self, action: str, scope: str) -> float:
        rate, burst = _RATES.get(action, _DEFAULT_RATE)
        now = self._clock()
        if len(self._buckets) > _MAX_IDLE_BUCKETS:
            self._forget_full_buckets(now)
        bucket = self._buckets.setdefault((action, scope), _Bucket(burst, now))
        bucket.tokens = min(burst, bucket.tokens + max(0.0, now - bucket.stamp) * rate) - 1
        bucket.stamp = now
        return 0.0 if bucket.tokens >= 0 else -bucket.tokens / rate

    def _forget_full_buckets(self, now: float) -> None:
        for key, bucket in list(self._buckets.items()):
            rate, burst = _RATES.get(key[0], _DEFAULT_RATE)
            if bucket.tokens + (now - bucket.stamp) * rate >= burst:
                del self._buckets[key]


@dataclass(frozen=True)
class _Failure:
    """A retryable attempt: 408/429/5xx or a transport error."""

    reason: str
    status: int | None
    retry_after: float | None
    ambiguous: bool  # the server may have acted on the request


# Errors raised before the request left this process: retrying cannot duplicate anything.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class FlyClient:
    """Async client of the Fly Machines API for one app."""

    def __init__(
        self,
        *,
        token: str,
        app: str,
        base_url: str = DEFAULT_BASE_URL,
        http: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        max_attempts: int = 6,
    ) -> None:
        if not app:
            raise ConfigError("The Fly app name is empty.")
        self._headers = {"Authorization": authorization_header(token), "Accept": "application/json"}
        self._token_text = self._headers["Authorization"].split(" ", 1)[1]
        self._base = base_url.rstrip("/")
        self._app = app
        self._machines = f"/v1/apps/{quote(app, safe='')}/machines"
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0))
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._max_attempts = max(1, max_attempts)
        self._limiter = _RateLimiter(clock, sleep)

    async def __aenter__(self) -> FlyClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # -- machines ---------------------------------------------------------------------------

    async def create_machine(self, spec: MachineSpec) -> Machine:
        """Create and launch a machine; a retried create never leaves two of them.

        After an ambiguous failure (5xx, timeout, dropped connection) the machine may exist, so
        before trying again we look it up by its `porter_run_id` metadata (or name) and adopt
        it; if Fly answers that the name is taken, the earlier attempt won and we adopt that.
        """
        body = spec.to_api()
        identifiable = bool(spec.name or spec.metadata.get("porter_run_id"))
        maybe_created = False
        failure: _Failure | None = None
        for attempt in range(self._max_attempts):
            outcome = await self._attempt("create", self._app, "POST", self._machines, json=body)
            if isinstance(outcome, httpx.Response):
                if outcome.status_code < 400:
                    return Machine.from_api(_json(outcome))
                if outcome.status_code in (409, 422) and _name_taken(outcome):
                    found = await self._find_created(spec)
                    if found is not None:
                        log.info("fly: adopted machine %s (name already taken)", found.id)
                        return found
                raise self._error(outcome, "create machine")
            failure = outcome
            if failure.ambiguous and not identifiable:
                raise FlyError(
                    f"create machine: outcome unknown ({failure.reason}); not retried because "
                    "the spec has neither a name nor porter_run_id metadata",
                    status=failure.status,
                    retryable=True,
                )
            maybe_created = maybe_created or failure.ambiguous
            if attempt + 1 == self._max_attempts:
                break
            await self._backoff(attempt, failure, "create machine")
            if failure.ambiguous and (found := await self._find_created(spec)) is not None:
                log.info("fly: adopted machine %s after %s", found.id, failure.reason)
                return found
        if maybe_created and (found := await self._find_created(spec)) is not None:
            return found
        raise _gave_up("create machine", self._max_attempts, failure)

    async def get_machine(self, machine_id: str) -> Machine | None:
        """The machine, or None once it is destroyed (or never existed)."""
        resp = await self._call("get", machine_id, "GET", self._path(machine_id), "get machine")
        if resp.status_code == 404:
            return None
        if resp.status_code >= 400:
            raise self._error(resp, "get machine")
        return Machine.from_api(_json(resp))

    async def list_machines(
        self, metadata: Mapping[str, str] | None = None, *, include_deleted: bool = False
    ) -> list[Machine]:
        params = {f"metadata.{key}": value for key, value in (metadata or {}).items()}
        if include_deleted:
            params["include_deleted"] = "true"
        resp = await self._call(
            "list", self._app, "GET", self._machines, "list machines", params=params
        )
        if resp.status_code >= 400:
            raise self._error(resp, "list machines")
        data = _json(resp)
        if not isinstance(data, list):
            raise FlyError("list machines: Fly returned something that is not a list.")
        return [Machine.from_api(item) for item in data]

    async def wait(
        self, machine_id: str, *, state: str, instance_id: str | None = None, timeout_s: int = 60
    ) -> bool:
        """One wait call (A.5): True once `state` is reached, False when Fly's wait times out (408).

        A machine that is gone (404) has necessarily stopped, which matters with auto_destroy.
        """
        if state not in WAIT_STATES:
            raise ValueError(f"cannot wait for state {state!r}")
        timeout_s = max(1, min(_MAX_WAIT_S, int(timeout_s)))
        params = {"state": state, "timeout": str(timeout_s)}
        if instance_id:
            params["instance_id"] = instance_id
        resp = await self._call(
            "wait",
            machine_id,
            "GET",
            f"{self._path(machine_id)}/wait",
            "wait for machine",
            params=params,
            final=frozenset({408}),
            # The server holds the request for up to timeout_s; leave room for the answer.
            http_timeout=httpx.Timeout(timeout_s + 15.0, connect=10.0),
        )
        if resp.status_code == 408:
            return False
        if resp.status_code == 404 and state in ("stopped", "destroyed"):
            return True
        if resp.status_code >= 400:
            raise self._error(resp, "wait for machine")
        return True

    async def wait_for(
        self, machine_id: str, state: str, instance_id: str | None, deadline: float
    ) -> bool:
        """Repeat waits until `state` is reached (True) or `deadline` (client clock) passes."""
        while (remaining := deadline - self._clock()) > 0:
            timeout_s = max(1, min(_MAX_WAIT_S, math.ceil(remaining)))
            if await self.wait(
                machine_id, state=state, instance_id=instance_id, timeout_s=timeout_s
            ):
                return True
        return False

    async def stop(
        self,
        machine_id: str,
        *,
        signal: str = "SIGTERM",
        timeout: str = "10s",  # noqa: ASYNC109 - Fly's grace period before the kill, sent as is
    ) -> None:
        """Ask the machine to stop: `signal` now, a kill after `timeout`. Gone counts as stopped."""
        resp = await self._call(
            "stop",
            machine_id,
            "POST",
            f"{self._path(machine_id)}/stop",
            "stop machine",
            json={"signal": signal, "timeout": timeout},
        )
        if resp.status_code >= 400 and resp.status_code != 404:
            raise self._error(resp, "stop machine")

    async def destroy(self, machine_id: str, *, force: bool = True) -> None:
        """Destroy the machine (killing it when `force`); one already destroyed counts as done."""
        resp = await self._call(
            "destroy",
            machine_id,
            "DELETE",
            self._path(machine_id),
            "destroy machine",
            params={"force": "true" if force else "false"},
        )
        if resp.status_code >= 400 and resp.status_code != 404:
            raise self._error(resp, "destroy machine")

    # -- plumbing -------------------------------------------------------------------------------

    def _path(self, machine_id: str) -> str:
        return f"{self._machines}/{quote(machine_id, safe='')}"

    async def _find_created(self, spec: MachineSpec) -> Machine | None:
        """The machine an earlier create attempt of `spec` made, if any."""
        run_id = spec.metadata.get("porter_run_id")
        if run_id:
            # Deleted ones too: a fast job may already have exited and been auto-destroyed.
            found = await self.list_machines({"porter_run_id": run_id}, include_deleted=True)
        else:
            found = await self.list_machines()
        mine = [
            m
            for m in found
            if (not spec.name or m.name == spec.name)
            and (not run_id or m.metadata.get("porter_run_id") == run_id)
        ]
        mine.sort(key=lambda m: m.state == "destroyed")
        return mine[0] if mine else None

    async def _call(
        self,
        action: str,
        scope: str,
        method: str,
        path: str,
        what: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        final: frozenset[int] = frozenset(),
        http_timeout: httpx.Timeout | None = None,
    ) -> httpx.Response:
        """Send with retries; returns the first response that is not worth retrying."""
        failure: _Failure | None = None
        for attempt in range(self._max_attempts):
            outcome = await self._attempt(
                action,
                scope,
                method,
                path,
                params=params,
                json=json,
                final=final,
                http_timeout=http_timeout,
            )
            if isinstance(outcome, httpx.Response):
                return outcome
            failure = outcome
            if attempt + 1 < self._max_attempts:
                await self._backoff(attempt, failure, what)
        raise _gave_up(what, self._max_attempts, failure)

    async def _attempt(
        self,
        action: str,
        scope: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        final: frozenset[int] = frozenset(),
        http_timeout: httpx.Timeout | None = None,
    ) -> httpx.Response | _Failure:
        await self._limiter.acquire(action, scope)
        try:
            resp = await self._http.request(
                method,
                self._base + path,
                params=params,
                json=json,
                headers=self._headers,
                timeout=http_timeout if http_timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.TransportError as exc:
            return _Failure(type(exc).__name__, None, None, not isinstance(exc, _NOT_SENT))
        code = resp.status_code
        if code in final or not (code in (408, 429) or code >= 500):
            return resp
        return _Failure(
            f"HTTP {code}{self._detail(resp)}", code, _retry_after(resp), ambiguous=code != 429
        )

    async def _backoff(self, attempt: int, failure: _Failure, what: str) -> None:
        """Capped exponential backoff with full jitter, or the server's Retry-After when given."""
        if failure.retry_after is not None:
            delay = min(failure.retry_after, _MAX_RETRY_AFTER_S)
        else:
            delay = self._rng.uniform(0, min(_BACKOFF_CAP_S, _BACKOFF_BASE_S * 2**attempt))
        log.warning("fly: %s failed (%s); retrying in %.2fs", what, failure.reason, delay)
        await self._sleep(delay)

    def _error(self, resp: httpx.Response, what: str) -> FlyError:
        return FlyError(
            f"{what}: HTTP {resp.status_code}{self._detail(resp)}", status=resp.status_code
        )

    def _detail(self, resp: httpx.Response) -> str:
        """The API's own error text (A.3: `error`/`message`, `status`); never the request body."""
        try:
            data = resp.json()
        except ValueError:
            return ""
        body = _mapping(data)
        text = body.get("error") or body.get("message")
        parts = [str(text)] if text else []
        if isinstance(body.get("status"), str):
            parts.append(f"({body['status']})")
        detail = " ".join(parts)[:300].replace(self._token_text, "[redacted]")
        return f": {detail}" if detail else ""


def _gave_up(what: str, attempts: int, failure: _Failure | None) -> FlyError:
    reason = failure.reason if failure else "no attempt made"
    return FlyError(
        f"{what}: gave up after {attempts} attempts ({reason})",
        status=failure.status if failure else None,
        retryable=True,
    )


def _json(resp: httpx.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        raise FlyError(
            f"Fly answered HTTP {resp.status_code} with a body that is not JSON."
        ) from None


def _name_taken(resp: httpx.Response) -> bool:
    try:
        body = _mapping(resp.json())
    except ValueError:
        return False
    text = f"{body.get('status', '')} {body.get('error', '')} {body.get('message', '')}".lower()
    return "name_taken" in text or "already exists" in text or "already taken" in text


def _retry_after(resp: httpx.Response) -> float | None:
    """Retry-After in seconds; HTTP-date values are ignored (Fly does not document either form)."""
    value = resp.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
