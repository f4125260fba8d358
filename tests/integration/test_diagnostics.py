"""The checks `porter doctor` and /setup share, against the fake GitHub and the fake Fly Machines
API served on loopback, and real SQLite files."""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from porter.check import Check
from porter.cli import cmd_doctor
from porter.diagnostics import diagnose
from porter.github_checks import app_check
from porter.settings import Settings
from porter.store import Store, migrations
from tests.conftest import WEBHOOK_SECRET
from tests.fakes.fly import FakeFly
from tests.fakes.github import FakeGitHub
from tests.fakes.github_auth import generate_private_key_pem

FLY_TOKEN = "fm2_lJPECAAAAAAAAMQ9diagnose"
FLY_APP = "porter-agents"
NO_BWRAP = "bubblewrap (bwrap) is not on PATH: install the `bubblewrap` package " \
           "(Debian/Ubuntu: apt-get install bubblewrap)"


def sandbox_works(settings: Settings) -> str | None:
    return None


def no_bwrap(settings: Settings) -> str | None:
    return NO_BWRAP


@pytest.fixture
def github(tmp_path: Path, pem: str) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(tmp_path / "github", app_id="1", private_key_pem=pem)
    fake.add_installation(42, account="octo")
    with fake.serve():
        yield fake


def settings_for(tmp_path: Path, github: FakeGitHub | None, **extra: str) -> Settings:
    env = {
        "PORTER_DATABASE": str(tmp_path / "porter.db"),
        "PORTER_PUBLIC_URL": "https://porter.example.com",
        "PORTER_GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PORTER_ADMIN_TOKEN": "test-admin-token",
        "PORTER_SECRET_ANTHROPIC_API_KEY": "sk-ant-operator",
    }
    if github is not None:
        env |= {"PORTER_GITHUB_APP_ID": github.app_id,
                "PORTER_GITHUB_PRIVATE_KEY": github.private_key_pem,
                "PORTER_GITHUB_API_URL": github.api_url, "PORTER_GITHUB_URL": github.web_url}
    return Settings.from_mapping(env | extra)


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


async def migrated(settings: Settings) -> None:
    store = await Store.open(settings.database)
    await store.close()


async def test_a_good_local_setup_passes_every_check(tmp_path: Path, github: FakeGitHub) -> None:
    settings = settings_for(tmp_path, github)
    await migrated(settings)
    checks = await diagnose(settings, sandbox=sandbox_works)
    assert [c for c in checks if c.ok is False] == []
    found = by_name(checks)
    assert found["accept webhooks"].ok and found["act on GitHub as the App"].ok
    assert found["GitHub App"].detail == "App id 1 (porter) accepts Porter's key"
    assert found["App permissions"].ok
    assert found["installation octo"].detail == \
        "installation 42 has every permission Porter needs"
    latest = migrations()[-1].version
    assert found["database"].detail == f"{settings.database}, migrations current ({latest:04d})"
    assert found["agent sandbox"].detail == "ready (bubblewrap)"
    assert found["agent claude"].detail == "operator key (ANTHROPIC_API_KEY)"
    gemini = found["agent gemini"]
    assert gemini.ok is None and not gemini.blocking
    assert gemini.detail == \
        "no operator key: each requester must add theirs at https://porter.example.com/settings"
    assert {c.area for c in checks} == {"settings", "database", "github", "runner", "agents"}
    # Only JWT calls on /app routes: a check mints no installation token.
    assert {(c.method, c.path, c.auth) for c in github.calls} == {
        ("GET", "/app", "jwt"), ("GET", "/app/installations", "jwt")}


async def test_a_private_key_of_another_app_is_named_as_such(
    tmp_path: Path, github: FakeGitHub
) -> None:
    settings = settings_for(tmp_path, github, PORTER_GITHUB_PRIVATE_KEY=generate_private_key_pem())
    checks = await diagnose(settings, sandbox=sandbox_works)
    app = by_name(checks)["GitHub App"]
    assert app.blocks
    assert "GitHub refused the App's JWT (401: A JSON web token could not be decoded)" in app.detail
    assert "the private key does not belong to App id 1" in app.detail
    assert app.next_action is not None
    assert f"{github.web_url}/settings/apps" in app.next_action
    assert "installation octo" not in by_name(checks)  # nothing more is asked with a bad key


