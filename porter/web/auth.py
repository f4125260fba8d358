"""Sign in with GitHub (the App's OAuth web flow), and sign out.

`/login` sends the browser to GitHub with a random `state` that is also kept in a signed,
short-lived cookie; `/auth/callback` accepts the code only when GitHub hands back that same
state, so a forged callback cannot sign a victim in to someone else's account. The user's
tokens are sealed before they are stored; the session cookie carries only a random id.
"""

from __future__ import annotations

import base64
import hmac
import secrets

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from porter.errors import BadRequest, Forbidden, NotFound
from porter.web import cookies
from porter.web.access import ACCESS_TOKEN, REFRESH_TOKEN
from porter.web.render import render
from porter.web.services import services
from porter.web.viewer import (
    SESSION_COOKIE,
    audit,
    client_address,
    form_with_csrf,
    identify,
    set_cookie,
)

STATE_COOKIE = "porter_oauth"
STATE_AGE = 600  # GitHub's codes live ten minutes too


def safe_next(target: str | None) -> str:
    """Only a path on this site: never `//host` or `https://…`, which would make Porter an
    open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target[:512]


def _pack(state: str, target: str) -> str:
    return base64.urlsafe_b64encode(f"{state}\n{target}".encode()).decode().rstrip("=")


def _unpack(packed: str) -> tuple[str, str]:
    raw = base64.urlsafe_b64decode(packed + "=" * (-len(packed) % 4)).decode()
    state, _, target = raw.partition("\n")
    return state, target


def callback_url(public_url: str) -> str:
    return public_url.rstrip("/") + "/auth/callback"


async def login(request: Request) -> Response:
    svc = services(request)
    target = safe_next(request.query_params.get("next"))
    if svc.users is None:
        viewer = await identify(request)
        return render(request, viewer, "signin.html", next=target, status=503)
    state = secrets.token_urlsafe(24)
    response = RedirectResponse(svc.users.authorize_url(
        redirect_uri=callback_url(svc.settings.public_url), state=state), 302)
    set_cookie(response, svc, STATE_COOKIE, _pack(state, target), max_age=STATE_AGE)
    return response


async def callback(request: Request) -> Response:
    svc = services(request)
    if svc.users is None:
        raise NotFound("sign-in is not configured")
    given = request.query_params.get("state", "")
    code = request.query_params.get("code", "")
    packed = cookies.unsign(svc.cookie_key, request.cookies.get(STATE_COOKIE),
                            now=svc.clock(), max_age=STATE_AGE)
    try:
        expected, target = _unpack(packed) if packed else ("", "/")
    except (ValueError, UnicodeDecodeError):
        expected, target = "", "/"
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Forbidden("this sign-in did not start here, or took too long: sign in again")
    if not code or len(code) > 256:
        raise BadRequest(request.query_params.get("error_description")
                         or "GitHub sent no code")
    tokens = await svc.users.exchange(code, redirect_uri=callback_url(svc.settings.public_url))
    me = await svc.users.me(tokens.access)
    user_id, login_name = int(me["id"]), str(me["login"])
    secrets_ = {ACCESS_TOKEN: tokens.access}
    if tokens.refresh:
        secrets_[REFRESH_TOKEN] = tokens.refresh
    session_id = secrets.token_urlsafe(32)
    hours = svc.settings.session_hours
    await svc.store.sign_in(
        user_id=user_id, login=login_name, name=me.get("name"),
        avatar_url=me.get("avatar_url"), secrets=svc.vault.sealed(user_id, secrets_),
        token_expires_at=tokens.expires_at, session_hash=cookies.digest(session_id),
        csrf=secrets.token_urlsafe(32), session_expires_at=svc.clock() + hours * 3600)
    svc.access.forget(user_id)
    await svc.store.audit(actor=login_name, actor_id=user_id, action="sign-in",
                          source="page", address=client_address(request))
    response = RedirectResponse(safe_next(target), 303)
    set_cookie(response, svc, SESSION_COOKIE, session_id, max_age=hours * 3600)
    set_cookie(response, svc, STATE_COOKIE, None, max_age=0)
    return response


async def logout(request: Request) -> Response:
    svc = services(request)
    viewer = await identify(request)
    await form_with_csrf(request, viewer)
    if viewer.session_hash is not None and viewer.user is not None:
        await svc.store.end_session(viewer.session_hash)
        await audit(request, viewer, "sign-out")
    response = RedirectResponse("/", 303)
    set_cookie(response, svc, SESSION_COOKIE, None, max_age=0)
    return response


routes = [
    Route("/login", login, methods=["GET"]),
    Route("/auth/callback", callback, methods=["GET"]),
    Route("/logout", logout, methods=["POST"]),
]
