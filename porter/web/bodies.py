"""Reading request bodies with a size bound, refusing before the whole body is read."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from porter.errors import BadRequest, PayloadTooLarge
from porter.webhooks import decode_json


async def read_bounded(request: Request, limit: int) -> bytes:
    """The body, refusing with 413 as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("Content-Length is not a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"body is larger than {limit} bytes")
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            raise PayloadTooLarge(f"body is larger than {limit} bytes")
    return bytes(received)


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    return decode_json(await read_bounded(request, limit))