async def test_an_installation_missing_a_permission_says_where_to_accept_it(
    tmp_path: Path, github: FakeGitHub
) -> None:
    github.add_installation(43, account="acme", permissions={
        "contents": "write", "issues": "write", "metadata": "read", "pull_requests": "read",
        "checks": "write"})
    github.add_installation(44, account="octo-org", account_type="Organization", permissions={
        "contents": "write", "metadata": "read", "pull_requests": "write", "checks": "write"})
    settings = settings_for(tmp_path, github)
    found = by_name(await diagnose(settings, sandbox=sandbox_works))
    assert found["installation octo"].ok
    acme = found["installation acme"]
    assert acme.blocks
    assert acme.detail == "installation 43 lacks pull_requests: write (has read)"
    assert acme.next_action == \
        f"accept the new permissions at {github.web_url}/settings/installations/43"
    org = found["installation octo-org"]
    assert org.detail == "installation 44 lacks issues: write (has none)"
    assert org.next_action == f"accept the new permissions at {github.web_url}" \
                              "/organizations/octo-org/settings/installations/44"


async def test_workflow_changes_need_the_workflows_permission_everywhere(
    tmp_path: Path, github: FakeGitHub
) -> None:
    settings = settings_for(tmp_path, github, PORTER_ALLOW_WORKFLOW_CHANGES="true")
    found = by_name(await diagnose(settings, sandbox=sandbox_works))
    assert found["App permissions"].detail == "the App does not ask for workflows: write"
    assert found["App permissions"].next_action == (
        f"add them at {github.web_url}/organizations/porter-dev/settings/apps/porter/permissions;"
        " each installation then accepts them")
    assert found["installation octo"].detail == \
        "installation 42 lacks workflows: write (has none)"


def test_an_app_that_does_not_subscribe_to_comments_is_told_which_events() -> None:
    settings = Settings.from_mapping({})
    check = app_check(settings, {
        "slug": "porter", "owner": {"login": "me", "type": "User"}, "events": ["issues"],
        "permissions": {"contents": "write", "issues": "write", "metadata": "read",
                        "pull_requests": "write", "checks": "write"}})
    assert check.blocks
    assert check.detail == "the App does not ask for the issue_comment event, " \
                           "the pull_request_review_comment event"
    assert check.next_action is not None
    assert "https://github.com/settings/apps/porter/permissions" in check.next_action


async def test_the_local_runner_without_bubblewrap_blocks(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, None)
    found = by_name(await diagnose(settings, sandbox=no_bwrap))
    sandbox = found["agent sandbox"]
    assert sandbox.blocks
    assert sandbox.next_action == NO_BWRAP
    unsandboxed = settings_for(tmp_path, None, PORTER_LOCAL_RUNNER_UNSANDBOXED="true")
    off = by_name(await diagnose(unsandboxed, sandbox=no_bwrap))["agent sandbox"]
    assert (off.ok, off.blocking, off.detail) == (False, False, "OFF")
    assert off.next_action is not None and "WITHOUT a sandbox" in off.next_action


async def test_fly_checks_the_token_the_app_and_the_image(tmp_path: Path) -> None:
    fake = FakeFly(token=FLY_TOKEN, app=FLY_APP)
    async with fake.serve():
        fly = {"PORTER_FLY_API_TOKEN": FLY_TOKEN, "PORTER_FLY_APP": FLY_APP,
               "PORTER_FLY_API_URL": fake.url, "PORTER_AGENT_IMAGE": "registry.fly.io/a:1"}
        good = by_name(await diagnose(settings_for(tmp_path, None, **fly)))
        assert good["Fly app"].detail == \
            "porter-agents answers (organization personal, status deployed)"
        assert good["agent image"].ok
        assert "agent sandbox" not in good

        wrong_app = by_name(await diagnose(settings_for(
            tmp_path, None, **fly | {"PORTER_FLY_APP": "nope"})))["Fly app"]
        assert wrong_app.blocks
        assert wrong_app.detail == "Fly has no app nope, or none the token may see"
        assert wrong_app.next_action is not None and "fly apps create nope" in \
            wrong_app.next_action

        wrong_token = by_name(await diagnose(settings_for(
            tmp_path, None, **fly | {"PORTER_FLY_API_TOKEN": "fm2_other"})))["Fly app"]
        assert wrong_token.blocks
        assert wrong_token.detail.startswith("Fly refused PORTER_FLY_API_TOKEN")
        assert "fm2_other" not in wrong_token.detail

        without_image = {k: v for k, v in fly.items() if k != "PORTER_AGENT_IMAGE"}
        image = by_name(await diagnose(settings_for(tmp_path, None, **without_image)))
        assert image["agent image"].blocks
        assert image["agent image"].next_action is not None
        assert "container/" in image["agent image"].next_action
    assert all(r.auth_scheme == "FlyV1" for r in fake.requests)


