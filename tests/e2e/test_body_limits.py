"""Unauthenticated webhook bodies against a real `porter serve`: bounded in time and memory.

The attacks come from the security review (porter/web/bodies.py), scaled down to run in seconds:
a body sent a byte at a time, large unsigned bodies that fill the in-flight budget, and many
of them at once while the server's RSS is watched. Every loop here is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import comment_payload, signed
from tests.e2e.server import ServerProcess

MIB = 1024 * 1024
WAIT = 15  # seconds: the most any one answer may take before the test fails instead of hanging
UNSIGNED = {"X-GitHub-Event": "issue_comment", "X-GitHub-Delivery": "attack",
            "X-Hub-Signature-256": "sha256=" + "0" * 64}


@pytest.fixture
def serve(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start `porter serve` with the test's settings on top of `env`; stopped after the test."""
    started: list[ServerProcess] = []

    def start(**settings: str) -> ServerProcess:
        started.append(ServerProcess({**env, **settings}, cwd=tmp_path).start())
        return started[-1]

    yield start
    for server in started:
        server.kill(signal.SIGTERM)


class Upload:
    """One raw HTTP/1.1 POST to the webhook route, whose body the test sends when it likes."""

    def __init__(self, server: ServerProcess, length: int, *,
                 expect_continue: bool = False) -> None:
        self.server = server
        self.length = length
        self.expect_continue = expect_continue

    async def open(self) -> Upload:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.server.port)
        lines = ["POST /webhooks/github HTTP/1.1", f"Host: 127.0.0.1:{self.server.port}",
                 f"Content-Length: {self.length}", "Content-Type: application/json",
                 *(f"{name}: {value}" for name, value in UNSIGNED.items())]
        if self.expect_continue:
            lines.append("Expect: 100-continue")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self.writer.drain()
        return self

    async def send(self, data: bytes | memoryview) -> bool:
        """False once the server has stopped taking the body (answered and closed)."""
        self.writer.write(data)
        try:
            await self.writer.drain()
        except (ConnectionError, OSError):
            return False
        return True

    async def head(self) -> tuple[int, dict[str, str]]:
        """The next response head; a 100 Continue is one too, and means the read has begun."""
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), WAIT)
        status, *lines = raw.decode().split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines if ": " in line)
        return int(status.split()[1]), headers

    async def wait_closed_by_server(self) -> None:
        """Returns at end of stream (or reset); a connection left open times out instead."""
        with contextlib.suppress(ConnectionError):
            while await asyncio.wait_for(self.reader.read(65536), WAIT):
                pass

    def close(self) -> None:
        self.writer.close()


async def admitted(server: ServerProcess, length: int) -> Upload:
    """An upload the server has begun to read, so its bytes are counted in the budget."""
    upload = await Upload(server, length, expect_continue=True).open()
    status, _ = await upload.head()
    assert status == 100, "the server should have started reading this body"
    return upload


async def deliver_signed(server: ServerProcess, text: str) -> httpx.Response:
    body = json.dumps(comment_payload(body=text)).encode()
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(f"{server.url}/webhooks/github", content=body,
                                 headers=signed(body, "issue_comment"))


async def test_a_slow_body_is_cut_off_with_408_and_its_connection_closed(
    serve: Callable[..., ServerProcess],
) -> None:
    server = serve(PORTER_BODY_TIMEOUT="1")
    upload = await Upload(server, 1000).open()
    answer = asyncio.ensure_future(upload.head())
    try:
        for _ in range(40):  # a byte every 0.2 s, for 8 s at most
            if answer.done() or not await upload.send(b"{"):
                break
            await asyncio.wait([answer], timeout=0.2)
        status, headers = await answer
        assert status == 408
        assert headers["connection"] == "close"
        await upload.wait_closed_by_server()
    finally:
        answer.cancel()
        upload.close()


async def test_bodies_past_the_in_flight_budget_get_503_with_retry_after_unread(
    serve: Callable[..., ServerProcess],
) -> None:
    server = serve(PORTER_MAX_INFLIGHT_BODY_BYTES=str(8 * MIB), PORTER_BODY_TIMEOUT="30")
    # Bodies over 1 MiB may fill three quarters of the budget: two of 3 MiB.
    holders = [await admitted(server, 3 * MIB) for _ in range(2)]
    try:
        for _ in range(3):
            refused = await Upload(server, 3 * MIB, expect_continue=True).open()
            status, headers = await refused.head()
            assert status == 503
            assert int(headers["retry-after"]) >= 1
            assert headers["connection"] == "close"
            await refused.wait_closed_by_server()
            refused.close()

        for holder in holders:  # finishing a body gives its bytes back
            assert await holder.send(b"x" * (3 * MIB))
            assert (await holder.head())[0] == 401
        again = await admitted(server, 3 * MIB)
        again.close()
    finally:
        for holder in holders:
            holder.close()


async def test_a_signed_delivery_gets_202_while_attackers_hold_the_budget(
    serve: Callable[..., ServerProcess],
) -> None:
    server = serve(PORTER_MAX_INFLIGHT_BODY_BYTES=str(8 * MIB), PORTER_BODY_TIMEOUT="30")
    holders = [await admitted(server, 3 * MIB) for _ in range(2)]
    slow = [await admitted(server, 64 * 1024) for _ in range(8)]
    try:
        for attacker in slow:
            assert await attacker.send(b"{")
        refused = await Upload(server, 3 * MIB).open()
        assert (await refused.head())[0] == 503, "the budget should be full for large bodies"
        refused.close()

        response = await deliver_signed(server, "@porter fix the typo")
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "queued"
    finally:
        for attacker in holders + slow:
            attacker.close()


def vm_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")


class RssWatch:
    """The server's largest VmRSS seen, sampled on a thread so a busy test loop cannot skip it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = vm_rss_mib(pid)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(0.01):
            self.peak = max(self.peak, vm_rss_mib(self.pid))

    def __enter__(self) -> RssWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


async def send_whole(server: ServerProcess, body: bytes) -> str:
    """Send an unsigned body as fast as loopback takes it; how the server answered."""
    upload = await Upload(server, len(body)).open()
    answer = asyncio.ensure_future(upload.head())
    view = memoryview(body)
    try:
        for offset in range(0, len(body), 256 * 1024):
            if answer.done() or not await upload.send(view[offset:offset + 256 * 1024]):
                break
        try:
            return str((await answer)[0])
        except (ConnectionError, asyncio.IncompleteReadError):
            return "reset"  # refused and closed while the body was still coming
    finally:
        answer.cancel()
        upload.close()


async def test_many_large_unsigned_bodies_keep_the_server_under_200_mib(
    serve: Callable[..., ServerProcess],
) -> None:
    server = serve()  # the default budget and timeout
    assert server.process is not None
    body = b"x" * (16 * MIB)
    outcomes: list[str] = []
    with RssWatch(server.process.pid) as watch:
        for _ in range(2):
            outcomes += await asyncio.gather(*(send_whole(server, body) for _ in range(16)))
        response = await deliver_signed(server, "@porter fix the typo")
    assert response.status_code == 202, response.text
    assert "401" in outcomes, outcomes  # some bodies were read whole, then refused unsigned
    assert watch.peak < 200, f"server RSS reached {watch.peak:.0f} MiB"
    assert vm_rss_mib(server.process.pid) < 200
