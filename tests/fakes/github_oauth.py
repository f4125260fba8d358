"""The App as people meet it: OAuth sign-in, user access tokens, /user routes, app manifests.

    fake = FakeGitHub(tmp_path, client_secret="s3cret")   # client_id is fake.client_id
    fake.sign_in_as("alice")          # a browser signed in to GitHub: authorize redirects at once
    fake.user_token_lifetime = 60     # ghu_ tokens expire after a minute of fake.now()

Browser-facing pages (/login/oauth/…, /settings/apps/new) live in github_oauth_web; the REST
routes here answer user access tokens (ghu_) as GitHub does: `GET /user`, `GET /user/installations`
and `GET /user/installations/{id}/repositories` list only what the user reaches through this
App's installations (explicit access: the account is theirs, they own the organization, or they
hold a role on the repository; the fake's organizations have base permission "none").
`POST /app-manifests/{code}/conversions` turns a manifest code into the fake's own credentials.
"""

from __future__ import annotations

import re
import secrets
import string
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlencode

from tests.fakes import github_shapes as shapes
from tests.fakes.github_http import Ctx, not_found
from tests.fakes.github_routes import route
from tests.fakes.github_state import ROLES, Installation, Repo, User, UserToken

if TYPE_CHECKING:
    from tests.fakes.github import FakeGitHub

USER_TOKEN_LIFETIME = 28800  # 8 hours
REFRESH_TOKEN_LIFETIME = 15897600  # 6 months
DEFAULT_CLIENT_SECRET = "fake-client-secret"
CODE_LIFETIME = 600  # OAuth codes: 10 minutes, single use
MANIFEST_CODE_LIFETIME = 3600  # manifest codes: 1 hour, single use
DEFAULT_APP_PERMISSIONS = {
    "checks": "write",
    "contents": "write",
    "issues": "write",
    "metadata": "read",
    "pull_requests": "write",
}
DEFAULT_APP_EVENTS = ["issue_comment", "issues", "pull_request", "pull_request_review_comment"]
_ALNUM = string.ascii_letters + string.digits


@dataclass
class OAuthCode:
    code: str = field(repr=False)
    login: str
    redirect_uri: str
    issued_at: float
    used: bool = False


@dataclass
class RefreshGrant:
    token: str = field(repr=False)
    login: str
    expires_at: float
    used: bool = False


@dataclass
class ManifestRecord:
    """One manifest POSTed to /settings/apps/new, as the fake received and validated it."""

    manifest: dict[str, Any]
    state: str | None
    org: str | None  # set for /organizations/{org}/settings/apps/new
    owner: str  # the account the App will belong to
    code: str = field(repr=False)
    created_at: float
    converted: bool = False


def _random(prefix: str, n: int) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(n))


