"""The webhook route, through the real app, on a real SQLite file and a real PostgreSQL database
(`store_database`: PORTER_DATABASE is the file's path, then the database's URL)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from starlette.testclient import TestClient

from porter.app import create_app
from porter.settings import Settings
from porter.store.pg_backend import is_postgres
from tests.conftest import FIXTURES, comment_payload, fixture_files, fixture_name, signed

URL = "/webhooks/github"


@pytest.fixture
def env(env: dict[str, str], store_database: Path | str, tmp_path: Path) -> dict[str, str]:
    """The shared settings, on each store in turn (data beside the test on PostgreSQL)."""
    return {**env, "PORTER_DATABASE": str(store_database), "PORTER_DATA_DIR": str(tmp_path)}


@pytest.fixture
def client(env: dict[str, str]) -> Iterator[TestClient]:
    with TestClient(create_app(Settings.from_mapping(env))) as test_client:
        yield test_client


def rows(env: dict[str, str], table: str) -> list[Mapping[str, Any]]:
    """A table's rows read straight from the database, past the store."""
    query = f"SELECT * FROM {table}"  # noqa: S608 - test-only names
    if is_postgres(env["PORTER_DATABASE"]):
        with psycopg.connect(env["PORTER_DATABASE"], row_factory=dict_row) as pg:
            return list(pg.execute(query).fetchall())
    db = sqlite3.connect(env["PORTER_DATABASE"])
    db.row_factory = sqlite3.Row
    try:
        return list(db.execute(query).fetchall())
    finally:
        db.close()


def post(client: TestClient, payload: object, event: str, **kwargs: str) -> object:
    body = json.dumps(payload).encode()
    return client.post(URL, content=body, headers=signed(body, event, **kwargs))


NOT_FOR_PORTER = "comment does not address Porter"  # the raw-bytes prefilter, before decoding
# Every real payload, signed → the 202's answer as delivered, and with "@porter fix the typo" as
# its comment's body (None: no comment in it): "queued" (a task), or why it was ignored.
# A new fixture needs a row here (test_the_intake_table_covers_every_fixture).
ANSWERS: dict[str, tuple[str, str | None]] = {
    "github_app_authorization/revoked.payload.json": (
        "event github_app_authorization is not handled", None),
    "installation/created.payload.json": ("event installation is not handled", None),
    "installation/deleted.payload.json": ("event installation is not handled", None),
    "installation/suspend.payload.json": ("event installation is not handled", None),
    "installation_repositories/added.payload.json": (
        "event installation_repositories is not handled", None),
    "installation_repositories/removed.payload.json": (
        "event installation_repositories is not handled", None),
    "issue_comment/created.payload.json": (NOT_FOR_PORTER, "queued"),
    "issue_comment/created.with-installation.payload.json": (NOT_FOR_PORTER, "queued"),
    "issue_comment/deleted.payload.json": (NOT_FOR_PORTER, "action 'deleted' is not handled"),
    "issue_comment/deleted.with-organization.payload.json": (
        NOT_FOR_PORTER, "action 'deleted' is not handled"),
    "issue_comment/edited.payload.json": (NOT_FOR_PORTER, "action 'edited' is not handled"),
    "issues/opened.payload.json": ("event issues is not handled", None),
    "issues/opened.with-empty-body.payload.json": ("event issues is not handled", None),
    "issues/opened.with-organization.payload.json": ("event issues is not handled", None),
    "ping/payload.json": ("event ping is not handled", None),
    "ping/with-app_id.payload.json": ("event ping is not handled", None),
    "pull_request/closed.payload.json": ("event pull_request is not handled", None),
    "pull_request/opened.payload.json": ("event pull_request is not handled", None),
    "pull_request/opened.with-organization.payload.json": (
        "event pull_request is not handled", None),
    "pull_request_review_comment/created.payload.json": (NOT_FOR_PORTER, "queued"),
    "pull_request_review_comment/deleted.payload.json": (
        NOT_FOR_PORTER, "action 'deleted' is not handled"),
    "pull_request_review_comment/edited.payload.json": (
        NOT_FOR_PORTER, "action 'edited' is not handled"),
}


