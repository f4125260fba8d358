"""The GitHub App manifest and where its form posts (docs/platform-notes.md §C.3)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from porter.manifest import (
    DEFAULT_EVENTS,
    REQUIRED_PERMISSIONS,
    app_manifest,
    manifest_form_url,
    missing_permissions,
    required_permissions,
)
from porter.settings import Settings
from porter.webhooks import TRIGGER_EVENTS

PUBLIC = "https://porter.example.com"


def settings(**extra: str) -> Settings:
    return Settings.from_mapping({"PORTER_PUBLIC_URL": PUBLIC, **extra})


def test_the_manifest_registers_a_private_app_that_delivers_to_this_porter() -> None:
    manifest = app_manifest(settings(), name="Porter for octo")
    assert manifest == {
        "name": "Porter for octo",
        "url": PUBLIC,
        "hook_attributes": {"url": f"{PUBLIC}/webhooks/github", "active": True},
        "redirect_url": f"{PUBLIC}/setup/callback",
        "callback_urls": [f"{PUBLIC}/auth/callback"],
        "public": False,
        "default_events": ["issue_comment", "pull_request_review_comment"],
        "default_permissions": {"checks": "write", "contents": "write", "issues": "write",
                                "pull_requests": "write", "metadata": "read"},
        "request_oauth_on_install": False,
    }
    json.dumps(manifest)  # the form field carries it as JSON


def test_the_events_asked_for_are_the_ones_porter_acts_on() -> None:
    assert set(DEFAULT_EVENTS) == TRIGGER_EVENTS


def test_workflow_changes_add_the_workflows_permission() -> None:
    allowed = settings(PORTER_ALLOW_WORKFLOW_CHANGES="true")
    permissions = app_manifest(allowed, name="Porter")["default_permissions"]
    assert permissions == {**REQUIRED_PERMISSIONS, "workflows": "write"}
    assert "workflows" not in required_permissions(settings())


def test_with_a_relay_github_delivers_to_the_relay_channel() -> None:
    relayed = settings(PORTER_WEBHOOK_RELAY_URL="https://smee.io/abc123")
    assert app_manifest(relayed, name="Porter")["hook_attributes"]["url"] == \
        "https://smee.io/abc123"


@pytest.mark.parametrize("name", ["", "   ", "x" * 35])
def test_a_name_github_would_refuse_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="34"):
        app_manifest(settings(), name=name)


def test_the_form_posts_to_the_users_or_the_organizations_new_app_page() -> None:
    assert manifest_form_url(settings(), None, "s1") == \
        "https://github.com/settings/apps/new?state=s1"
    assert manifest_form_url(settings(), "octo-org", "s1") == \
        "https://github.com/organizations/octo-org/settings/apps/new?state=s1"
    enterprise = settings(PORTER_GITHUB_URL="https://ghe.example.com/")
    assert manifest_form_url(enterprise, None, "s1").startswith(
        "https://ghe.example.com/settings/apps/new?")


def test_the_state_is_query_encoded() -> None:
    url = manifest_form_url(settings(), None, "a b&c=d/é")
    assert parse_qs(urlsplit(url).query) == {"state": ["a b&c=d/é"]}


@pytest.mark.parametrize("org", ["-octo", "octo-", "oc--to", "octo/../x", "octo?x=1", "o" * 40,
                                 "", "octo org"])
def test_an_organization_must_be_a_github_login(org: str) -> None:
    with pytest.raises(ValueError, match="login"):
        manifest_form_url(settings(), org, "s1")


def test_an_empty_state_is_refused() -> None:
    with pytest.raises(ValueError, match="state"):
        manifest_form_url(settings(), None, "")


def test_missing_permissions_compare_levels() -> None:
    required = {"contents": "write", "issues": "write", "metadata": "read"}
    assert missing_permissions(
        {"contents": "admin", "issues": "read", "checks": "write"}, required
    ) == {"issues": "read", "metadata": "none"}
    assert missing_permissions({"contents": "write", "issues": "write", "metadata": "read"},
                               required) == {}
    assert missing_permissions({"contents": "bogus"}, {"contents": "read"}) == \
        {"contents": "bogus"}
