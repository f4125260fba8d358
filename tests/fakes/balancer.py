"""A load balancer in front of several Porter replicas, as Fly's proxy is in front of a Fly app:
each request goes to the next replica in turn, and one that refuses the connection (it is down)
is passed over for the next. A request a replica accepted and then dropped (killed mid-answer)
is answered 502, as a real proxy does; the machine's own retries take it from there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

# Hop-by-hop headers and those httpx recomputes: never copied across.
_DROPPED = {"host", "connection", "content-length", "transfer-encoding", "keep-alive",
            "content-encoding"}
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]


class Balancer:
    def __init__(self, upstreams: Sequence[str]) -> None:
        self.upstreams = list(upstreams)
        self.answered: Counter[str] = Counter()  # upstream URL → requests it answered
        self._next = 0
        self._client = httpx.AsyncClient(timeout=120)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._forward, methods=METHODS)])

    async def _forward(self, request: Request) -> Response:
        body = await request.body()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROPPED}
        start, self._next = self._next, self._next + 1
        for offset in range(len(self.upstreams)):
            upstream = self.upstreams[(start + offset) % len(self.upstreams)]
            url = f"{upstream}{request.url.path}"
            if request.url.query:
                url += f"?{request.url.query}"
            try:
                answer = await self._client.request(request.method, url, content=body,
                                                    headers=headers)
            except httpx.ConnectError:
                continue  # down: the next replica
            except httpx.HTTPError:
                return Response(b"upstream went away", status_code=502)
            self.answered[upstream] += 1
            return Response(answer.content, status_code=answer.status_code, headers={
                k: v for k, v in answer.headers.items() if k.lower() not in _DROPPED})
        return Response(b"no replica is up", status_code=503)

    async def aclose(self) -> None:
        await self._client.aclose()
