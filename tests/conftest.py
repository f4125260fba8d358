"""Shared test helpers: real webhook payloads from tests/fixtures, signed like GitHub signs."""

from __future__ import annotations

import copy
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings

from porter.webhooks import Trigger, decode_delivery, sign
from tests.postgres import Cluster, running_cluster, server_bin

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "github-webhooks"
WEBHOOK_SECRET = "test-webhook-secret"

# The suite runs on pytest-xdist workers that share the cores with subprocesses: how long one
# example takes is load, never a failure, so property tests have no per-example deadline.
hypothesis_settings.register_profile("porter", deadline=None)
hypothesis_settings.load_profile("porter")


def fixture_files() -> list[Path]:
    files = sorted(FIXTURES.glob("*/*.json"))
    assert files, f"no webhook fixtures under {FIXTURES}"
    return files


def fixture_name(path: Path) -> str:
    """How tables name a fixture: its path under tests/fixtures/github-webhooks/."""
    return path.relative_to(FIXTURES).as_posix()


def load_fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def load_payload(event: str, name: str = "created") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / event / f"{name}.payload.json").read_text())
    return copy.deepcopy(data)


def comment_payload(event: str = "issue_comment", body: str = "@porter fix the typo",
                    *, name: str = "created", **comment: Any) -> dict[str, Any]:
    payload = load_payload(event, name)
    payload["comment"]["body"] = body
    payload["comment"].update(comment)
    return payload


def trigger(delivery: str, comment_id: int, body: str = "@porter fix", *,
            repo: str | None = None, requester: str | None = None) -> Trigger:
    """The trigger an issue comment delivery decodes to (the real payload, re-pointed)."""
    payload = comment_payload(body=body, id=comment_id)
    if repo:
        payload["repository"]["full_name"] = repo
    if requester:
        payload["comment"]["user"]["login"] = requester
    outcome = decode_delivery("issue_comment", delivery, payload, handle="porter",
                              agents={"claude", "codex"})
    assert isinstance(outcome, Trigger)
    return outcome


def signed(body: bytes, event: str, *, delivery: str | None = None,
           secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(body, secret=secret.encode()),
    }


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The settings a test server runs with: a fresh database, a known webhook secret."""
    return {
        "PORTER_DATABASE": str(tmp_path / "porter.db"),
        "PORTER_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PORTER_ADMIN_TOKEN": "test-admin-token",
    }


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster for the session (per xdist worker), removed afterwards.
    A developer without PostgreSQL's server is told what to install; CI, which installs it,
    never skips."""
    bindir = server_bin()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL's server is not installed (.ci/run installs `postgresql`)")
        pytest.skip("PostgreSQL's server is not installed: apt-get install postgresql")
    with running_cluster(bindir) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def postgres_url(postgres_cluster: Cluster) -> str:
    """The URL of the session cluster's `postgres` database (shared by the session's tests)."""
    return postgres_cluster.url


@pytest.fixture
def postgres_database(postgres_cluster: Cluster) -> Iterator[str]:
    """The URL of a new, empty database of its own for one test, dropped afterwards."""
    url = postgres_cluster.create_database()
    yield url
    postgres_cluster.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_database(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a contract test opens its store: a SQLite file, then a PostgreSQL database of its
    own; every test using it runs on both stores (issue 12)."""
    if request.param == "sqlite":
        return tmp_path / "porter.db"
    url: str = request.getfixturevalue("postgres_database")
    return url
