"""`/setup`: register Porter's GitHub App through GitHub's manifest flow, and diagnostics.

Before an App exists nobody can sign in, so the page is open to a browser on Porter's own host
(loopback) and to whoever types the admin token; once the App is set, only admins see it. The
manifest goes to GitHub in a form the person submits; GitHub sends them back to
`/setup/callback` with a code (and the state this browser was given), which Porter exchanges for
the App's id, key and secrets, seals them in the database, and starts using at once.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import secrets
from urllib.parse import quote, urlsplit

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from porter import manifest
from porter.app_credentials import APP_SLUG, APP_URL, save_conversion, stored_app
from porter.diagnostics import diagnose
from porter.errors import BadRequest, Forbidden, GitHubError
from porter.store.users import APP_OWNER
from porter.web import cookies
from porter.web.render import redirect, render
from porter.web.services import Services, services
from porter.web.viewer import Viewer, audit, form_with_csrf, identify, set_cookie

STATE_COOKIE = "porter_setup"
GRANT_COOKIE = "porter_setup_grant"
STATE_AGE = 3600  # GitHub: the whole manifest flow must finish within an hour
_SPENT = cookies.Spent(STATE_AGE)  # each state registers at most one App


def _configured(svc: Services) -> bool:
    settings = svc.settings
    return bool(settings.github_app_id and (settings.github_private_key
                                            or settings.github_private_key_file))


def _loopback(request: Request, svc: Services) -> bool:
    """A browser on this host, asking for this host by a name that is this host's. The name
    matters: a page elsewhere whose domain an attacker re-points at 127.0.0.1 (DNS rebinding)
    comes from this host's browser too, but asks for the attacker's name."""
    try:
        local = ipaddress.ip_address(request.client.host if request.client else "").is_loopback
    except ValueError:
        return False
    names = {"localhost", "127.0.0.1", "::1", urlsplit(svc.settings.public_url).hostname}
    return local and _host_name(request) in names - {None}


def _host_name(request: Request) -> str | None:
    """The Host header's name, without its port (None when it is not a host name)."""
    try:
        return urlsplit("//" + request.headers.get("host", "")).hostname
    except ValueError:
        return None


def _granted(request: Request, svc: Services) -> bool:
    return cookies.unsign(svc.cookie_key, request.cookies.get(GRANT_COOKIE),
                          now=svc.clock(), max_age=STATE_AGE) == "granted"


async def _allowed(request: Request) -> Viewer:
    """Admins, and a browser that gave the admin token; before the App exists, also a
    browser on this host."""
    svc = services(request)
    viewer = await identify(request)
    # The grant proves the admin token, so it also shows the finished setup.
    if viewer.admin or _granted(request, svc):
        return viewer
    if _configured(svc):
        viewer.require_admin()
    if _loopback(request, svc):
        return viewer
    raise Forbidden("setting Porter up needs PORTER_ADMIN_TOKEN: enter it on /setup/unlock, "
                    "or open /setup at localhost on the host Porter runs on")


async def setup(request: Request) -> Response:
    svc = services(request)
    try:
        viewer = await _allowed(request)
    except Forbidden:
        if _configured(svc):
            raise
        return render(request, await identify(request), "setup_unlock.html", status=403,
                      token_set=svc.settings.admin_token is not None)
    name = request.query_params.get("name", "").strip()
    org = request.query_params.get("org", "").strip() or None
    form_url = form_manifest = None
    response_state = None
    if name and not _configured(svc):
        try:
            response_state = secrets.token_urlsafe(24)
            form_manifest = json.dumps(manifest.app_manifest(svc.settings, name=name))
            form_url = manifest.manifest_form_url(svc.settings, org, response_state)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
    stored = await stored_app(svc.vault)
    checks = await diagnose(svc.settings, store=svc.store)
    response = render(
        request, viewer, "setup.html", configured=_configured(svc), checks=checks,
        app_name=name or "Porter", org=org or "", form_url=form_url, form_manifest=form_manifest,
        install_url=_install_url(svc, stored), done=request.query_params.get("done") == "1")
    if response_state is not None:
        set_cookie(response, svc, STATE_COOKIE, response_state, max_age=STATE_AGE)
    return response


