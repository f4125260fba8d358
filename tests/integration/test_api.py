"""The operators' JSON API and the probes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

from porter.app import create_app
from porter.settings import Settings
from tests.conftest import comment_payload, signed

ADMIN = {"Authorization": "Bearer test-admin-token"}


@pytest.fixture
def client(env: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(Settings.from_mapping(env))) as test_client:
        yield test_client


def make_tasks(client: TestClient, count: int) -> None:
    for index in range(count):
        agent = "codex" if index % 2 else "claude"
        payload = comment_payload(body=f"@porter {agent} task {index}", id=5000 + index)
        payload["comment"]["user"]["login"] = "alice" if index < 3 else "bob"
        body = json.dumps(payload).encode()
        response = client.post("/webhooks/github", content=body,
                               headers=signed(body, "issue_comment"))
        assert response.status_code == 202


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"},
                                     {"Authorization": "test-admin-token"}])
def test_api_needs_the_admin_token(client: TestClient, headers: dict[str, str]) -> None:
    assert client.get("/api/tasks", headers=headers).status_code == 401
    assert client.get("/api/tasks/1", headers=headers).status_code == 401


def test_filters(client: TestClient) -> None:
    make_tasks(client, 6)
    codex = client.get("/api/tasks?agent=codex", headers=ADMIN).json()["tasks"]
    assert len(codex) == 3 and {t["agent"] for t in codex} == {"codex"}
    alice = client.get("/api/tasks?requester=alice", headers=ADMIN).json()["tasks"]
    assert len(alice) == 3
    queued = client.get("/api/tasks?state=queued&requester=bob&agent=claude",
                        headers=ADMIN).json()["tasks"]
    assert [t["instruction"] for t in queued] == ["task 4"]
    repo = comment_payload()["repository"]["full_name"]
    assert len(client.get(f"/api/tasks?repo={repo}", headers=ADMIN).json()["tasks"]) == 6
    assert client.get("/api/tasks?repo=nobody/none", headers=ADMIN).json()["tasks"] == []


def test_keyset_pagination_walks_every_task_once(client: TestClient) -> None:
    make_tasks(client, 7)
    seen: list[int] = []
    url = "/api/tasks?limit=3"
    while url:
        page = client.get(url, headers=ADMIN).json()
        seen += [t["id"] for t in page["tasks"]]
        url = f"/api/tasks?limit=3&cursor={page['next_cursor']}" if page["next_cursor"] else ""
    assert len(seen) == 7 == len(set(seen))
    assert seen == sorted(seen, reverse=True)


@pytest.mark.parametrize("query", ["state=bogus", "limit=0", "limit=abc", "cursor=-1",
                                   "issue=x", "limit=100000"])
def test_bad_query_is_a_400(client: TestClient, query: str) -> None:
    response = client.get(f"/api/tasks?{query}", headers=ADMIN)
    assert response.status_code == 400
    assert response.json()["error"]


def test_unknown_task_is_404(client: TestClient) -> None:
    assert client.get("/api/tasks/999", headers=ADMIN).status_code == 404
    assert client.get("/api/tasks/abc", headers=ADMIN).status_code == 400


def test_probes(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] is True and ready.json()["pending_migrations"] == []
    make_tasks(client, 1)
    assert 'porter_webhook_deliveries_total{outcome="recorded"} 1.0' in client.get(
        "/metrics").text


# Digits Python's int() or str.isdigit() accept, but that are no ASCII number: "²" and "¹" are
# digits to isdigit() yet int() refuses them; "٣" (Arabic-Indic three) passes both.
NOT_ASCII_NUMBERS = ["²", "¹", "٣", "１", "1²", "+1", " 1", "1_000", "0x1"]


@pytest.mark.parametrize("name", ["limit", "cursor", "issue"])
@pytest.mark.parametrize("value", NOT_ASCII_NUMBERS)
def test_numeric_query_parameters_take_ascii_digits_only(
    client: TestClient, name: str, value: str
) -> None:
    response = client.get("/api/tasks", params={name: value}, headers=ADMIN)
    assert response.status_code == 400
    assert response.json()["error"] == f"{name} must be a whole number written with digits 0-9"


@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("GET", "/logs"),
                                                ("POST", "/cancel"), ("POST", "/retry")])
@pytest.mark.parametrize("value", NOT_ASCII_NUMBERS)
def test_task_ids_take_ascii_digits_only(
    client: TestClient, method: str, suffix: str, value: str
) -> None:
    response = client.request(method, f"/api/tasks/{quote(value)}{suffix}", headers=ADMIN)
    assert response.status_code == 400
    assert response.json()["error"] == "task id must be a whole number written with digits 0-9"


def test_numbers_too_large_for_the_database_are_refused(client: TestClient) -> None:
    response = client.get("/api/tasks", params={"cursor": "9" * 19}, headers=ADMIN)
    assert response.status_code == 400
    assert response.json()["error"] == "cursor is too large"
    assert client.get("/api/tasks/" + "9" * 19, headers=ADMIN).status_code == 400
    assert client.get("/api/tasks/" + "9" * 18, headers=ADMIN).status_code == 404
    assert client.get("/api/tasks?limit=007", headers=ADMIN).status_code == 200
