"""Body attacks on POST /webhooks/github: slow bodies and many large unsigned bodies.

    uv run python bench/body_attack.py [--large-count 24] [--large-mib 26] [--slow-count 16]

Starts `porter serve` on loopback, measures a signed delivery's latency with no attack, then runs
two attacks one after the other and then both at once, each bounded in connections and seconds:

- slow: connections that declare a small body and send it at one byte a second (the security
  review saw one byte per 10 s hold a connection for over 90 s);
- large: rounds of --large-count concurrent unsigned bodies of --large-mib MiB each, for
  --large-seconds (the review saw 24 of 26 MiB raise RSS from 65 to 695 MiB and keep it there).

While each attack runs, a signed delivery is sent every --probe-interval seconds. Prints the
server's RSS (VmRSS) before, the peak during and after each attack, the statuses the attackers
got, and the signed deliveries' latency during the attack against the no-attack baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.intake import HOST, SECRET, SENTINEL, comment_template, free_port, start  # noqa: E402
from porter.webhooks import sign  # noqa: E402

MIB = 1024 * 1024


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@dataclass
class Window:
    """What one phase saw: RSS samples, attacker statuses, signed-delivery latencies."""

    rss: list[float] = field(default_factory=list)
    attackers: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    probes: Counter[int] = field(default_factory=Counter)
    held: list[float] = field(default_factory=list)


def head(port: int, length: int) -> bytes:
    """An unsigned delivery's request head (a wrong signature: it cannot be told apart early)."""
    return (f"POST /webhooks/github HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"Content-Length: {length}\r\nContent-Type: application/json\r\n"
            "X-GitHub-Event: issue_comment\r\nX-GitHub-Delivery: attack\r\n"
            f"X-Hub-Signature-256: sha256={'0' * 64}\r\n\r\n").encode()


async def status_of(reader: asyncio.StreamReader) -> str:
    try:
        line = await reader.readline()
    except (ConnectionError, OSError) as exc:
        return type(exc).__name__
    return line[9:12].decode() or "closed"


class Signer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.before, self.after = comment_template("@porter fix the typo")
        self.count = 0

    async def deliver(self) -> tuple[int, float]:
        """One signed @porter delivery on a fresh connection: (status, seconds to the answer)."""
        self.count += 1
        body = self.before + str(SENTINEL + self.count).encode() + self.after
        request = (f"POST /webhooks/github HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
                   f"Content-Length: {len(body)}\r\nContent-Type: application/json\r\n"
                   "X-GitHub-Event: issue_comment\r\n"
                   f"X-GitHub-Delivery: bench-{os.getpid()}-{self.count}\r\n"
                   f"X-Hub-Signature-256: {sign(body, secret=SECRET.encode())}\r\n"
                   "Connection: close\r\n\r\n").encode() + body
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection(HOST, self.port)
        try:
            writer.write(request)
            line = await asyncio.wait_for(reader.readline(), 30)
        finally:
            writer.close()
        return int(line[9:12]), time.perf_counter() - started


