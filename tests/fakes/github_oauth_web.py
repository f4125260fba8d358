"""The fake's browser-facing pages on web_url: OAuth authorize and token exchange, app manifests.

    GET  /login/oauth/authorize?client_id=…&redirect_uri=…&state=…
         signed in (fake.sign_in_as): 302 to redirect_uri?code=…&state=…; else a sign-in form
         ("Username", then "Authorize" or "Cancel") that POSTs back here.
    POST /login/oauth/access_token   code or grant_type=refresh_token exchange; form-encoded
         answer unless the request says Accept: application/json; errors are 200s, as on GitHub.
    POST /settings/apps/new?state=…, /organizations/{org}/settings/apps/new?state=…
         form field `manifest`: 302 to its redirect_url?code=…&state=… (no confirmation page);
         the App will belong to the organization, else the signed-in user, else fake.app_owner.

Every request is recorded in fake.calls (path as requested, `json` = the form fields) and
fake.fail()/fake.delay() apply to these paths too.
"""

from __future__ import annotations

import hmac
import html
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

if TYPE_CHECKING:
    from tests.fakes.github import FakeGitHub

Fields = dict[str, str]
WebHandler = Callable[["FakeGitHub", Request, Fields], Response]

_TROUBLE = (
    "https://docs.github.com/apps/managing-oauth-apps/"
    "troubleshooting-oauth-app-access-token-request-errors/"
)
_ERRORS = {
    "incorrect_client_credentials": (
        "The client_id and/or client_secret passed are incorrect.",
        _TROUBLE + "#incorrect-client-credentials",
    ),
    "redirect_uri_mismatch": (
        "The redirect_uri MUST match the registered callback URL for this application.",
        _TROUBLE + "#redirect-uri-mismatch2",
    ),
    "bad_verification_code": (
        "The code passed is incorrect or expired.",
        _TROUBLE + "#bad-verification-code",
    ),
    "bad_refresh_token": (
        "The refresh token passed is incorrect or expired.",
        "https://docs.github.com/apps/creating-github-apps/authenticating-with-a-github-app/"
        "refreshing-user-access-tokens",
    ),
    "unsupported_grant_type": (
        "The grant type is not supported.",
        _TROUBLE,
    ),
    "access_denied": (
        "The user has denied your application access.",
        "https://docs.github.com/apps/managing-oauth-apps/"
        "troubleshooting-authorization-request-errors/#access-denied",
    ),
}
_LEVELS = ("read", "write", "admin")


# --- plumbing --------------------------------------------------------------------------------


def _parse_body(request: Request, raw: bytes) -> Fields:
    if not raw:
        return {}
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            data = json.loads(raw)
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}
    return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))


def _endpoint(gh: FakeGitHub, handler: WebHandler) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        fields = _parse_body(request, await request.body())
        path = request.url.path
        call = gh.begin_call(request, path=path, auth="none", token=None, body=fields or None)
        await gh.apply_delays(request.method, path)
        fault = gh.take_fault(request.method, path)
        if fault is not None:
            body = fault.body
            if not isinstance(body, bytes):
                body = b"injected failure\n" if body is None else json.dumps(body).encode()
            response = Response(body, status_code=fault.status, headers=fault.headers)
        else:
            with gh.lock:
                response = handler(gh, request, {**dict(request.query_params), **fields})
        call.status = response.status_code
        return response

    return endpoint


def web_routes(gh: FakeGitHub) -> list[Route]:
    return [
        Route("/login/oauth/authorize", _endpoint(gh, authorize), methods=["GET", "POST"]),
        Route("/login/oauth/access_token", _endpoint(gh, access_token), methods=["POST"]),
        Route("/settings/apps/new", _endpoint(gh, new_app), methods=["POST"]),
        Route("/organizations/{org}/settings/apps/new", _endpoint(gh, new_app), methods=["POST"]),
    ]


def _html(status: int, title: str, body: str) -> Response:
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)} · GitHub</title></head>\n"
        f"<body><main><h1>{html.escape(title)}</h1>\n{body}\n</main></body></html>\n"
    )
    return Response(page, status_code=status, media_type="text/html; charset=utf-8")


def _redirect(url: str, **params: str | None) -> Response:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    target = f"{url}{'&' if '?' in url else '?'}{query}" if query else url
    return Response(status_code=302, headers={"location": target})


# --- /login/oauth/authorize ------------------------------------------------------------------


def _sign_in_form(fields: Fields, error: str | None = None) -> Response:
    hidden = "".join(
        f"<input type='hidden' name='{name}' value='{html.escape(fields[name], quote=True)}'>"
        for name in ("client_id", "redirect_uri", "state")
        if name in fields
    )
    flash = f"<p role='alert'>{html.escape(error)}</p>" if error else ""
    return _html(
        200,
        "Sign in to GitHub to continue",
        f"{flash}<form method='post' action='/login/oauth/authorize'>{hidden}"
        "<label for='login_field'>Username</label> "
        "<input type='text' id='login_field' name='login' autocomplete='username' autofocus> "
        "<button type='submit' name='authorize' value='1'>Authorize</button> "
        "<button type='submit' name='cancel' value='1'>Cancel</button></form>",
    )


