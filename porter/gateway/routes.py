"""The LLM gateway's routes: `/llm/{provider}/{path}`, the base URL an agent is given.

Every check is made before anything leaves Porter, in this order: a known provider, an allowed
method and API path (404 otherwise, decided on the raw path), a run token that belongs to a live
run (401), a key that run may use for this provider (403), a request body within bounds (413),
the budget (402). A refusal is answered in the provider's own error shape, so the agent's SDK
reports it as it would the provider's, and nothing is forwarded.

`GET` and `HEAD` on the base URL itself (`/llm/anthropic`, with or without a trailing slash)
are answered here, 200 and empty: Claude Code probes `HEAD /` of its base URL before its first
call (docs/platform-notes.md §E.2), with or without a token.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from porter.errors import PorterError
from porter.gateway.auth import key_for, live_run
from porter.gateway.providers import PROVIDERS, Provider, api_path, run_token
from porter.gateway.proxy import Gateway, UpstreamFailed
from porter.log_context import bound
from porter.tokens import GATEWAY_SUBKEY
from porter.web.services import services

FORWARDED = frozenset({"GET", "HEAD", "POST"})
# Every method reaches the handler, so any other one gets the provider's 405, not Porter's.
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _unknown() -> Response:
    return JSONResponse({"error": "no such LLM provider"}, 404)


def refusal(provider: Provider, status: int, message: str,
            headers: dict[str, str] | None = None) -> Response:
    return Response(provider.error_body(status, message), status, headers=headers,
                    media_type="application/json")


async def probe(request: Request) -> Response:
    if request.path_params["provider"] not in PROVIDERS:
        return _unknown()
    return Response(status_code=200)


async def call(request: Request) -> Response:
    provider = PROVIDERS.get(request.path_params["provider"])
    if provider is None:
        return _unknown()
    if request.method not in FORWARDED:
        return refusal(provider, 405, f"{request.method} is not forwarded")
    # The path as it arrived, not Starlette's decoded one; some servers put the query in it.
    raw = request.scope.get("raw_path") or request.scope["path"].encode()
    path = api_path(raw.split(b"?", 1)[0], provider)
    if path is None:
        return refusal(provider, 404, f"not a {provider.name} API path Porter forwards")
    token, query = run_token(provider, request.headers,
                             request.scope["query_string"].decode("latin-1"))
    svc = services(request)
    gateway: Gateway = request.app.state.gateway
    try:
        run, task = await live_run(svc.store, svc.runtime.keyring.derive(GATEWAY_SUBKEY), token,
                                   gateway.task_of)
        with bound(run_id=run.id, task_id=task.id):
            key = await key_for(svc.runtime.credentials, task, provider)
            answer = await gateway.forward(request, provider, path, query, run=run, task=task,
                                           key=key)
        return _Bound(answer, run_id=run.id, task_id=task.id)
    except PorterError as exc:
        return refusal(provider, exc.status_code, exc.message,
                       dict(getattr(exc, "headers", None) or {}))
    except UpstreamFailed as exc:
        return refusal(provider, exc.status, exc.message)


class _Bound(Response):
    """`inner`, sent with the run's ids bound: Starlette sends a response after the endpoint
    has returned, and a streamed answer logs (a provider breaking off) while it is sent."""

    def __init__(self, inner: Response, **ids: object) -> None:
        self.inner = inner
        self.ids = ids
        self.status_code = inner.status_code
        self.background = None
        self.raw_headers = inner.raw_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with bound(**self.ids):
            await self.inner(scope, receive, send)


routes: list[BaseRoute] = [
    Route("/llm/{provider}", probe, methods=["GET", "HEAD"]),
    Route("/llm/{provider}/", probe, methods=["GET", "HEAD"]),
    Route("/llm/{provider}/{path:path}", call, methods=ALL_METHODS),
]