async def probe(signer: Signer, window: Window, stop: asyncio.Event, interval: float) -> None:
    while not stop.is_set():
        status, seconds = await signer.deliver()
        window.probes[status] += 1
        window.latencies.append(seconds)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def sample(pid: int, window: Window, stop: asyncio.Event) -> None:
    while not stop.is_set():
        window.rss.append(rss_mib(pid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)


async def slow_body(port: int, tally: Tally, seconds: float) -> None:
    """Declare 64 KiB, send a byte a second; note when and how the server ends it."""
    reader, writer = await asyncio.open_connection(HOST, port)
    started = time.monotonic()
    answer = asyncio.ensure_future(status_of(reader))
    try:
        writer.write(head(port, 64 * 1024))
        while not answer.done() and time.monotonic() - started < seconds:
            writer.write(b"{")
            with contextlib.suppress(ConnectionError, OSError):
                await writer.drain()
            await asyncio.wait([answer], timeout=1.0)
        tally.statuses["slow " + (answer.result() if answer.done() else "still open")] += 1
        tally.held.append(time.monotonic() - started)
    finally:
        answer.cancel()
        writer.close()


async def large_body(port: int, body: bytes, tally: Tally) -> None:
    """Send a whole unsigned body as fast as loopback takes it, stopping once answered."""
    reader, writer = await asyncio.open_connection(HOST, port)
    answer = asyncio.ensure_future(status_of(reader))
    view = memoryview(body)
    try:
        writer.write(head(port, len(body)))
        for offset in range(0, len(body), 256 * 1024):
            if answer.done():
                break
            writer.write(view[offset:offset + 256 * 1024])
            try:
                await writer.drain()
            except (ConnectionError, OSError):
                break
        tally.statuses["large " + await asyncio.wait_for(answer, 60)] += 1
    finally:
        answer.cancel()
        writer.close()


@dataclass
class Tally:
    statuses: Counter[str] = field(default_factory=Counter)
    held: list[float] = field(default_factory=list)


async def slow_attack(port: int, count: int, seconds: float, tally: Tally) -> None:
    await asyncio.gather(*(slow_body(port, tally, seconds) for _ in range(count)))


async def large_attack(port: int, count: int, mib: int, rounds: int, seconds: float,
                       tally: Tally) -> None:
    body = b"x" * (mib * MIB)
    deadline = time.monotonic() + seconds
    for _ in range(rounds):
        if time.monotonic() > deadline:
            break
        await asyncio.gather(*(large_body(port, body, tally) for _ in range(count)))


def attacker(kind: str, args: argparse.Namespace, port: int,
             results: multiprocessing.Queue[Tally]) -> None:
    """Runs in its own process, so its buffers and CPU do not skew the probes' latencies."""
    tally = Tally()
    attacks = []
    if kind in {"slow", "both"}:
        attacks.append(slow_attack(port, args.slow_count, args.slow_seconds, tally))
    if kind in {"large", "both"}:
        attacks.append(large_attack(port, args.large_count, args.large_mib, args.large_rounds,
                                    args.large_seconds, tally))

    async def together() -> None:
        await asyncio.gather(*attacks)

    asyncio.run(together())
    results.put(tally)


async def run_phase(kind: str, args: argparse.Namespace, pid: int, port: int,
                    signer: Signer) -> Window:
    window = Window()
    stop = asyncio.Event()
    spawn = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[Tally] = spawn.Queue()
    process = spawn.Process(target=attacker, args=(kind, args, port, results))
    process.start()
    await asyncio.sleep(0.5)  # the child imports and connects before the probes start
    watchers = [asyncio.ensure_future(sample(pid, window, stop)),
                asyncio.ensure_future(probe(signer, window, stop, args.probe_interval))]
    try:
        tally = await asyncio.to_thread(results.get, True, 120)
        await asyncio.to_thread(process.join, 10)
    finally:
        stop.set()
        await asyncio.gather(*watchers)
        if process.is_alive():
            process.kill()
    window.attackers, window.held = tally.statuses, tally.held
    return window


async def main_async(args: argparse.Namespace, pid: int, port: int) -> int:
    signer = Signer(port)
    for _ in range(5):  # warm-up: imports, first transaction
        await signer.deliver()
    baseline = Window()
    for _ in range(args.baseline):
        status, seconds = await signer.deliver()
        baseline.probes[status] += 1
        baseline.latencies.append(seconds)
        await asyncio.sleep(args.probe_interval / 4)
    rss_start = rss_mib(pid)

    slow = await run_phase("slow", args, pid, port, signer)
    await asyncio.sleep(args.settle)
    rss_after_slow = rss_mib(pid)
    large = await run_phase("large", args, pid, port, signer)
    await asyncio.sleep(args.settle)
    rss_after_large = rss_mib(pid)
    both = await run_phase("both", args, pid, port, signer)
    await asyncio.sleep(args.settle)
    rss_after_both = rss_mib(pid)

    base = statistics.median(baseline.latencies)
    print(f"server RSS before the attacks: {rss_start:.0f} MiB")
    print(f"{'phase':<10}{'RSS peak':>10}{'RSS after':>11}{'probes':>8}{'p50 ms':>9}"
          f"{'max ms':>9}{'p50/base':>10}  statuses")
    print(f"{'baseline':<10}{'':>10}{'':>11}{len(baseline.latencies):>8}{base * 1000:>9.1f}"
          f"{max(baseline.latencies) * 1000:>9.1f}{1.0:>10.2f}  "
          + ",".join(f"{k}×{v}" for k, v in sorted(baseline.probes.items())))
    for name, window, after in (("slow", slow, rss_after_slow),
                                ("large", large, rss_after_large),
                                ("both", both, rss_after_both)):
        p50 = statistics.median(window.latencies)
        print(f"{name:<10}{max(window.rss):>10.0f}{after:>11.0f}{len(window.latencies):>8}"
              f"{p50 * 1000:>9.1f}{max(window.latencies) * 1000:>9.1f}{p50 / base:>10.2f}  "
              + ",".join(f"{k}×{v}" for k, v in sorted(window.probes.items())))
        print(f"{'':<10}attackers: " + ", ".join(
            f"{k}×{v}" for k, v in sorted(window.attackers.items())))
    if slow.held:
        print(f"slow connections held {min(slow.held):.1f}–{max(slow.held):.1f} s "
              f"(the attack gives up after {args.slow_seconds:.0f} s)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large-count", type=int, default=24, help="concurrent large bodies")
    parser.add_argument("--large-mib", type=int, default=26, help="size of each large body")
    parser.add_argument("--large-rounds", type=int, default=100, help="at most this many")
    parser.add_argument("--large-seconds", type=float, default=8.0, help="no round starts later")
    parser.add_argument("--slow-count", type=int, default=16, help="concurrent slow bodies")
    parser.add_argument("--slow-seconds", type=float, default=15.0, help="slow attack length")
    parser.add_argument("--baseline", type=int, default=30, help="signed deliveries, no attack")
    parser.add_argument("--probe-interval", type=float, default=0.1)
    parser.add_argument("--settle", type=float, default=2.0, help="wait before RSS 'after'")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="porter-body-bench-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTER_")}
    env.update({"PORTER_DATABASE": str(workdir / "bench.db"), "PORTER_PORT": str(port),
                "PORTER_GITHUB_WEBHOOK_SECRET": SECRET, "PORTER_LOG_LEVEL": "warning"})
    server = start([sys.executable, "-m", "porter.cli", "serve"], env, port)
    try:
        return asyncio.run(main_async(args, server.pid, port))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    raise SystemExit(main())
