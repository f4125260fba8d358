"""Request paths named by the route templates they match: no repository, number or machine id
ever becomes a label value."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import CollectorRegistry

from porter.api_metrics import FLY, GITHUB, OTHER, ApiMetrics, route_of, status_label


@pytest.mark.parametrize(("service", "method", "path", "route"), [
    (GITHUB, "POST", "/repos/octo/hello/issues/7/comments",
     "/repos/{owner}/{repo}/issues/{number}/comments"),
    # GitHub Enterprise Server serves the same routes under /api/v3.
    (GITHUB, "PATCH", "/api/v3/repos/octo/hello/issues/comments/99",
     "/repos/{owner}/{repo}/issues/comments/{comment_id}"),
    (GITHUB, "GET", "/repos/octo/hello/git/ref/heads/feature/x",
     "/repos/{owner}/{repo}/git/ref/{ref}"),
    (GITHUB, "PATCH", "/repos/octo/hello/git/refs/heads/porter/7-fix",
     "/repos/{owner}/{repo}/git/refs/{ref}"),
    (GITHUB, "POST", "/app/installations/42/access_tokens",
     "/app/installations/{installation_id}/access_tokens"),
    (GITHUB, "GET", "/repos/octo/hello", "/repos/{owner}/{repo}"),
    (GITHUB, "POST", "/login/oauth/access_token", "/login/oauth/access_token"),
    (FLY, "POST", "/v1/apps/porter-agents/machines/3d8d9/stop",
     "/v1/apps/{app}/machines/{machine_id}/stop"),
    (FLY, "DELETE", "/v1/apps/porter-agents/machines/3d8d9",
     "/v1/apps/{app}/machines/{machine_id}"),
    # Unknown routes, a known path with a method Porter never uses, another service's route.
    (GITHUB, "GET", "/repos/octo/hello/unknown/thing", OTHER),
    (GITHUB, "DELETE", "/repos/octo/hello/issues/7/comments", OTHER),
    (GITHUB, "GET", "/repos/octo", OTHER),
    (FLY, "GET", "/repos/octo/hello", OTHER),
])
def test_a_path_is_named_by_its_template(service: str, method: str, path: str,
                                         route: str) -> None:
    assert route_of(service, method, path) == route


def test_statuses_are_http_codes_or_other() -> None:
    assert [status_label(s) for s in (200, 201, 404, 502, 0, 1000)] == [
        "200", "201", "404", "502", OTHER, OTHER]


class Pool(httpx.AsyncBaseTransport):
    """A transport that says whether it was closed, and refuses requests once it is."""

    def __init__(self) -> None:
        self.closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.closed:
            raise httpx.ReadError("the pool was closed under this request")
        return httpx.Response(200, json={})

    async def aclose(self) -> None:
        self.closed = True


async def test_a_client_closing_a_shared_transport_leaves_it_open_for_the_others() -> None:
    # githubkit opens and closes a client per request: one request ending must not cut the
    # pooled connections of the requests still in flight.
    pool = Pool()
    transport = ApiMetrics(CollectorRegistry()).transport(GITHUB, "https://api.github.com",
                                                          pool, shared=True)
    async with httpx.AsyncClient(transport=transport) as first:
        await first.get("https://api.github.com/repos/octo/hello")
    async with httpx.AsyncClient(transport=transport) as second:
        assert (await second.get("https://api.github.com/repos/octo/hello")).status_code == 200
    assert not pool.closed
    await transport.close()
    assert pool.closed


async def test_an_owned_transport_closes_with_its_client() -> None:
    pool = Pool()
    transport = ApiMetrics(CollectorRegistry()).transport(FLY, "https://api.machines.dev", pool)
    async with httpx.AsyncClient(transport=transport) as client:
        await client.get("https://api.machines.dev/v1/apps/a/machines")
    assert pool.closed