def test_the_intake_table_covers_every_fixture() -> None:
    assert sorted(ANSWERS) == [fixture_name(path) for path in fixture_files()]


def answer(client: TestClient, event: str, body: bytes) -> str:
    response = client.post(URL, content=body, headers=signed(body, event))
    assert response.status_code == 202, response.text
    data = response.json()
    return "queued" if data["status"] == "queued" else f"{data['status']}: {data['reason']}"


@pytest.mark.parametrize(("name", "as_delivered", "mentioned"),
                         [(name, *row) for name, row in ANSWERS.items()], ids=list(ANSWERS))
def test_what_each_real_payload_signed_is_answered(
    client: TestClient, env: dict[str, str], name: str, as_delivered: str, mentioned: str | None
) -> None:
    event = name.split("/")[0]
    raw = (FIXTURES / name).read_bytes()  # the bytes as GitHub sent them
    assert answer(client, event, raw) == f"ignored: {as_delivered}"
    assert rows(env, "tasks") == []
    if mentioned is None:
        assert "comment" not in json.loads(raw)
        return
    payload = json.loads(raw)
    payload["comment"]["body"] = "@porter fix the typo"
    expected = "queued" if mentioned == "queued" else f"ignored: {mentioned}"
    assert answer(client, event, json.dumps(payload).encode()) == expected
    assert len(rows(env, "tasks")) == (1 if mentioned == "queued" else 0)


@pytest.mark.parametrize("event", ["issue_comment", "pull_request_review_comment"])
def test_a_mention_creates_exactly_one_queued_task(
    client: TestClient, env: dict[str, str], event: str
) -> None:
    payload = comment_payload(event, "@porter fix the typo")
    first = post(client, payload, event, delivery="delivery-1")
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "queued"
    [task] = rows(env, "tasks")
    number = payload["issue"]["number"] if event == "issue_comment" else \
        payload["pull_request"]["number"]
    assert task["state"] == "queued"
    assert task["repo"] == payload["repository"]["full_name"]
    assert task["issue_number"] == number
    assert task["comment_id"] == payload["comment"]["id"]
    assert task["requester"] == payload["comment"]["user"]["login"]
    assert task["agent"] == "claude"
    assert task["instruction"] == "fix the typo"

    for delivery in ("delivery-1", "delivery-2"):
        again = post(client, payload, event, delivery=delivery)
        assert again.status_code == 202
        assert again.json()["status"] == "duplicate"
    assert len(rows(env, "tasks")) == 1
    assert len(rows(env, "task_events")) == 1


def test_the_api_shows_the_task(client: TestClient) -> None:
    post(client, comment_payload(body="@porter codex add tests"), "issue_comment")
    headers = {"Authorization": "Bearer test-admin-token"}
    listing = client.get("/api/tasks", headers=headers).json()
    [task] = listing["tasks"]
    assert (task["agent"], task["state"]) == ("codex", "queued")
    detail = client.get(f"/api/tasks/{task['id']}", headers=headers).json()
    assert [e["kind"] for e in detail["events"]] == ["state.queued"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Hub-Signature-256": "sha256=" + "0" * 64},
        {"X-Hub-Signature": "sha1=0123456789abcdef0123456789abcdef01234567"},
        {"X-Hub-Signature-256": "garbage"},
    ],
    ids=["missing", "wrong", "sha1-only", "garbage"],
)
def test_bad_signatures_are_refused_and_write_nothing(
    client: TestClient, env: dict[str, str], headers: dict[str, str]
) -> None:
    body = json.dumps(comment_payload()).encode()
    response = client.post(URL, content=body, headers={
        "X-GitHub-Event": "issue_comment", "X-GitHub-Delivery": "d", **headers})
    assert response.status_code == 401
    assert rows(env, "deliveries") == [] and rows(env, "tasks") == []


