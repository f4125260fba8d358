"""Who is asking: a signed-in user, an admin (by login or by the admin token), or nobody.

Every page, live stream and API call starts here, and every task it shows passes `sees`. A user
sees the repositories GitHub says they reach through the App (porter/web/access.py); admins see
everything. Forms carry a CSRF token tied to the session (or, before sign-in, to a signed
anonymous cookie), checked in constant time.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from porter.errors import Forbidden, Unauthorized
from porter.models import User
from porter.web import cookies
from porter.web.services import Services, services

SESSION_COOKIE = "porter_session"
ANONYMOUS_COOKIE = "porter_anon"
ANONYMOUS_AGE = 24 * 3600.0


@dataclass(frozen=True)
class Viewer:
    user: User | None
    admin: bool
    csrf: str
    # full_name → permission; None: every repository (admins).
    repos: Mapping[str, str] | None
    via: str  # session | token | anonymous
    session_hash: str | None = None
    new_anonymous: str | None = None  # a fresh anonymous cookie to set
    # Why `repos` may be short of what GitHub would say (porter/web/access.py Reach).
    problem: str | None = None

    @property
    def signed_in(self) -> bool:
        return self.via != "anonymous"

    @property
    def name(self) -> str:
        if self.user is not None:
            return self.user.login
        return "admin-token" if self.via == "token" else "anonymous"

    def sees(self, repo: str) -> bool:
        return self.repos is None or repo in self.repos

    def visible(self) -> tuple[str, ...] | None:
        """The repositories to filter queries by; None: no filter."""
        return None if self.repos is None else tuple(sorted(self.repos))

    def require_signed_in(self) -> None:
        if not self.signed_in:
            raise Unauthorized("sign in with GitHub first")

    def require_admin(self) -> None:
        self.require_signed_in()
        if not self.admin:
            raise Forbidden("only Porter's admins may see this")


async def identify(request: Request) -> Viewer:
    svc = services(request)
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() == "bearer" and given.strip():
        token = svc.settings.admin_token
        if token is None or not hmac.compare_digest(given.strip().encode(),
                                                    token.get().encode()):
            raise Unauthorized("missing or wrong bearer token")
        return Viewer(None, True, "", None, "token")
    signed = cookies.unsign(svc.cookie_key, request.cookies.get(SESSION_COOKIE),
                            now=svc.clock(), max_age=svc.settings.session_hours * 3600.0)
    if signed is not None:
        viewer = await _from_session(svc, cookies.digest(signed))
        if viewer is not None:
            return viewer
    return _anonymous(svc, request)


async def _from_session(svc: Services, session_hash: str) -> Viewer | None:
    session = await svc.store.session(session_hash)
    user = await svc.store.get_user(session.user_id) if session is not None else None
    if session is None or user is None:
        return None
    admin = user.login.lower() in svc.settings.admin_logins
    if admin:
        return Viewer(user, True, session.csrf, None, "session", session_hash=session_hash)
    reach = await svc.access.reach(user)
    return Viewer(user, False, session.csrf, reach.repos, "session", session_hash=session_hash,
                  problem=reach.problem)


def anonymous_viewer(request: Request) -> Viewer:
    return _anonymous(services(request), request)


def _anonymous(svc: Services, request: Request) -> Viewer:
    anonymous = cookies.unsign(svc.cookie_key, request.cookies.get(ANONYMOUS_COOKIE),
                               now=svc.clock(), max_age=ANONYMOUS_AGE)
    fresh = None
    if anonymous is None:
        anonymous = fresh = secrets.token_urlsafe(18)
    csrf = hmac.new(svc.cookie_key, b"anonymous csrf\0" + anonymous.encode(),
                    "sha256").hexdigest()
    return Viewer(None, False, csrf, {}, "anonymous", new_anonymous=fresh)


def check_csrf(viewer: Viewer, given: str | None) -> None:
    """Refuse a state-changing request from a browser that did not get its token from us.
    Bearer-token calls carry no cookie a third-party page could ride on, so they pass."""
    if viewer.via == "token":
        return
    if not given or not viewer.csrf or not hmac.compare_digest(given.encode(),
                                                               viewer.csrf.encode()):
        raise Forbidden("the form's CSRF token is missing or wrong: reload the page and "
                        "try again")


async def form_with_csrf(request: Request, viewer: Viewer) -> dict[str, str]:
    """The submitted form's text fields, once its CSRF token has been checked."""
    form = await request.form(max_files=0, max_fields=50, max_part_size=64 * 1024)
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    check_csrf(viewer, fields.get("csrf") or request.headers.get("x-csrf-token"))
    return fields


def set_cookie(response: Response, svc: Services, name: str, value: str | None, *,
               max_age: int) -> None:
    """Signed, HttpOnly, SameSite=Lax, and Secure when Porter is served over https."""
    if value is None:
        response.delete_cookie(name, path="/", httponly=True, samesite="lax",
                               secure=svc.secure_cookies)
        return
    response.set_cookie(name, cookies.sign(svc.cookie_key, value, now=svc.clock()),
                        max_age=max_age, path="/", httponly=True, samesite="lax",
                        secure=svc.secure_cookies)


def remember_anonymous(response: Response, svc: Services, viewer: Viewer) -> None:
    if viewer.new_anonymous is not None:
        set_cookie(response, svc, ANONYMOUS_COOKIE, viewer.new_anonymous,
                   max_age=int(ANONYMOUS_AGE))


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


async def audit(request: Request, viewer: Viewer, action: str, target: str = "", *,
                source: str = "page", detail: dict[str, object] | None = None) -> None:
    """Record what a person did, with who, when and from where (never a secret's value)."""
    await services(request).store.audit(
        actor=viewer.name, actor_id=viewer.user.id if viewer.user else None, action=action,
        target=target, source=source, address=client_address(request), detail=detail)