async def test_unreachable_apis_are_reported_without_blocking(tmp_path: Path, pem: str) -> None:
    closed = "http://127.0.0.1:9"  # discard: nothing listens there
    settings = settings_for(
        tmp_path, None, PORTER_GITHUB_APP_ID="1", PORTER_GITHUB_PRIVATE_KEY=pem,
        PORTER_GITHUB_API_URL=closed, PORTER_FLY_API_TOKEN=FLY_TOKEN, PORTER_FLY_APP=FLY_APP,
        PORTER_FLY_API_URL=closed, PORTER_AGENT_IMAGE="img:1")
    found = by_name(await diagnose(settings, network_timeout=2.0))
    for name in ("GitHub App", "Fly app"):
        assert (found[name].ok, found[name].blocking) == (False, False), found[name]
        assert found[name].detail.startswith("not checked")
        assert found[name].next_action is not None and closed in found[name].next_action


async def test_a_database_not_created_yet_is_reported_and_still_not_created(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path, None)
    check = by_name(await diagnose(settings, sandbox=sandbox_works))["database"]
    assert (check.ok, check.blocking) == (None, False)
    assert check.next_action == "`porter serve` or `porter migrate` creates it"
    assert os.listdir(tmp_path) == []


async def test_pending_and_unknown_migrations_and_a_file_that_is_no_database(
    tmp_path: Path,
) -> None:
    settings = settings_for(tmp_path, None)
    db = sqlite3.connect(settings.database)
    db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
               " applied_at REAL NOT NULL)")
    db.execute("INSERT INTO schema_migrations VALUES (1, 'initial', 0)")
    db.commit()
    pending = by_name(await diagnose(settings, sandbox=sandbox_works))["database"]
    assert (pending.ok, pending.blocking) == (False, False)
    assert "migrations pending (0002 publishing" in pending.detail
    assert pending.next_action == "`porter migrate` applies them (`porter serve` does at start)"

    db.execute("INSERT INTO schema_migrations VALUES (9999, 'from the future', 0)")
    db.commit()
    db.close()
    newer = by_name(await diagnose(settings, sandbox=sandbox_works))["database"]
    assert newer.blocks and "(9999): a newer Porter migrated it" in newer.detail

    settings.database.write_bytes(b"not a database at all, just text")
    garbage = by_name(await diagnose(settings, sandbox=sandbox_works))["database"]
    assert garbage.blocks and garbage.detail.endswith("it is not a SQLite database")


async def test_an_open_store_is_checked_as_it_is(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, None)
    store = await Store.open(settings.database)
    try:
        check = by_name(await diagnose(settings, store=store, sandbox=sandbox_works))["database"]
    finally:
        await store.close()
    assert check.ok is True


async def test_doctor_prints_each_check_with_its_next_action_and_exits_by_the_blocking_ones(
    tmp_path: Path, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeFly(token=FLY_TOKEN, app=FLY_APP)
    async with fake.serve():
        fly = {"PORTER_FLY_API_TOKEN": FLY_TOKEN, "PORTER_FLY_APP": FLY_APP,
               "PORTER_FLY_API_URL": fake.url, "PORTER_AGENT_IMAGE": "registry.fly.io/a:1"}
        ready = settings_for(tmp_path, github, **fly)
        # cmd_doctor runs its own event loop, as `porter doctor` does: off this one.
        assert await asyncio.to_thread(cmd_doctor, ready, argparse.Namespace()) == 0
        out = capsys.readouterr().out
        assert "  GitHub App                   App id 1 (porter) accepts Porter's key\n" in out
        assert "  Fly app                      porter-agents answers" in out
        assert "Porter has what it needs." in out

        github.add_installation(43, account="acme", permissions={"metadata": "read"})
        assert await asyncio.to_thread(cmd_doctor, ready, argparse.Namespace()) == 1
        out = capsys.readouterr().out
        assert "  installation acme            installation 43 lacks contents: write" in out
        assert f"fix: accept the new permissions at {github.web_url}/settings/installations/43" \
            in out
        assert "sk-ant-operator" not in out and "BEGIN" not in out and FLY_TOKEN not in out