class OAuthApp:
    """Mixed into FakeGitHub: the App's registration, its OAuth side and who signs in."""

    now: Callable[[], float]
    lock: threading.RLock
    app_slug: str
    app_owner: str
    bot_login: str
    private_key_pem: str

    def _init_oauth(self, client_secret: str) -> None:
        self.client_secret = client_secret
        self.user_token_lifetime: float | None = USER_TOKEN_LIFETIME  # None: tokens never expire
        self.refresh_token_lifetime: float = REFRESH_TOKEN_LIFETIME
        self.signed_in: str | None = None
        # The App's registration; a manifest conversion replaces it.
        self.app_name = self.app_slug.capitalize()
        self.app_description: str | None = "Fake GitHub App for tests"
        self.app_external_url: str | None = None  # None: the fake's web_url
        self.app_permissions: dict[str, str] = dict(DEFAULT_APP_PERMISSIONS)
        self.app_events: list[str] = list(DEFAULT_APP_EVENTS)
        self.app_created_at = 0.0
        self.app_updated_at = 0.0
        self.callback_urls: list[str] = []  # empty: any http(s) redirect_uri is accepted
        self.setup_url: str | None = None
        self.webhook_url: str | None = None
        self.webhook_secret: str | None = None
        self.app_manifest: dict[str, Any] | None = None  # the manifest last converted
        self.manifests: list[ManifestRecord] = []
        self.user_tokens: list[UserToken] = []  # every user token minted, oldest first
        self._user_tokens: dict[str, UserToken] = {}
        self._refresh_grants: dict[str, RefreshGrant] = {}
        self._codes: dict[str, OAuthCode] = {}
        self._org_roles: dict[tuple[str, str], str] = {}  # (org, login) lower-cased -> role

    @property
    def _gh(self) -> FakeGitHub:
        return cast("FakeGitHub", self)

    # --- who signs in ----------------------------------------------------------------------

    def sign_in_as(self, login: str | None) -> None:
        """The browser is signed in to GitHub as `login` (created on first mention); None signs
        out, and /login/oauth/authorize then shows its sign-in form."""
        with self.lock:
            self.signed_in = self._gh.add_user(login).login if login else None

    def add_org_member(self, org: str, login: str, *, role: str = "member") -> None:
        """role "admin" (an organization owner: reaches every repository of the organization)
        or "member" (reaches only the repositories where set_permission gave a role)."""
        if role not in ("admin", "member"):
            raise ValueError(f"unknown organization role {role!r}")
        with self.lock:
            self._gh.add_user(org, type="Organization")
            self._gh.add_user(login)
            self._org_roles[(org.lower(), login.lower())] = role

    def user_role(self, login: str, repo: Repo) -> str:
        """The user's role on a repository: admin … read, or "none"."""
        key = login.lower()
        if repo.owner.lower() == key or self._org_roles.get((repo.owner.lower(), key)) == "admin":
            return "admin"
        for who, role in repo.roles.items():
            if who.lower() == key:
                return role
        return "none"

    def user_repositories(self, login: str, installation_id: int) -> list[tuple[Repo, str]]:
        """(repository, role) for each repository of the installation the user reaches."""
        with self.lock:
            found = []
            for repo in self._gh.state_repos():
                if repo.installation_id == installation_id:
                    role = self.user_role(login, repo)
                    if role != "none":
                        found.append((repo, role))
            return found

    def user_installations(self, login: str) -> list[Installation]:
        """This App's installations the user reaches: on their own account, on an organization
        they own, or with a role on at least one of its repositories."""
        key = login.lower()
        with self.lock:
            return [
                inst
                for inst in self._gh.state_installations()
                if inst.account.lower() == key
                or self._org_roles.get((inst.account.lower(), key)) == "admin"
                or self.user_repositories(login, inst.id)
            ]

    # --- codes and tokens ------------------------------------------------------------------

    def issue_code(self, login: str, redirect_uri: str) -> str:
        """A one-time OAuth code for `login`, as the authorize page hands out."""
        with self.lock:
            code = secrets.token_hex(10)
            self._codes[code] = OAuthCode(code, login, redirect_uri, self.now())
            return code

    def find_code(self, code: str) -> OAuthCode | None:
        """The OAuth code if it is unused and fresh (the exchange marks it used)."""
        grant = self._codes.get(code)
        if grant is None or grant.used or self.now() - grant.issued_at > CODE_LIFETIME:
            return None
        return grant

    def mint_user_token(self, login: str) -> UserToken:
        """A user access token (and, when tokens expire, a refresh token) for `login`, as the
        code exchange makes them; tests may call it to skip the browser."""
        with self.lock:
            user = self._gh.add_user(login)
            now = self.now()
            lifetime = self.user_token_lifetime
            token = UserToken(
                self._gh._id(),
                _random("ghu_", 36),
                user.login,
                now,
                None if lifetime is None else now + lifetime,
            )
            if lifetime is not None:
                refresh = _random("ghr_", 76)
                expires = now + self.refresh_token_lifetime
                self._refresh_grants[refresh] = RefreshGrant(refresh, user.login, expires)
                token.refresh_token = refresh
            self._user_tokens[token.token] = token
            self.user_tokens.append(token)
            return token

    def refresh_user_token(self, refresh_token: str) -> UserToken | None:
        """A new token pair for a valid refresh token, which stops working; else None."""
        with self.lock:
            grant = self._refresh_grants.get(refresh_token)
            if grant is None or grant.used or grant.expires_at <= self.now():
                return None
            grant.used = True
            return self.mint_user_token(grant.login)

    def find_user_token(self, value: str) -> UserToken | None:
        """The user token with this value, if it is still valid at fake.now()."""
        token = self._user_tokens.get(value)
        if token is None or (token.expires_at is not None and token.expires_at <= self.now()):
            return None
        return token

    def revoke_user_token(self, value: str) -> None:
        """As when the user revokes the App's authorization: the token answers 401 from now on."""
        with self.lock:
            self._user_tokens.pop(value, None)

    # --- app manifests ---------------------------------------------------------------------

    def add_manifest(
        self, manifest: dict[str, Any], *, state: str | None, org: str | None, owner: str
    ) -> ManifestRecord:
        with self.lock:
            record = ManifestRecord(manifest, state, org, owner, secrets.token_hex(16), self.now())
            self.manifests.append(record)
            return record

    def convert_manifest(self, code: str) -> dict[str, Any] | None:
        """Register the App from a manifest code: the fake keeps its own id, client id and key,
        and takes the manifest's name, URLs, permissions and events, a new client secret and
        webhook secret. None when the code is unknown, used or older than an hour."""
        gh = self._gh
        with self.lock:
            record = next((m for m in self.manifests if m.code == code), None)
            now = self.now()
            if (
                record is None
                or record.converted
                or now - record.created_at > MANIFEST_CODE_LIFETIME
            ):
                return None
            record.converted = True
            m = record.manifest
            self.app_manifest = m
            self.app_name = str(m.get("name") or self.app_name)
            self.app_slug = _slug(self.app_name) or self.app_slug
            self.bot_login = f"{self.app_slug}[bot]"
            gh.add_user(self.bot_login, type="Bot")
            self.app_owner = record.owner
            self.app_description = m.get("description")
            self.app_external_url = m["url"]
            self.app_permissions = {**dict(m.get("default_permissions") or {}), "metadata": "read"}
            self.app_events = list(m.get("default_events") or [])
            self.callback_urls = list(m.get("callback_urls") or [])
            self.setup_url = m.get("setup_url")
            self.webhook_url = m["hook_attributes"]["url"]
            self.app_created_at = self.app_updated_at = now
            self.client_secret = secrets.token_hex(20)
            self.webhook_secret = secrets.token_hex(20)
            body = shapes.app(gh)
            body.pop("installations_count", None)
            return {
                **body,
                "client_secret": self.client_secret,
                "webhook_secret": self.webhook_secret,
                "pem": self.private_key_pem,
            }


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# --- REST routes -----------------------------------------------------------------------------


