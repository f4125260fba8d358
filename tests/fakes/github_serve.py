"""Serving a FakeGitHub on loopback: uvicorn in a background thread, stopped on context exit."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import uvicorn

from tests.fakes.github_http import API_PREFIX

if TYPE_CHECKING:
    from tests.fakes.github import FakeGitHub


@dataclass(frozen=True)
class Urls:
    api_url: str  # http://127.0.0.1:PORT/api/v3 (githubkit base_url, PORTER_GITHUB_API_URL)
    web_url: str  # http://127.0.0.1:PORT (PORTER_GITHUB_URL; clone URLs live here)


class Serving:
    """Runs uvicorn in a thread on a socket bound before start, so the port is known at once."""

    def __init__(self, fake: FakeGitHub) -> None:
        self._fake = fake
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Urls:
        # Say IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that do, and without it
        # Nagle + delayed ACK cost ~40 ms per request on loopback (bench/latency.py saw 45 ms).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._fake.app,
            log_level="warning",
            lifespan="off",
            loop="asyncio",
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=3,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=lambda: asyncio.run(server.serve(sockets=[sock])),
            name=f"fake-github-{port}",
            daemon=True,
        )
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)  # start-up only; requests would queue in the backlog anyway
        if not server.started:
            server.should_exit = True
            raise RuntimeError("fake GitHub did not start")
        self._server, self._thread = server, thread
        self._fake.web_url = f"http://127.0.0.1:{port}"
        self._fake.api_url = self._fake.web_url + API_PREFIX
        return Urls(self._fake.api_url, self._fake.web_url)

    def __exit__(self, *exc: object) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            if self._thread.is_alive():
                raise RuntimeError("fake GitHub did not stop")

    async def __aenter__(self) -> Urls:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.__exit__)
