"""Forwarding one authenticated call to its provider and streaming the answer back.

One httpx connection pool (`httpx.AsyncHTTPTransport`) serves every call of the process:
connections to each provider are kept alive, and with HTTP/2 (which the providers' APIs offer
over TLS) all concurrent calls share one connection per provider. The gateway talks to the
pool directly rather than through an `httpx.AsyncClient`: what the client adds (a cookie jar,
redirects, auth flows, URL merging) is all behaviour the gateway must not have (a provider's
cookie from one run's call must never ride along on another's, a redirect must never lead
elsewhere), and skipping it saves about 0.2 ms a call. An egress proxy in the environment
(HTTPS_PROXY, NO_PROXY) is honoured per provider, as the client would.

The request body is read whole (bounded), so it can be metered and sent with its exact length;
it goes out byte for byte. The answer is never buffered whole (porter/gateway/relay.py).
Upstream is asked for `accept-encoding: identity`: compressing a server-sent-event stream can
hold events back, and the meter reads plain bytes.
"""

from __future__ import annotations

import importlib.util
import time
import urllib.request
from urllib.parse import urlsplit

import httpx
from starlette.requests import Request
from starlette.responses import Response

from porter.gateway.metering import Metering
from porter.gateway.providers import PROVIDERS, Provider, request_headers
from porter.gateway.relay import Relay, finish
from porter.models import AgentRun, Task
from porter.settings import Settings
from porter.store import Store
from porter.web.bodies import read_bounded

# Codex resends the whole conversation each turn; 32 MiB is far above any context window.
MAX_BODY_BYTES = 32 * 1024 * 1024
BODY_SECONDS = 120  # a large body from a machine on a slow link, not a stalled one
# Models think for minutes before (and between) the chunks of an answer.
TIMEOUT = httpx.Timeout(connect=10, read=600, write=60, pool=10).as_dict()
# No cap on connections: each is one live run's call, bounded by the live runs themselves; a
# cap would queue a run's call behind other runs' long streams. Few idle ones are kept: over
# HTTP/2 one connection carries every concurrent call anyway, and over HTTP/1.1 httpcore's pool
# checks every connection it holds (a poll(2) each) on every request and every release: 32 idle
# connections after a burst added about 1 ms to each call (bench/gateway.py).
LIMITS = httpx.Limits(max_connections=None, max_keepalive_connections=8, keepalive_expiry=15)
HTTP2 = importlib.util.find_spec("h2") is not None
IDENTITY = (b"accept-encoding", b"identity")


class UpstreamFailed(Exception):
    """The provider could not be reached, or did not answer in time (status: 502 or 504)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def pools(settings: Settings) -> dict[str, httpx.AsyncHTTPTransport]:
    """Provider name → the pool its calls go through: one per egress route (direct, or the
    environment's proxy for that upstream), so normally one for all."""
    proxies = urllib.request.getproxies()
    by_route: dict[str | None, httpx.AsyncHTTPTransport] = {}
    chosen = {}
    for provider in PROVIDERS.values():
        upstream = urlsplit(provider.upstream(settings))
        proxy = None if urllib.request.proxy_bypass(upstream.hostname or "") \
            else proxies.get(upstream.scheme)
        if proxy not in by_route:
            by_route[proxy] = httpx.AsyncHTTPTransport(http2=HTTP2, limits=LIMITS, proxy=proxy)
        chosen[provider.name] = by_route[proxy]
    return chosen


class Gateway:
    """The connection pool and the accounting, for the app's lifetime."""

    def __init__(self, settings: Settings, *, store: Store,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self.task_of: dict[str, int] = {}  # run id → task id, for porter/gateway/auth.py
        self.metering = Metering(store=store, settings=settings, clock=store.clock)
        self._pools: dict[str, httpx.AsyncBaseTransport] = (
            dict.fromkeys(PROVIDERS, transport) if transport is not None else
            dict(pools(settings)))

    async def aclose(self) -> None:
        for pool in set(self._pools.values()):
            await pool.aclose()

    async def forward(self, request: Request, provider: Provider, path: str, query: str, *,
                      run: AgentRun, task: Task, key: str) -> Response:
        body = b""
        if request.method == "POST":
            body = await read_bounded(request, MAX_BODY_BYTES, within=BODY_SECONDS)
        meter = await self.metering.admit(run, task, provider.name)  # BudgetExceeded: 402
        started = time.perf_counter()
        meter.observe_request(body)
        headers = request_headers(request.headers.raw)
        name, value = provider.key_out(key)
        headers += [IDENTITY, (name.encode(), value.encode())]
        url = f"{provider.upstream(self.settings)}/{path}" + (f"?{query}" if query else "")
        outgoing = httpx.Request(request.method, url, headers=headers, content=body,
                                 extensions={"timeout": TIMEOUT})
        try:
            upstream = await self._pools[provider.name].handle_async_request(outgoing)
        except httpx.TimeoutException:
            await finish(meter, 504, started)
            raise UpstreamFailed(504, f"{provider.name} did not answer in time") from None
        except httpx.TransportError as exc:
            await finish(meter, 502, started)
            raise UpstreamFailed(
                502, f"could not reach {provider.name}: {type(exc).__name__}") from None
        upstream.request = outgoing
        return Relay(upstream, meter, started, secrets=[key])