def _install_url(svc: Services, stored: dict[str, str]) -> str | None:
    """Where to install the App. The App's address came from GitHub's answer: a link is made of
    it only when it is on GitHub, so no stored value can become a `javascript:` link."""
    github = svc.settings.github_url.rstrip("/") + "/"
    if stored.get(APP_URL, "").startswith(github):
        return stored[APP_URL].rstrip("/") + "/installations/new"
    if stored.get(APP_SLUG):
        return f"{svc.settings.github_url}/apps/{quote(stored[APP_SLUG])}/installations/new"
    return None


async def unlock(request: Request) -> Response:
    """Trade the admin token for a short-lived signed cookie that opens /setup."""
    svc = services(request)
    viewer = await identify(request)
    fields = await form_with_csrf(request, viewer)
    token = svc.settings.admin_token
    given = fields.get("token", "")
    if token is None or not hmac.compare_digest(given.encode(), token.get().encode()):
        raise Forbidden("that is not Porter's admin token")
    response = redirect(request, "/setup")
    set_cookie(response, svc, GRANT_COOKIE, "granted", max_age=STATE_AGE)
    return response


async def callback(request: Request) -> Response:
    svc = services(request)
    viewer = await _allowed(request)
    if _configured(svc):
        raise BadRequest("the GitHub App is already set up")
    expected = cookies.unsign(svc.cookie_key, request.cookies.get(STATE_COOKIE),
                              now=svc.clock(), max_age=STATE_AGE)
    given = request.query_params.get("state", "")
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()) \
            or not _SPENT.take(expected, now=svc.clock()):
        raise Forbidden("this App registration did not start in this browser: start again "
                        "from /setup")
    code = request.query_params.get("code", "")
    if not code or len(code) > 256 or not code.replace("-", "").replace("_", "").isalnum():
        raise BadRequest("GitHub sent no usable code")
    conversion = await _convert(svc, code)
    await save_conversion(svc.vault, conversion)
    await audit(request, viewer, "app.setup", str(conversion.get("slug") or conversion["id"]))
    if svc.reconfigure is not None:
        await svc.reconfigure()
    response = redirect(request, "/setup?done=1")
    set_cookie(response, svc, STATE_COOKIE, None, max_age=0)
    return response


async def _convert(svc: Services, code: str) -> dict[str, object]:
    url = f"{svc.settings.github_api_url}/app-manifests/{quote(code)}/conversions"
    try:
        async with httpx.AsyncClient(timeout=15, transport=svc.github_transport) as client:
            answer = await client.post(url, headers={"Accept": "application/vnd.github+json"})
    except httpx.HTTPError as exc:
        raise GitHubError(f"could not reach GitHub ({type(exc).__name__})") from None
    if answer.status_code != 201:
        raise GitHubError(f"GitHub did not convert the manifest (HTTP {answer.status_code}): "
                          "codes work once and for an hour; start again from /setup")
    try:
        body = answer.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not all(body.get(k) for k in ("id", "client_id",
                                                                   "client_secret", "pem")):
        raise GitHubError("GitHub's manifest conversion lacks the App's credentials")
    return body


async def forget(request: Request) -> Response:
    """Remove stored App credentials (admins), e.g. after deleting the App on GitHub."""
    svc = services(request)
    viewer = await identify(request)
    viewer.require_admin()
    await form_with_csrf(request, viewer)
    await svc.vault.put(APP_OWNER, dict.fromkeys(await stored_app(svc.vault)))
    await audit(request, viewer, "app.forget")
    if svc.reconfigure is not None:
        await svc.reconfigure()
    return redirect(request, "/setup")


routes: list[BaseRoute] = [
    Route("/setup", setup, methods=["GET"]),
    Route("/setup/unlock", unlock, methods=["POST"]),
    Route("/setup/callback", callback, methods=["GET"]),
    Route("/setup/forget", forget, methods=["POST"]),
]
