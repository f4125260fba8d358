"""A fake Fly Machines API, a real protocol peer: HTTP on loopback, one subprocess per machine.

It checks the Authorization header the way Fly does (docs/platform-notes.md §A.1), validates
create bodies (A.3/A.4), keeps machines through created → started → stopped → destroyed with exit
events in the documented shape (A.5), and can inject failures, including ones that happen after
the machine was really created (the case that tempts a client into creating it twice).

    fake = FakeFly(token="fm2_x", app="porter-runs", command=[sys.executable, "-c", "..."])
    async with fake.serve():
        client = FlyClient(token="fm2_x", app="porter-runs", base_url=fake.url)

Machines live in the app whose path created them. More tokens, organizations and apps, and the
apps resource (/v1/apps): see fly_apps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.fly_apps import FlyAccounts

MACAROON_PREFIXES = ("fm2_", "fm1", "m2.")
RESTART_POLICIES = frozenset({"no", "always", "on-failure"})
DEFAULT_COMMAND = [sys.executable, "-c", "import time; time.sleep(3600)"]
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}

Handler = Callable[[Request, Any], Any]


@dataclass
class RecordedRequest:
    """One request as the fake saw it; the Authorization value is reduced to its scheme."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    headers: dict[str, str]
    auth_scheme: str | None
    status: int = 0
    at: float = field(default_factory=time.time)  # epoch when it arrived (bench/latency.py)


@dataclass
class MachineRecord:
    id: str
    name: str
    region: str
    config: dict[str, Any]
    instance_id: str
    app: str = ""
    state: str = "created"
    created_at: str = ""
    events: list[dict[str, Any]] = field(default_factory=list)  # newest first, as Fly lists them
    process: asyncio.subprocess.Process | None = None
    output: bytearray = field(default_factory=bytearray)
    requested_stop: bool = False
    exit_code: int | None = None
    oom_killed: bool = False
    watcher: asyncio.Task[None] | None = None

    @property
    def env(self) -> dict[str, str]:
        return dict(self.config.get("env") or {})

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self.config.get("metadata") or {})

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "region": self.region,
            "instance_id": self.instance_id,
            "private_ip": "fdaa:0:1:a7b:1::2",
            "config": json.loads(json.dumps(self.config)),
            "created_at": self.created_at,
            "updated_at": _iso_now(),
            "events": [dict(e) for e in self.events],
        }


@dataclass
class _Rule:
    method: str
    path: re.Pattern[str]
    times: int
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    after_effect: bool = False
    hang: bool = False
    delay_s: float = 0.0


