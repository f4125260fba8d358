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
from starlette.responses import Response
from starlette.routing import Route

from porter.errors import BadRequest, Forbidden, NotFound
from porter.web import cookies
from porter.web.access import ACCESS_TOKEN, REFRESH_TOKEN
from porter.web.render import redirect, render
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
MAX_NEXT = 512  # bytes of the path to return to after signing in
# What the sign-in page says when GitHub sends the person back with an error instead of a code.
# Keyed by GitHub's error codes: its `error_description` is never shown, since anyone can write
# any text into a link to /auth/callback.
REFUSALS = {
    "access_denied": "You cancelled signing in at GitHub, so you are not signed in.",
    "redirect_uri_mismatch": "GitHub refused Porter's callback address: the GitHub App's "
                             "callback URL must be this Porter's /auth/callback.",
    "application_suspended": "Porter's GitHub App is suspended: ask its owner to restore it.",
}
REFUSED = "GitHub did not sign you in. Try again."
# OAuth states already used in this process: each works once.
_SPENT = cookies.Spent(STATE_AGE)


def safe_next(target: str | None) -> str:
    """Only a path on this site: never `//host` or `https://…`, which would make Porter an
    open redirect. A path too long to carry in the state cookie is dropped, not cut: a cut
    query string would be a different page, or a 400."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target if len(target.encode()) <= MAX_NEXT else "/"


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
    response = redirect(request, svc.users.authorize_url(
        redirect_uri=callback_url(svc.settings.public_url), state=state), 302)
    set_cookie(response, svc, STATE_COOKIE, _pack(state, target), max_age=STATE_AGE)
    return response


async def callback(request: Request) -> Response:
    svc = services(request)
    if svc.users is None:
        raise NotFound("sign-in is not configured")
    packed = cookies.unsign(svc.cookie_key, request.cookies.get(STATE_COOKIE),
                            now=svc.clock(), max_age=STATE_AGE)
    try:
        expected, target = _unpack(packed) if packed else ("", "/")
    except (ValueError, UnicodeDecodeError):
        expected, target = "", "/"
    given = request.query_params.get("state", "")
    ours = bool(expected) and hmac.compare_digest(given.encode(), expected.encode())
    error = request.query_params.get("error")
    if error:  # the person pressed Cancel at GitHub, or the App is misconfigured
        response = render(request, await identify(request), "signin.html",
                          next=safe_next(target), notice=REFUSALS.get(error, REFUSED),
                          status=200 if error == "access_denied" else 400)
        if ours:  # a link anyone made must not end a sign-in under way
            _SPENT.take(expected, now=svc.clock())
            set_cookie(response, svc, STATE_COOKIE, None, max_age=0)
        return response
    if not ours or not _SPENT.take(expected, now=svc.clock()):
        raise Forbidden("this sign-in did not start here, or took too long: sign in again")
    code = request.query_params.get("code", "")
    if not code or len(code) > 256:
        raise BadRequest("GitHub sent no code: sign in again")
    tokens = await svc.users.exchange(code, redirect_uri=callback_url(svc.settings.public_url))
    me = await svc.users.me(tokens.access)
    user_id, login_name = int(me["id"]), str(me["login"])
    secrets_ = {ACCESS_TOKEN: tokens.access}
    if tokens.refresh:
        secrets_[REFRESH_TOKEN] = tokens.refresh
    session_id = secrets.token_urlsafe(32)
    hours = svc.settings.session_hours
    # A session this browser already had ends here: signing in again (maybe as someone else)
    # must not leave a copy of the old cookie working.
    previous = cookies.unsign(svc.cookie_key, request.cookies.get(SESSION_COOKIE),
                              now=svc.clock(), max_age=hours * 3600.0)
    await svc.store.sign_in(
        user_id=user_id, login=login_name, name=me.get("name"),
        avatar_url=me.get("avatar_url"), secrets=svc.vault.sealed(user_id, secrets_),
        token_expires_at=tokens.expires_at, session_hash=cookies.digest(session_id),
        csrf=secrets.token_urlsafe(32), session_expires_at=svc.clock() + hours * 3600)
    if previous is not None:
        await svc.store.end_session(cookies.digest(previous))
    svc.access.forget(user_id)
    await svc.store.audit(actor=login_name, actor_id=user_id, action="sign-in",
                          source="page", address=client_address(request))
    response = redirect(request, safe_next(target))
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
    response = redirect(request, "/")
    set_cookie(response, svc, SESSION_COOKIE, None, max_age=0)
    return response


routes = [
    Route("/login", login, methods=["GET"]),
    Route("/auth/callback", callback, methods=["GET"]),
    Route("/logout", logout, methods=["POST"]),
]