def _page(ctx: Ctx, items: Sequence[Any]) -> list[Any]:
    """One page (per_page ≤ 100, default 30), with GitHub's Link header when there are more."""
    q = ctx.request.query_params

    def number(name: str, default: int) -> int:
        try:
            return max(int(q.get(name, default)), 1)
        except ValueError:
            return default

    per_page = min(number("per_page", 30), 100)
    page = number("page", 1)
    last = max((len(items) + per_page - 1) // per_page, 1)
    path = ctx.request.url.path.removeprefix("/api/v3")
    base = ctx.gh.api_url + path

    def link(n: int, rel: str) -> str:
        query = urlencode({**dict(q), "per_page": per_page, "page": n})
        return f'<{base}?{query}>; rel="{rel}"'

    links = []
    if page > 1:
        links.append(link(min(page - 1, last), "prev"))
    if page < last:
        links += [link(page + 1, "next"), link(last, "last")]
    if page > 1:
        links.append(link(1, "first"))
    if links:
        ctx.response_headers["link"] = ", ".join(links)
    return list(items[(page - 1) * per_page : page * per_page])


def _signed_in(ctx: Ctx) -> User:
    assert ctx.user is not None
    user = ctx.gh.find_user(ctx.user.login)
    assert user is not None
    return user


def permission_flags(role: str) -> dict[str, bool]:
    """A role as the `permissions` booleans GitHub puts on a repository for a user."""
    rank = ROLES.index(role)
    return {
        "admin": rank >= ROLES.index("admin"),
        "maintain": rank >= ROLES.index("maintain"),
        "push": rank >= ROLES.index("write"),
        "triage": rank >= ROLES.index("triage"),
        "pull": rank >= ROLES.index("read"),
    }


@route("GET", "/user", "user")
def get_authenticated_user(ctx: Ctx) -> tuple[int, Any]:
    return 200, shapes.public_user(ctx.gh, _signed_in(ctx))


@route("GET", "/user/installations", "user")
def list_user_installations(ctx: Ctx) -> tuple[int, Any]:
    found = ctx.gh.user_installations(_signed_in(ctx).login)
    return 200, {
        "total_count": len(found),
        "installations": [shapes.installation(ctx.gh, i) for i in _page(ctx, found)],
    }


@route("GET", "/user/installations/{installation_id}/repositories", "user")
def list_user_installation_repositories(ctx: Ctx) -> tuple[int, Any]:
    login = _signed_in(ctx).login
    inst = ctx.gh.find_installation(ctx.int_arg("installation_id"))
    if inst is None or inst not in ctx.gh.user_installations(login):
        raise not_found()
    found = ctx.gh.user_repositories(login, inst.id)
    repos = []
    for repo, role in _page(ctx, found):
        body = shapes.repository(ctx.gh, repo)
        body["permissions"] = permission_flags(role)
        repos.append(body)
    return 200, {
        "total_count": len(found),
        "repository_selection": inst.repository_selection,
        "repositories": repos,
    }


@route("POST", "/app-manifests/{code}/conversions", "any")
def convert_manifest(ctx: Ctx) -> tuple[int, Any]:
    body = ctx.gh.convert_manifest(ctx.arg("code"))
    if body is None:
        raise not_found()
    return 201, body