class _Server(uvicorn.Server):
    # The fake runs inside the test's event loop; it must not take over SIGINT/SIGTERM.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class FakeFly(FlyAccounts):
    def __init__(
        self,
        *,
        token: str,
        app: str,
        command: Callable[[MachineRecord], list[str]] | list[str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.app = app
        self.requests: list[RecordedRequest] = []
        self._command = command
        self._cwd = cwd
        self._machines: dict[str, MachineRecord] = {}
        self._init_accounts(token, app)  # this token, org "personal", this app (fly_apps)
        self._rules: list[_Rule] = []
        self._changed = asyncio.Event()
        self._closing = False
        self._last_ms = 0
        self._url: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- serving ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("FakeFly is not serving; use `async with fake.serve():`")
        return self._url

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[FakeFly]:
        # Say IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that do, and without it
        # Nagle + delayed ACK cost ~40 ms per request on loopback.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.asgi(), log_level="warning", access_log=False, lifespan="off", http="h11"
        )
        server = _Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not server.started:  # startup readiness, not test synchronisation
            if task.done() or loop.time() > deadline:
                sock.close()
                await task
                raise RuntimeError("fake Fly server did not start")
            await asyncio.sleep(0.005)
        self._url = f"http://127.0.0.1:{port}"
        try:
            yield self
        finally:
            await self._shutdown()
            server.should_exit = True
            await task
            sock.close()
            self._url = None

    async def _shutdown(self) -> None:
        self._closing = True
        for rec in self._machines.values():
            if rec.running:
                _kill_group(rec, signal.SIGKILL)
        watchers = [rec.watcher for rec in self._machines.values() if rec.watcher is not None]
        if watchers:
            await asyncio.wait(watchers, timeout=10)
        self._bump()

    def asgi(self) -> Starlette:
        base = "/v1/apps/{app}/machines"
        return Starlette(
            routes=[
                self._route("/v1/apps", {"GET": self._list_apps, "POST": self._create_app}),
                self._route("/v1/apps/{app}", {"GET": self._get_app}),
                self._route(base, {"GET": self._list, "POST": self._create}),
                self._route(base + "/{id}", {"GET": self._get, "DELETE": self._destroy}),
                self._route(base + "/{id}/stop", {"POST": self._stop}),
            ]
        )

    # -- test helpers -----------------------------------------------------------------------

    @property
    def machines(self) -> list[MachineRecord]:
        """Every machine ever created, destroyed ones included, oldest first."""
        return list(self._machines.values())

    def machine(self, machine_id: str) -> MachineRecord:
        return self._machines[machine_id]

    def live_processes(self) -> dict[str, int]:
        """machine id → pid of each machine process still running."""
        return {
            rec.id: rec.process.pid
            for rec in self._machines.values()
            if rec.process is not None and rec.running
        }

    def kill_process(
        self, machine_id: str, sig: int = signal.SIGKILL, *, oom: bool = False
    ) -> None:
        """Simulate a crash (or, with oom=True, the kernel's OOM killer) of a machine's process."""
        rec = self._machines[machine_id]
        rec.oom_killed = oom
        if rec.running and rec.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(rec.process.pid, sig)

    async def wait_for_state(self, machine_id: str, state: str, within: float = 10.0) -> None:
        if not await self._until(lambda: self._machines[machine_id].state == state, within):
            raise TimeoutError(f"machine {machine_id} never reached {state}")

    async def wait_for_output(self, machine_id: str, needle: bytes, within: float = 10.0) -> None:
        if not await self._until(lambda: needle in self._machines[machine_id].output, within):
            raise TimeoutError(f"machine {machine_id} never printed {needle!r}")

    def requests_to(self, method: str, path_regex: str) -> list[RecordedRequest]:
        pattern = re.compile(path_regex)
        return [r for r in self.requests if r.method == method and pattern.search(r.path)]

    # -- fault injection --------------------------------------------------------------------

    def fail(
        self,
        method: str,
        path_regex: str,
        status: int,
        times: int = 1,
        headers: dict[str, str] | None = None,
        body: Any = None,
    ) -> None:
        """Answer the next `times` matching requests with `status` without acting on them."""
        self._rules.append(
            _Rule(method, re.compile(path_regex), times, status, headers or {}, body)
        )

    def fail_after_effect(
        self, method: str, path_regex: str, status: int = 500, times: int = 1, *, hang: bool = False
    ) -> None:
        """Act on the request, then answer `status` anyway, or with hang=True never answer (the
        client sees a read timeout), as when a connection drops after the server did the work."""
        self._rules.append(
            _Rule(method, re.compile(path_regex), times, status, after_effect=True, hang=hang)
        )

    def delay(self, method: str, path_regex: str, seconds: float, times: int = 1) -> None:
        self._rules.append(_Rule(method, re.compile(path_regex), times, delay_s=seconds))

    def _take_rule(self, method: str, path: str) -> _Rule | None:
        for rule in self._rules:
            if rule.times > 0 and rule.method == method and rule.path.search(path):
                rule.times -= 1
                return rule
        return None

    # -- request pipeline -------------------------------------------------------------------

    def _route(self, path: str, handlers: dict[str, Handler]) -> Route:
        async def endpoint(request: Request) -> Response:
            return await self._dispatch(request, handlers[request.method])

        return Route(path, endpoint, methods=list(handlers))

    async def _dispatch(self, request: Request, handler: Handler) -> Response:
        raw = await request.body()
        try:
            payload = json.loads(raw) if raw else None
            malformed = False
        except ValueError:
            payload, malformed = None, True
        auth = request.headers.get("authorization")
        rec = RecordedRequest(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            json=payload,
            headers={
                k: v for k, v in request.headers.items() if k not in ("authorization", "cookie")
            },
            auth_scheme=auth.split(" ", 1)[0] if auth else None,
        )
        self.requests.append(rec)
        response = await self._respond(request, handler, auth, payload, malformed)
        rec.status = response.status_code
        return response

    async def _respond(
        self, request: Request, handler: Handler, auth: str | None, payload: Any, malformed: bool
    ) -> Response:
        token = self.token_for(auth)
        if token is None:
            return _error(401, "unauthorized")
        app = request.path_params.get("app")
        if app is not None and self.app_for(token, app) is None:
            return _error(404, "app not found")
        request.state.fly_token = token
        rule = self._take_rule(request.method, request.url.path)
        if rule is not None and rule.delay_s:
            await asyncio.sleep(rule.delay_s)
        if rule is not None and rule.status is not None and not rule.after_effect:
            body = rule.body if rule.body is not None else {"error": "injected failure"}
            return JSONResponse(body, rule.status, headers=rule.headers)
        if malformed:
            return _error(400, "request body is not valid JSON")
        response: Response = await handler(request, payload)
        if rule is not None and rule.after_effect:
            if rule.hang:
                await self._until(lambda: False, 3600)
                return _error(503, "shutting down")
            return _error(rule.status or 500, "injected failure after effect")
        return response

    # -- endpoints ----------------------------------------------------------------------------

    async def _create(self, request: Request, body: Any) -> Response:
        problem = validate_create(body)
        if problem is not None:
            return _error(*problem)
        name = body.get("name") or f"fake-{secrets.token_hex(4)}"
        app = request.path_params["app"]  # machine names are unique within their app
        if any(m.name == name and m.state != "destroyed" for m in self.machines_in(app)):
            return JSONResponse(
                {"error": f'a machine named "{name}" already exists', "status": "name_taken"},
                422,
            )
        rec = MachineRecord(
            id=secrets.token_hex(7),
            name=name,
            region=body["region"],
            config=json.loads(json.dumps(body["config"])),
            instance_id="".join(
                secrets.choice("0123456789ABCDEFGHJKMNPQRSTVWXYZ") for _ in range(26)
            ),
            app=app,
            created_at=_iso_now(),
        )
        self._machines[rec.id] = rec
        self.machine_created(rec.app)
        self._event(rec, "launch", "created", "user")
        snapshot = rec.to_api()  # Fly answers a create with the machine as `created`
        if not body.get("skip_launch"):
            await self._launch(rec)
        return JSONResponse(snapshot)

    async def _list(self, request: Request, _body: Any) -> Response:
        query = request.query_params
        include_deleted = query.get("include_deleted") in ("true", "1")
        wanted = {k[len("metadata.") :]: v for k, v in query.items() if k.startswith("metadata.")}
        found = [
            rec.to_api()
            for rec in self.machines_in(request.path_params["app"])
            if (include_deleted or rec.state != "destroyed")
            and query.get("region", rec.region) == rec.region
            and query.get("state", rec.state) == rec.state
            and all(rec.metadata.get(k) == v for k, v in wanted.items())
        ]
        return JSONResponse(found)

    async def _get(self, request: Request, _body: Any) -> Response:
        rec = self._find(request)
        if rec is None or rec.state == "destroyed":
            return _error(404, "machine not found")
        return JSONResponse(rec.to_api())

    async def _stop(self, request: Request, body: Any) -> Response:
        rec = self._find(request)
        if rec is None or rec.state == "destroyed":
            return _error(404, "machine not found")
        body = body if isinstance(body, dict) else {}
        sig_name = body.get("signal", "SIGINT")  # A.3: Fly's default stop signal
        grace = _duration(body.get("timeout", "5s"))
        if sig_name not in signal.Signals.__members__ or grace is None:
            return _error(400, "invalid signal or timeout")
        if rec.running and rec.process is not None:
            rec.requested_stop = True
            rec.state = "stopping"
            self._bump()
            with contextlib.suppress(ProcessLookupError):
                os.kill(rec.process.pid, signal.Signals[sig_name])
            task = asyncio.create_task(self._escalate(rec, grace))
            self._tasks.add(task)  # keep a reference until it finishes
            task.add_done_callback(self._tasks.discard)
        return JSONResponse({"ok": True})

    async def _destroy(self, request: Request, _body: Any) -> Response:
        rec = self._find(request)
        if rec is None or rec.state == "destroyed":
            return _error(404, "machine not found")
        force = request.query_params.get("force") in ("true", "1")
        if rec.running and not force:
            return _error(412, "unable to destroy machine, not currently stopped")
        if rec.running:
            rec.requested_stop = True
            _kill_group(rec, signal.SIGKILL)
        if rec.watcher is not None:
            await rec.watcher
        if rec.state != "destroyed":
            self._destroyed(rec, "user")
        return JSONResponse({"ok": True})

    # -- machine lifecycle ------------------------------------------------------------------

    async def _launch(self, rec: MachineRecord) -> None:
        if callable(self._command):
            argv = self._command(rec)
        else:
            argv = list(self._command or DEFAULT_COMMAND)
        # Exactly the machine's env (plus PATH to find executables): nothing leaks from the test
        # process, so a test can prove which variables reach the machine.
        env = rec.env
        env.setdefault("PATH", os.environ.get("PATH", os.defpath))
        try:
            rec.process = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                cwd=self._cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own process group, so destroy kills its children too
            )
        except OSError as exc:
            rec.output += f"fake fly: cannot start {argv[0]}: {exc}\n".encode()
            self._exited(rec, 127, None)
            return
        rec.state = "started"
        self._event(rec, "start", "started", "flyd")
        rec.watcher = asyncio.create_task(self._watch(rec))

    async def _watch(self, rec: MachineRecord) -> None:
        assert rec.process is not None and rec.process.stdout is not None
        reader = asyncio.create_task(self._read_output(rec, rec.process.stdout))
        returncode = await rec.process.wait()
        _kill_group(rec, signal.SIGKILL)  # the VM goes away with its init: no stray children
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, 5)
        killed_by = -returncode if returncode < 0 else None
        self._exited(rec, 128 + killed_by if killed_by else returncode, killed_by)

    async def _read_output(self, rec: MachineRecord, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            rec.output += chunk
            self._bump()

    async def _escalate(self, rec: MachineRecord, grace: float) -> None:
        if rec.watcher is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(rec.watcher), grace)
        except TimeoutError:
            _kill_group(rec, signal.SIGKILL)

    def _exited(self, rec: MachineRecord, code: int, killed_by: int | None) -> None:
        rec.exit_code = code
        detail: dict[str, Any] = {
            "exit_code": code,
            "guest_exit_code": code,
            "guest_signal": killed_by or 0,
            "oom_killed": rec.oom_killed,
            "requested_stop": rec.requested_stop,
            "restarting": False,
            "signal": killed_by if killed_by else -1,
            "exited_at": _iso_now(),
        }
        # fly-go marshals these with omitempty: zero values are absent on the wire (A.5).
        detail = {k: v for k, v in detail.items() if v not in (0, False) or k == "signal"}
        rec.state = "stopped"
        self._event(
            rec,
            "exit",
            "stopped",
            "flyd",
            request={
                "exit_event": detail,
                "MonitorEvent": {"exit_event": dict(detail)},
                "restart_count": 0,
            },
        )
        if rec.config.get("auto_destroy"):
            self._destroyed(rec, "flyd")

    def _destroyed(self, rec: MachineRecord, source: str) -> None:
        rec.state = "destroyed"
        self._event(rec, "destroy", "destroyed", source)

    def _event(self, rec: MachineRecord, kind: str, status: str, source: str, **extra: Any) -> None:
        # Strictly increasing timestamps, so "newest" is well defined even within a millisecond.
        self._last_ms = max(int(time.time() * 1000), self._last_ms + 1)
        event = {"type": kind, "status": status, "source": source, "timestamp": self._last_ms}
        rec.events.insert(0, {**event, **extra})
        self._bump()

    # -- helpers ------------------------------------------------------------------------------

    def _find(self, request: Request) -> MachineRecord | None:
        rec = self._machines.get(request.path_params["id"])
        return rec if rec is not None and rec.app == request.path_params["app"] else None

    def _bump(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _until(self, predicate: Callable[[], bool], within: float) -> bool:
        loop = asyncio.get_running_loop()
        end = loop.time() + within
        while not predicate():
            remaining = end - loop.time()
            if remaining <= 0 or (self._closing and not predicate()):
                return predicate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
        return True


def validate_create(body: Any) -> tuple[int, str] | None:
    """(status, error) for a create body Fly would refuse (A.3/A.4), else None."""
    if not isinstance(body, dict):
        return 400, "request body must be a JSON object"
    config = body.get("config")
    if not isinstance(config, dict):
        return 422, "config is required"
    if not isinstance(config.get("image"), str) or not config["image"]:
        return 422, "config.image is required"
    if not isinstance(body.get("region"), str) or not body["region"]:
        # Fly would pick a region near the caller; Porter must always say which (A.3).
        return 422, "region is required by this fake"
    if "name" in body and (not isinstance(body["name"], str) or not body["name"]):
        return 422, "name must be a non-empty string"
    for key in ("env", "metadata"):
        value = config.get(key, {})
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            return 422, f"config.{key} must map strings to strings"
    restart = config.get("restart", {"policy": "on-failure"})
    if not isinstance(restart, dict) or restart.get("policy") not in RESTART_POLICIES:
        return 422, "config.restart.policy must be one of no, always, on-failure"
    if "auto_destroy" in config and not isinstance(config["auto_destroy"], bool):
        return 422, "config.auto_destroy must be a boolean"
    return _validate_guest(config.get("guest"))


def _validate_guest(guest: Any) -> tuple[int, str] | None:
    if guest is None:
        return None
    if not isinstance(guest, dict):
        return 422, "config.guest must be an object"
    kind, cpus, memory = (
        guest.get("cpu_kind", "shared"),
        guest.get("cpus", 1),
        guest.get("memory_mb"),
    )
    if kind not in ("shared", "performance") or not isinstance(cpus, int) or cpus < 1:
        return 422, "invalid guest cpu_kind or cpus"
    # A.4: memory per cpu is 256..2048 MB (shared) or 2048..8192 MB (performance), in 256s.
    low, high = (256, 2048) if kind == "shared" else (2048, 8192)
    if memory is not None and (
        not isinstance(memory, int) or memory % 256 or not low * cpus <= memory <= high * cpus
    ):
        return 422, f"invalid memory size {memory} for {cpus} {kind} cpu(s)"
    return None


def _expected_authorization(token: str) -> str:
    """The one header value Fly accepts for `token` (A.1): macaroons only as `FlyV1 …`."""
    raw = token.strip()
    macaroon = raw.startswith("FlyV1 ")
    if macaroon:
        raw = raw[len("FlyV1 ") :].strip()
    macaroon = macaroon or raw.startswith(MACAROON_PREFIXES)
    return f"{'FlyV1' if macaroon else 'Bearer'} {raw}"


def _kill_group(rec: MachineRecord, sig: int) -> None:
    if rec.process is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(rec.process.pid, sig)


def _duration(value: Any) -> float | None:
    """Seconds in a Go-style duration ("10s", "200ms") or a plain number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    return float(match.group(1)) * _UNITS[match.group(2)] if match else None


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status)


def _iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
