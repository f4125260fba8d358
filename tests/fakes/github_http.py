"""The request pipeline of every fake endpoint: auth, faults, recording, GitHub-style answers."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from starlette.requests import Request
from starlette.responses import Response

from tests.fakes import github_shapes as shapes
from tests.fakes.github_auth import presented, verify_jwt
from tests.fakes.github_state import AuthKind, Call, Repo, Token, UserToken, level_at_least

if TYPE_CHECKING:
    from tests.fakes.github import FakeGitHub

API_PREFIX = "/api/v3"
# jwt: the App; installation: installation tokens; user: user access tokens (ghu_); any: all,
# and no credential at all.
RouteAuth = Literal["jwt", "installation", "user", "any"]


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers or {}


def not_found() -> ApiError:
    return ApiError(404, "Not Found")


def validation_failed(errors: list[dict[str, Any]]) -> ApiError:
    return ApiError(422, "Validation Failed", errors=errors)


@dataclass
class Ctx:
    gh: FakeGitHub
    request: Request
    auth: AuthKind
    token: Token | None
    body: Any
    params: dict[str, str] = field(default_factory=dict)
    user: UserToken | None = None  # the user access token, when auth == "user"
    response_headers: dict[str, str] = field(default_factory=dict)  # e.g. Link, for pagination

    def arg(self, name: str) -> str:
        return self.params[name]

    def int_arg(self, name: str) -> int:
        try:
            return int(self.params[name])
        except ValueError:
            raise not_found() from None

    def field(
        self, name: str, kind: type | tuple[type, ...] = str, *, required: bool = True
    ) -> Any:
        body = self.body if isinstance(self.body, dict) else {}
        if name not in body or body[name] is None:
            if required:
                raise validation_failed([{"resource": "", "field": name, "code": "missing_field"}])
            return None
        if not isinstance(body[name], kind):
            raise ApiError(
                422, f"Invalid request.\n\nFor '{name}', {body[name]!r} is not a valid value."
            )
        return body[name]

    def repo(self) -> Repo:
        """The path's repository if this token may see it (else 404, as GitHub answers, not 403)."""
        repo = self.gh.find_repo(f"{self.arg('owner')}/{self.arg('repo')}")
        if repo is None:
            raise not_found()
        if self.auth == "installation":
            token = self.token
            assert token is not None
            if token.installation_id != repo.installation_id or (
                token.repositories is not None and repo.full_name not in token.repositories
            ):
                raise not_found()
        return repo

    def require(self, *alternatives: tuple[str, str]) -> None:
        """403 unless the token holds one of the (permission, level) alternatives."""
        if self.auth == "user":
            raise ApiError(403, "Resource not accessible by integration")
        if self.token is None:
            return
        for name, level in alternatives:
            if level_at_least(self.token.permissions.get(name), level):
                return
        accepted = "; ".join(f"{name}={level}" for name, level in alternatives)
        raise ApiError(
            403,
            "Resource not accessible by integration",
            headers={"x-accepted-github-permissions": accepted},
        )


Handler = Callable[[Ctx], tuple[int, Any]]


def _resolve_auth(
    gh: FakeGitHub, header: str | None
) -> tuple[AuthKind, Token | UserToken | None, str | None]:
    """(kind, token, complaint): complaint is None when the presented credential is valid."""
    kind, credential = presented(header)
    if kind == "none" or credential is None:
        return "none", None, "Requires authentication"
    if kind == "jwt":
        complaint = verify_jwt(
            credential,
            public_key=gh.public_key_pem,
            app_id=gh.app_id,
            client_id=gh.client_id,
            now=gh.now(),
        )
        return "jwt", None, complaint
    if kind == "user":
        user = gh.find_user_token(credential)  # expired ones are gone: GitHub's 401
        return "user", user, None if user else "Bad credentials"
    token = gh.find_token(credential)
    if token is None:
        return "installation", None, "Bad credentials"
    return "installation", token, None


def _rate_headers(
    gh: FakeGitHub, kind: AuthKind, token: Token | UserToken | None
) -> dict[str, str]:
    limit = 5000 if kind != "none" else 60
    # The current call is already recorded, so it counts itself.
    token_id = token.id if token else None
    used = sum(1 for c in gh.calls if c.auth == kind and c.token_id == token_id)
    reset = int(gh.now()) // 3600 * 3600 + 3600
    return {
        "x-ratelimit-limit": str(limit),
        "x-ratelimit-remaining": str(max(limit - used, 0)),
        "x-ratelimit-reset": str(reset),
        "x-ratelimit-used": str(used),
        "x-ratelimit-resource": "core",
    }


