"""GitHub and Fly calls counted by route template and status, with their latency.

An httpx transport wraps whichever transport a client was given (a real one, or a test's fake),
so every call is seen whatever code made it. A request's path is named by the template it
matches in a fixed table of the routes Porter calls (`/repos/{owner}/{repo}/pulls`), never by
the path itself: repository names, issue numbers and machine ids would make a series each.
An unknown route counts as `other`, a transport failure (no answer) as status `error`.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram

GITHUB, FLY = "github", "fly"
OTHER = "other"
METHODS = frozenset({"GET", "POST", "PATCH", "PUT", "DELETE"})
# Time to the answer's headers, in seconds: GitHub answers in tens of milliseconds to seconds.
BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# (method, template): every route porter/github.py, porter/github_user.py, the diagnostics and
# porter/fly/client.py call. `{name}` is one path segment; a trailing `{ref}` may hold slashes.
GITHUB_ROUTES = (
    ("GET", "/app"),
    ("GET", "/app/installations"),
    ("GET", "/app/installations/{installation_id}"),
    ("POST", "/app/installations/{installation_id}/access_tokens"),
    ("GET", "/app/hook/deliveries"),
    ("GET", "/app/hook/deliveries/{delivery_id}"),
    ("POST", "/app/hook/deliveries/{delivery_id}/attempts"),
    ("POST", "/app-manifests/{code}/conversions"),
    ("GET", "/installation/repositories"),
    ("GET", "/repos/{owner}/{repo}"),
    ("GET", "/repos/{owner}/{repo}/installation"),
    ("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission"),
    ("GET", "/repos/{owner}/{repo}/issues/{number}"),
    ("GET", "/repos/{owner}/{repo}/issues/{number}/comments"),
    ("POST", "/repos/{owner}/{repo}/issues/{number}/comments"),
    ("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
    ("POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions"),
    ("POST", "/repos/{owner}/{repo}/pulls/comments/{comment_id}/reactions"),
    ("GET", "/repos/{owner}/{repo}/pulls"),
    ("POST", "/repos/{owner}/{repo}/pulls"),
    ("GET", "/repos/{owner}/{repo}/pulls/{number}"),
    ("GET", "/repos/{owner}/{repo}/contents/{path}"),  # .porter.yml, at the root
    ("POST", "/repos/{owner}/{repo}/check-runs"),
    ("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}"),
    ("GET", "/repos/{owner}/{repo}/commits/{sha}/check-runs"),
    ("GET", "/repos/{owner}/{repo}/git/ref/{ref}"),
    ("POST", "/repos/{owner}/{repo}/git/refs"),
    ("PATCH", "/repos/{owner}/{repo}/git/refs/{ref}"),
    ("GET", "/repos/{owner}/{repo}/git/commits/{sha}"),
    ("POST", "/repos/{owner}/{repo}/git/commits"),
    ("POST", "/repos/{owner}/{repo}/git/blobs"),
    ("POST", "/repos/{owner}/{repo}/git/trees"),
    ("GET", "/users/{username}"),
    ("GET", "/user"),
    ("GET", "/user/installations"),
    ("GET", "/user/installations/{installation_id}/repositories"),
    ("POST", "/login/oauth/access_token"),  # on the web host, not the API's
)
FLY_ROUTES = (
    ("POST", "/v1/apps"),
    ("GET", "/v1/apps/{app}"),
    ("GET", "/v1/apps/{app}/machines"),
    ("POST", "/v1/apps/{app}/machines"),
    ("GET", "/v1/apps/{app}/machines/{machine_id}"),
    ("DELETE", "/v1/apps/{app}/machines/{machine_id}"),
    ("POST", "/v1/apps/{app}/machines/{machine_id}/stop"),
)
# GitHub Enterprise Server (and the fake GitHub) serve the REST API under this prefix.
_PREFIXES = ("/api/v3",)

Table = tuple[tuple[str, re.Pattern[str], str], ...]


def compile_routes(routes: tuple[tuple[str, str], ...]) -> Table:
    table = []
    for method, template in routes:
        pattern = re.sub(r"\{ref\}$", "[^?]+", template)
        pattern = re.sub(r"\{[a-z_]+\}", "[^/]+", pattern)
        table.append((method, re.compile(pattern + "/?"), template))
    return tuple(table)


TABLES = {GITHUB: compile_routes(GITHUB_ROUTES), FLY: compile_routes(FLY_ROUTES)}


def route_of(service: str, method: str, path: str) -> str:
    """The template `method path` matches in the service's table, else `other`."""
    for prefix in _PREFIXES:
        if path.startswith(prefix + "/"):
            path = path[len(prefix):]
            break
    for known, pattern, template in TABLES.get(service, ()):
        if known == method and pattern.fullmatch(path):
            return template
    return OTHER


def status_label(status: int) -> str:
    """The code as is: HTTP codes are a bounded set (anything else is `other`)."""
    return str(status) if 100 <= status <= 599 else OTHER


class ApiMetrics:
    """The API call series, in the registry given."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = Counter(
            "porter_api_calls", "GitHub and Fly API calls, by route template and status "
            "(`error`: no answer).", ["service", "method", "route", "status"],
            registry=registry)
        self.seconds = Histogram(
            "porter_api_call_seconds", "Seconds from a GitHub or Fly API call to its answer's "
            "headers (or its failure).", ["service", "method", "route"], buckets=BUCKETS,
            registry=registry)

    def record(self, service: str, method: str, path: str, status: str, seconds: float) -> None:
        method = method if method in METHODS else OTHER
        route = route_of(service, method, path)
        self.calls.labels(service, method, route, status).inc()
        self.seconds.labels(service, method, route).observe(seconds)

    def transport(self, service: str, url: str, inner: httpx.AsyncBaseTransport | None = None,
                  *, shared: bool = False) -> MeteredTransport:
        """`inner` (a test's fake) counted; by default httpx's own transport to `url`.

        `shared`: handed to clients that each close it when done (githubkit opens and closes a
        client per request), so only `close()` closes it: a client closing it would cut the
        pooled connections of every request still in flight.
        """
        return MeteredTransport(inner or default_transport(url), service=service, metrics=self,
                                shared=shared)


def default_transport(url: str) -> httpx.AsyncHTTPTransport:
    """httpx's transport, through the proxy the environment names for `url`: a client given a
    transport no longer reads HTTP(S)_PROXY and NO_PROXY itself, so they are read here."""
    target = httpx.URL(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(target.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(target.host):
        return httpx.AsyncHTTPTransport(proxy=proxy)
    return httpx.AsyncHTTPTransport()


class MeteredTransport(httpx.AsyncBaseTransport):
    """Times and counts each request, then hands it to the transport it wraps."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, service: str, metrics: ApiMetrics,
                 shared: bool = False,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self._inner = inner
        self._shared = shared
        self._service = service
        self._metrics = metrics
        self._clock = clock

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = self._clock()
        try:
            response = await self._inner.handle_async_request(request)
        except Exception:
            self._metrics.record(self._service, request.method, request.url.path, "error",
                                 self._clock() - started)
            raise
        self._metrics.record(self._service, request.method, request.url.path,
                             status_label(response.status_code), self._clock() - started)
        return response

    async def aclose(self) -> None:
        if not self._shared:
            await self._inner.aclose()

    async def close(self) -> None:
        """Close the wrapped transport, shared or not: its owner is done with it."""
        await self._inner.aclose()