def test_a_body_changed_after_signing_is_refused(client: TestClient, env: dict[str, str]) -> None:
    body = json.dumps(comment_payload()).encode()
    headers = signed(body, "issue_comment")
    tampered = body.replace(b"fix the typo", b"rm -rf the repo")
    response = client.post(URL, content=tampered, headers=headers)
    assert response.status_code == 401
    assert rows(env, "tasks") == []


@pytest.mark.parametrize("event", ["issue_comment", "ping", "pull_request_review_comment"])
@pytest.mark.parametrize("body", [b"not json", b"{\"action\": ", b"[1, 2]", b"@porter fix"])
def test_invalid_json_with_a_valid_signature_is_400(
    client: TestClient, env: dict[str, str], event: str, body: bytes
) -> None:
    response = client.post(URL, content=body, headers=signed(body, event))
    assert response.status_code == 400
    assert rows(env, "tasks") == []


def test_an_oversized_body_is_refused_before_it_is_read(client: TestClient) -> None:
    big = b"x" * (30 * 1024 * 1024)
    response = client.post(URL, content=big, headers=signed(big, "issue_comment"))
    assert response.status_code == 413


def test_an_oversized_streamed_body_without_length_is_refused(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(30):
            yield b"x" * (1024 * 1024)

    response = client.post(URL, content=chunks(), headers={
        "X-GitHub-Event": "issue_comment", "X-GitHub-Delivery": "d",
        "X-Hub-Signature-256": "sha256=" + "0" * 64})
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("event", "name", "body", "change"),
    [
        ("issue_comment", "edited", "@porter fix the typo", {}),
        ("pull_request_review_comment", "edited", "@porter fix the typo", {}),
        ("issue_comment", "deleted", "@porter fix the typo", {}),
        ("issue_comment", "created", "> @porter fix the typo\n\nI agree", {}),
        ("issue_comment", "created", "```\n@porter fix the typo\n```", {}),
        ("issue_comment", "created", "    @porter fix the typo", {}),
        ("issue_comment", "created", "ping x@porter.example about it", {}),
        ("issue_comment", "created", "@porter fix the typo", {"type": "Bot"}),
        ("issue_comment", "created", "@porter fix the typo", {"login": "porter[bot]"}),
    ],
)
def test_comments_that_must_not_trigger(
    client: TestClient, env: dict[str, str], event: str, name: str, body: str,
    change: dict[str, str],
) -> None:
    payload = comment_payload(event, body, name=name)
    payload["comment"]["user"].update(change)
    if change:
        payload["sender"].update(change)
    response = post(client, payload, event)
    assert response.status_code == 202
    assert response.json()["status"] == "ignored"
    assert rows(env, "tasks") == [] and rows(env, "deliveries") == []


def test_comments_without_the_mention_write_nothing(
    client: TestClient, env: dict[str, str]
) -> None:
    for index in range(5):
        payload = comment_payload(body=f"looks good {index}", id=1000 + index)
        assert post(client, payload, "issue_comment").status_code == 202
    assert rows(env, "deliveries") == [] and rows(env, "jobs") == []


def test_a_control_command_is_recorded_as_a_job(client: TestClient, env: dict[str, str]) -> None:
    response = post(client, comment_payload(body="@porter cancel"), "issue_comment")
    assert response.status_code == 202 and response.json()["status"] == "accepted"
    # The command may already have run and queued its reply: intake wakes the job runner.
    [job] = [row for row in rows(env, "jobs") if row["kind"] == "command"]
    assert json.loads(job["payload"])["action"] == "cancel"


def test_webhooks_are_off_without_a_secret(tmp_path: Path) -> None:
    settings = Settings.from_mapping({"PORTER_DATABASE": str(tmp_path / "p.db")})
    with TestClient(create_app(settings)) as client:
        body = json.dumps(comment_payload()).encode()
        response = client.post(URL, content=body, headers=signed(body, "issue_comment"))
    assert response.status_code == 503
    assert "PORTER_GITHUB_WEBHOOK_SECRET" in response.json()["error"]
