"""The GitHub App manifest Porter registers itself with (docs/platform-notes.md §C.3). Pure.

The manifest flow is a browser form POST of `manifest` (this JSON) to `manifest_form_url`; GitHub
creates the App and redirects to `redirect_url` with a code the /setup page exchanges for the
App's id, key and secrets. `REQUIRED_PERMISSIONS` is also what `porter doctor` and /setup compare
every installation's permissions against (porter/diagnostics.py), so the App Porter asks for and
the App Porter checks for cannot drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import quote, urlencode

from porter.settings import Settings
from porter.webhooks import TRIGGER_EVENTS

# What Porter's GitHub calls need (porter/github.py): contents to clone, commit through the Git
# Data API and create branches; issues to react, comment and read issue text; pull_requests to
# open pull requests and react to review comments; checks to report each task as a Check Run on
# the commit it creates (porter/check_runs.py); metadata is mandatory for every App.
REQUIRED_PERMISSIONS: Mapping[str, str] = MappingProxyType({
    "contents": "write",
    "issues": "write",
    "pull_requests": "write",
    "checks": "write",
    "metadata": "read",
})
# Pushing anything under .github/workflows/ needs this as well (platform-notes §C.2): asked for
# only when agents may change those files at all.
WORKFLOW_PERMISSION = ("workflows", "write")
# The deliveries Porter acts on (porter/webhooks.py); others would only be ignored.
DEFAULT_EVENTS: tuple[str, ...] = tuple(sorted(TRIGGER_EVENTS))
MAX_NAME_LENGTH = 34  # GitHub refuses longer App names
_LEVELS = ("none", "read", "write", "admin")
# A GitHub login: letters, digits and single inner hyphens, at most 39 characters.
_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")


def required_permissions(settings: Settings) -> dict[str, str]:
    """The permissions this Porter needs, given its settings."""
    needed = dict(REQUIRED_PERMISSIONS)
    if settings.allow_workflow_changes:
        name, level = WORKFLOW_PERMISSION
        needed[name] = level
    return needed


def missing_permissions(granted: Mapping[str, str],
                        required: Mapping[str, str]) -> dict[str, str]:
    """Each required permission `granted` lacks or holds below the level required, with the
    level it holds ("none" when absent). A higher level than asked for satisfies it."""
    return {name: granted.get(name) or "none" for name, level in required.items()
            if _rank(granted.get(name)) < _rank(level)}


def _rank(level: str | None) -> int:
    return _LEVELS.index(level) if level in _LEVELS else 0


def webhook_url(settings: Settings) -> str:
    """Where GitHub sends deliveries: the relay channel when one is set (a laptop without a
    public URL), else Porter's own webhook route."""
    return settings.webhook_relay_url or f"{settings.public_url}/webhooks/github"


def app_manifest(settings: Settings, *, name: str) -> dict[str, Any]:
    """The manifest for a private App named `name` that delivers to this Porter."""
    if not name.strip() or len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"a GitHub App name is 1 to {MAX_NAME_LENGTH} characters")
    public = settings.public_url
    return {
        "name": name,
        "url": public,
        "hook_attributes": {"url": webhook_url(settings), "active": True},
        "redirect_url": f"{public}/setup/callback",
        "callback_urls": [f"{public}/auth/callback"],
        "public": False,
        "default_events": list(DEFAULT_EVENTS),
        "default_permissions": required_permissions(settings),
        # Sign-in is asked for when a user first opens the web app, not on every install.
        "request_oauth_on_install": False,
    }


def manifest_form_url(settings: Settings, org: str | None, state: str) -> str:
    """Where the manifest form posts: the signed-in user's Apps, or organization `org`'s.

    `state` comes back with GitHub's redirect, so the callback can tell it started the flow.
    """
    if not state:
        raise ValueError("the manifest flow needs a state")
    query = urlencode({"state": state})
    if org is None:
        return f"{settings.github_url}/settings/apps/new?{query}"
    if not valid_login(org):
        raise ValueError("an organization is a GitHub login: letters, digits and single hyphens")
    return f"{settings.github_url}/organizations/{quote(org)}/settings/apps/new?{query}"


def valid_login(login: str) -> bool:
    return _LOGIN.fullmatch(login) is not None
