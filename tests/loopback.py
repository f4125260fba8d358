"""An ASGI app served on a loopback socket inside the test's own event loop, and polling."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import uvicorn


class _Server(uvicorn.Server):
    # Served inside the test's event loop: SIGINT and SIGTERM stay pytest's.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


@contextlib.asynccontextmanager
async def served(app: Any, sock: socket.socket | None = None, *,
                 lifespan: str = "off") -> AsyncIterator[str]:
    """`app` on `sock` (a fresh loopback socket by default); yields its base URL."""
    sock = sock or bound_socket()
    server = _Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                    lifespan=lifespan, timeout_graceful_shutdown=2))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await until(lambda: server.started or task.done(), "the server to start")
    if task.done():
        await task
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def until(condition: Callable[[], object], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
