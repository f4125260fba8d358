"""Git smart HTTP at {web_url}/{owner}/{repo}.git/...: github.com's auth, git's own server."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from tests.fakes import github_git as gitcmd
from tests.fakes.github_auth import presented
from tests.fakes.github_state import Token, level_at_least

if TYPE_CHECKING:
    from tests.fakes.github import FakeGitHub

_CHALLENGE = {"WWW-Authenticate": 'Basic realm="GitHub"'}


def _text(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        message + "\n", status_code=status, headers=headers, media_type="text/plain; charset=utf-8"
    )


async def smart_http(gh: FakeGitHub, request: Request) -> Response:
    owner, name, rest = (request.path_params[k] for k in ("owner", "repo", "rest"))
    body = await request.body()
    kind, credential = presented(request.headers.get("authorization"))
    token = gh.find_token(credential) if kind == "installation" and credential else None
    call = gh.begin_call(request, path=request.url.path, auth=kind, token=token, body=None)
    await gh.apply_delays(request.method, request.url.path)
    response = await _serve(gh, request, owner, name, rest, body, token)
    call.status = response.status_code
    return response


async def _serve(
    gh: FakeGitHub,
    request: Request,
    owner: str,
    name: str,
    rest: str,
    body: bytes,
    token: Token | None,
) -> Response:
    fault = gh.take_fault(request.method, request.url.path)
    if fault is not None:
        return Response(
            fault.body if isinstance(fault.body, bytes) else b"injected failure\n",
            status_code=fault.status,
            headers=fault.headers,
        )
    if token is None:
        # git only sends credentials after a 401 challenge (unless http.extraHeader is set).
        return _text(401, "Invalid username or token.", _CHALLENGE)
    repo = gh.find_repo(f"{owner}/{name}")
    if (
        repo is None
        or token.installation_id != repo.installation_id
        or (token.repositories is not None and repo.full_name not in token.repositories)
        or not level_at_least(token.permissions.get("contents"), "read")
    ):
        return _text(404, "Repository not found.")
    service = request.query_params.get("service") if rest == "info/refs" else rest
    if service not in ("git-upload-pack", "git-receive-pack"):
        return _text(404, "Not Found")  # dumb HTTP is not offered, as on github.com
    if service == "git-receive-pack" and not level_at_least(
        token.permissions.get("contents"), "write"
    ):
        return _text(403, "Write access to repository not granted.")
    cgi = await gitcmd.http_backend(
        gh.root,
        method=request.method,
        path_info=f"/{repo.owner}/{repo.name}.git/{rest}",
        query=request.url.query,
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
        remote_user="x-access-token",
    )
    return Response(cgi.body, status_code=cgi.status, headers=dict(cgi.headers))