def _json_response(status: int, body: Any, headers: dict[str, str]) -> Response:
    if status == 204 or body is None:
        return Response(status_code=status, headers=headers)
    if isinstance(body, bytes):
        return Response(body, status_code=status, headers=headers)
    return Response(
        json.dumps(body).encode(),
        status_code=status,
        headers=headers,
        media_type="application/json; charset=utf-8",
    )


def _fault_body(gh: FakeGitHub, status: int, body: Any, token: Token | UserToken | None) -> Any:
    if body is not None:
        return body
    if status in (403, 429):
        who = "127.0.0.1"
        if isinstance(token, Token):
            who = f"installation ID {token.installation_id}"
        return shapes.error(status, f"API rate limit exceeded for {who}.")
    messages = {500: "Server Error", 502: "Server Error", 503: "Service Unavailable"}
    return shapes.error(status, messages.get(status, "Injected failure"))


async def dispatch(
    gh: FakeGitHub,
    request: Request,
    *,
    handler: Handler | None,
    auth: RouteAuth,
) -> Response:
    """Run one REST request. handler=None is the catch-all: GitHub's JSON 404."""
    raw = await request.body()
    path = request.url.path.removeprefix(API_PREFIX) or "/"
    body: Any = None
    parse_error = False
    if raw:
        try:
            body = json.loads(raw)
        except ValueError:
            parse_error = True
    kind, token, complaint = _resolve_auth(gh, request.headers.get("authorization"))
    call = gh.begin_call(request, path=path, auth=kind, token=token, body=body)
    await gh.apply_delays(request.method, path)
    headers = {
        "x-github-request-id": secrets.token_hex(8).upper(),
        "x-github-media-type": "github.v3; format=json",
        "x-github-api-version-selected": request.headers.get("x-github-api-version", "2022-11-28"),
        **_rate_headers(gh, kind, token),
    }
    fault = gh.take_fault(request.method, path)
    if fault is not None and fault.lost:
        _handle(gh, request, handler, auth, kind, token, complaint, body, parse_error, headers)
    if fault is not None:
        headers.update(fault.headers)
        status, payload = fault.status, _fault_body(gh, fault.status, fault.body, token)
    else:
        status, payload = _handle(
            gh, request, handler, auth, kind, token, complaint, body, parse_error, headers
        )
    call.status = status
    return _json_response(status, payload, headers)


def _handle(
    gh: FakeGitHub,
    request: Request,
    handler: Handler | None,
    auth: RouteAuth,
    kind: AuthKind,
    token: Token | UserToken | None,
    complaint: str | None,
    body: Any,
    parse_error: bool,
    headers: dict[str, str],
) -> tuple[int, Any]:
    try:
        if handler is None:
            raise not_found()
        if auth == "jwt" and (kind != "jwt" or complaint):
            raise ApiError(
                401,
                complaint
                if kind == "jwt" and complaint
                else "A JSON web token could not be decoded",
            )
        if auth == "installation" and kind == "user" and not complaint:
            raise _user_token_refused(request.url.path)
        if auth == "installation" and (kind != "installation" or complaint):
            raise ApiError(401, complaint or "Bad credentials")
        if auth == "user" and (kind != "user" or complaint):
            if kind in ("jwt", "installation") and not complaint:
                raise ApiError(403, "Resource not accessible by integration")
            raise ApiError(401, complaint or "Requires authentication")
        if auth == "any" and kind != "none" and complaint:
            raise ApiError(401, complaint)
        if parse_error:
            raise ApiError(400, "Problems parsing JSON")
        ctx = Ctx(
            gh,
            request,
            kind if complaint is None else "none",
            token if isinstance(token, Token) else None,
            body,
            dict(request.path_params),
            user=token if isinstance(token, UserToken) and complaint is None else None,
        )
        with gh.lock:
            status, payload = handler(ctx)
        headers.update(ctx.response_headers)
        return status, payload
    except ApiError as exc:
        headers.update(exc.headers)
        return exc.status, shapes.error(exc.status, exc.message, exc.errors)


def _user_token_refused(path: str) -> ApiError:
    """A valid user token on an installation-token route. Repository routes, which GitHub opens
    to user tokens too, are not modelled for them: the fake refuses (fail closed) and says so."""
    if path.removeprefix(API_PREFIX).startswith("/installation/"):
        return ApiError(
            403,
            "You must authenticate with an installation access token in order to list "
            "repositories for an installation.",
        )
    return ApiError(
        403,
        "Resource not accessible by integration (the fake does not model user access "
        "tokens on this route)",
    )


def call_record(
    request: Request,
    *,
    path: str,
    auth: AuthKind,
    token: Token | UserToken | None,
    body: Any,
    now: float,
) -> Call:
    return Call(
        method=request.method,
        path=path,
        query=dict(request.query_params),
        auth=auth,
        token_id=token.id if token else None,
        json=body,
        status=0,
        time=now,
        headers={k: v for k, v in request.headers.items() if k != "authorization"},
    )
