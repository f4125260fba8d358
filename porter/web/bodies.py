"""Reading request bodies within bounds on size, time and the memory all reads hold at once.

A webhook body is read before its signature can be checked, so anyone who can reach the port can
make Porter buffer and wait. A security review held a connection for over 90 s with a body sent
at a byte per 10 s, and raised RSS from 65 to 695 MiB with 24 concurrent unsigned 26 MiB bodies.
Three bounds answer that: one body's size (413), the time to receive it (408), and the bytes of
all bodies being read at once (503). Each is enforced as soon as it is known to be broken (from
Content-Length, before reading anything, when there is one) and the connection is then closed.
"""

from __future__ import annotations

import asyncio
import ctypes
import math
from collections.abc import Mapping
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from porter.errors import BadRequest, PayloadTooLarge, PorterError
from porter.webhooks import decode_json

# Every delivery Porter acts on (issue and review comments) is tens of KiB; 1 MiB leaves room.
SMALL_BODY_BYTES = 1024 * 1024
_M_MMAP_THRESHOLD = -3  # glibc malloc.h


class BodyBudget:
    """The bytes of request bodies being read at once, across all requests. Pure bookkeeping.

    A reader takes bytes before it buffers them and gives them back when it drops the body.
    Bodies over SMALL_BODY_BYTES may fill only three quarters of the budget: the last quarter is
    kept for small bodies, so a flood of large unsigned ones cannot lock out the comment
    deliveries that matter. When nothing is being read any one body is let in, so a budget set
    below PORTER_MAX_BODY_BYTES makes large deliveries wait their turn instead of never fitting.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.large_limit = limit - limit // 4
        self.in_flight = 0

    def take(self, nbytes: int, *, body_size: int) -> bool:
        """Count `nbytes` more for a body that will then be `body_size` bytes; False: no room."""
        if nbytes <= 0:
            return True
        cap = self.limit if body_size <= SMALL_BODY_BYTES else self.large_limit
        if self.in_flight and self.in_flight + nbytes > cap:
            return False
        self.in_flight += nbytes
        return True

    def give_back(self, nbytes: int) -> None:
        if not 0 <= nbytes <= self.in_flight:
            raise ValueError(f"giving back {nbytes} bytes with {self.in_flight} taken")
        self.in_flight -= nbytes


class BodyRefused(PorterError):
    """The request body was not read."""

    # The rest of the body is still on its way: closing is cheaper than receiving it to discard.
    headers: Mapping[str, str] = {"Connection": "close"}


class BodyTooLarge(BodyRefused, PayloadTooLarge):
    """The request body is too large."""


class BodyTimeout(BodyRefused):
    """The request body did not arrive in time."""

    status_code = 408


class BodyAbandoned(BodyRefused):
    """The client closed the connection before sending the whole body."""

    status_code = 400


class BodiesBusy(BodyRefused):
    """Too many request bodies are being read; try again shortly."""

    status_code = 503

    def __init__(self, retry_after: float = 1) -> None:
        super().__init__()
        self.headers = {**BodyRefused.headers, "Retry-After": str(max(1, math.ceil(retry_after)))}


def refused_response(request: Request, exc: Exception) -> Response:
    """The app's handler for BodyRefused: the JSON error with its headers."""
    assert isinstance(exc, BodyRefused)
    return JSONResponse({"error": exc.message}, exc.status_code, headers=dict(exc.headers))


def declared_length(request: Request, limit: int) -> int | None:
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    if not (declared.isascii() and declared.isdigit()):
        raise BadRequest("Content-Length is not a number")
    if int(declared) > limit:
        raise BodyTooLarge(f"body is larger than {limit} bytes")
    return int(declared)


async def read_bounded(request: Request, limit: int, *, budget: BodyBudget | None = None,
                       within: float | None = None) -> bytes:
    """The body, refused as soon as it is known to break a bound, before it is buffered.

    413 when it exceeds `limit` bytes; 408 when it has not all arrived `within` seconds after
    the read began; 503 when `budget` has no room for it: taken by Content-Length up front when
    there is one, else as the chunks arrive. Whatever was taken is given back on every exit.
    """
    declared = declared_length(request, limit)
    # Retry-After: by then every body being read now has arrived or been cut off.
    retry_after = within or 1
    taken = 0
    try:
        if budget is not None and declared is not None:
            if not budget.take(declared, body_size=declared):
                raise BodiesBusy(retry_after)
            taken = declared
        # Chunks are kept as they arrive and joined once: that join is the only copy (none at
        # all for a body that came in one chunk), where a growing buffer is reallocated as it
        # grows and then copied again into bytes.
        chunks: list[bytes] = []
        received = 0
        try:
            async with asyncio.timeout(within):
                async for chunk in request.stream():
                    received += len(chunk)
                    if received > limit:
                        raise BodyTooLarge(f"body is larger than {limit} bytes")
                    if budget is not None and received > taken:
                        if not budget.take(received - taken, body_size=received):
                            raise BodiesBusy(retry_after)
                        taken = received
                    chunks.append(chunk)
        except TimeoutError:
            raise BodyTimeout(f"the body did not arrive within {within:g} s") from None
        except ClientDisconnect:
            # An answer nobody reads, instead of a logged traceback per abandoned upload.
            raise BodyAbandoned() from None
        return b"".join(chunks)
    finally:
        if budget is not None:
            budget.give_back(taken)


def unmap_freed_buffers(threshold: int = 128 * 1024) -> bool:
    """Pin glibc's mmap threshold, so freed body buffers go back to the OS; False off glibc.

    glibc serves blocks over 128 KiB by mmap at first, but each free of such a block raises the
    threshold to its size (up to 32 MiB); from then on bodies and their chunks come from the heap,
    which fragments and is seldom trimmed. Measured with bench/body_attack.py: RSS stayed 50 MiB
    above its start after the large-body attack, and went back to it with the threshold pinned.
    Setting the threshold also turns that adjustment off.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    return decode_json(await read_bounded(request, limit))