def authorize(gh: FakeGitHub, request: Request, fields: Fields) -> Response:
    if fields.get("client_id") != gh.client_id:
        return _html(404, "Not Found", "<p>No GitHub App has this client_id.</p>")
    redirect_uri, state = fields.get("redirect_uri", ""), fields.get("state")
    if not redirect_uri.startswith(("http://", "https://")):
        return _html(400, "Bad request", "<p>redirect_uri is missing or not an http(s) URL.</p>")
    if gh.callback_urls and not any(redirect_uri.startswith(u) for u in gh.callback_urls):
        # GitHub sends the browser to the registered callback URL with the error.
        return _redirect(gh.callback_urls[0], **_error_params("redirect_uri_mismatch"), state=state)
    if request.method == "POST":
        if "cancel" in fields:
            return _redirect(redirect_uri, **_error_params("access_denied"), state=state)
        user = gh.find_user(fields.get("login", "").strip())
        if user is None or user.type != "User":
            return _sign_in_form(fields, "Incorrect username or password.")
        login = user.login
    elif gh.signed_in is not None:
        login = gh.signed_in
    else:
        return _sign_in_form(fields)
    return _redirect(redirect_uri, code=gh.issue_code(login, redirect_uri), state=state)


def _error_params(error: str) -> dict[str, str]:
    description, uri = _ERRORS[error]
    return {"error": error, "error_description": description, "error_uri": uri}


# --- /login/oauth/access_token ---------------------------------------------------------------


def _token_answer(request: Request, body: dict[str, Any]) -> Response:
    # Always 200, errors included; JSON only when asked for.
    if "application/json" in request.headers.get("accept", "").lower():
        return Response(json.dumps(body), media_type="application/json; charset=utf-8")
    return Response(
        urlencode({k: "" if v is None else v for k, v in body.items()}),
        media_type="application/x-www-form-urlencoded; charset=utf-8",
    )


def access_token(gh: FakeGitHub, request: Request, fields: Fields) -> Response:
    secret = fields.get("client_secret", "")
    if fields.get("client_id") != gh.client_id or not hmac.compare_digest(
        secret.encode(), gh.client_secret.encode()
    ):
        return _token_answer(request, _error_params("incorrect_client_credentials"))
    grant_type = fields.get("grant_type", "authorization_code")
    if grant_type == "refresh_token":
        token = gh.refresh_user_token(fields.get("refresh_token", ""))
        if token is None:
            return _token_answer(request, _error_params("bad_refresh_token"))
    elif grant_type == "authorization_code":
        code = gh.find_code(fields.get("code", ""))
        if code is None:
            return _token_answer(request, _error_params("bad_verification_code"))
        if fields.get("redirect_uri", code.redirect_uri) != code.redirect_uri:
            return _token_answer(request, _error_params("redirect_uri_mismatch"))
        code.used = True
        token = gh.mint_user_token(code.login)
    else:
        return _token_answer(request, _error_params("unsupported_grant_type"))
    body: dict[str, Any] = {"access_token": token.token}
    if token.expires_at is not None:
        body["expires_in"] = int(token.expires_at - token.created_at)
        body["refresh_token"] = token.refresh_token
        body["refresh_token_expires_in"] = int(gh.refresh_token_lifetime)
    body.update(token_type="bearer", scope="")
    return _token_answer(request, body)


# --- /settings/apps/new (app manifests) ------------------------------------------------------


def _manifest_problem(m: Any) -> str | None:
    if not isinstance(m, dict):
        return "the manifest must be a JSON object"
    hook = m.get("hook_attributes")
    if not isinstance(m.get("callback_urls", []), list):
        return "callback_urls must be a list of URLs"
    checks = [
        (isinstance(m.get("url"), str) and m["url"], "url is required"),
        (isinstance(hook, dict), "hook_attributes is required"),
        (
            isinstance(hook, dict) and isinstance(hook.get("url"), str) and hook["url"],
            "hook_attributes.url is required",
        ),
        (
            isinstance(m.get("redirect_url"), str) and m["redirect_url"],
            "redirect_url is required (the fake has no page to show the code on)",
        ),
        (
            isinstance(m.get("callback_urls", []), list)
            and all(isinstance(u, str) for u in m.get("callback_urls", [])),
            "callback_urls must be a list of URLs",
        ),
        (len(m.get("callback_urls") or []) <= 10, "callback_urls takes at most 10 URLs"),
        (
            isinstance(m.get("default_permissions", {}), dict)
            and all(v in _LEVELS for v in (m.get("default_permissions") or {}).values()),
            "default_permissions must map permissions to read, write or admin",
        ),
        (
            isinstance(m.get("default_events", []), list)
            and all(isinstance(e, str) for e in m.get("default_events", [])),
            "default_events must be a list of event names",
        ),
    ]
    for key in ("name", "description", "setup_url"):
        checks.append((isinstance(m.get(key, ""), str | None), f"{key} must be a string"))
    for key in ("public", "request_oauth_on_install", "setup_on_update"):
        checks.append((isinstance(m.get(key, False), bool), f"{key} must be a boolean"))
    if isinstance(hook, dict):
        checks.append((isinstance(hook.get("active", True), bool), "hook_attributes.active"))
    return next((problem for ok, problem in checks if not ok), None)


def new_app(gh: FakeGitHub, request: Request, fields: Fields) -> Response:
    try:
        manifest = json.loads(fields.get("manifest", ""))
    except ValueError:
        manifest = None
    problem = _manifest_problem(manifest) if manifest is not None else "manifest is not JSON"
    if problem is not None:
        return _html(422, "Invalid GitHub App manifest", f"<p>{html.escape(problem)}</p>")
    org = request.path_params.get("org")
    if org is not None:
        account = gh.find_user(org)
        if account is None or account.type != "Organization":
            return _html(404, "Not Found", "<p>No such organization.</p>")
        org = account.login
    owner = org or gh.signed_in or gh.app_owner
    record = gh.add_manifest(manifest, state=fields.get("state"), org=org, owner=owner)
    return _redirect(manifest["redirect_url"], code=record.code, state=record.state)
