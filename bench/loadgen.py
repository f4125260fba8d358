"""A small HTTP/1.1 keep-alive load generator: N connections, each sending back to back.

Written for these benchmarks because every durable request must carry a fresh comment id and its
own HMAC, which wrk's Lua cannot compute.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    elapsed: float = 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else float("nan")


Seen = Callable[[bytes, int], None]  # told each request and the status it was answered


async def _connection(host: str, port: int, make: Callable[[], bytes], result: Result,
                      stop_at: float, seen: Seen | None) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop_at:
            request = make()
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            result.latencies.append(time.perf_counter() - started)
            status = int(head[9:12])
            result.statuses[status] += 1
            if seen is not None:
                seen(request, status)
    finally:
        writer.close()


async def run(host: str, port: int | Sequence[int], make: Callable[[], bytes], *,
              connections: int, seconds: float, seen: Seen | None = None) -> Result:
    """Several ports: the connections are spread over them round-robin, as a load balancer
    in front of replicas would."""
    ports = [port] if isinstance(port, int) else list(port)
    result = Result()
    started = time.perf_counter()
    await asyncio.gather(*(
        _connection(host, ports[i % len(ports)], make, result, started + seconds, seen)
        for i in range(connections)
    ))
    result.elapsed = time.perf_counter() - started
    return result


def request(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
