"""LLM gateway benchmark: the fake provider called directly against the same calls through
Porter's gateway, in one run.

    uv run python bench/gateway.py [--requests 2000] [--seconds 4] [--connections 32]
                                   [--rounds 3] [--streams 500]

The fake provider (tests/fakes/llm_provider.py) and Porter (`create_app`, background services
off, so nothing ends the run meanwhile) each run in their own process under uvicorn (uvloop,
httptools) on loopback; the load comes from this process over raw keep-alive HTTP/1.1
connections. Porter's database holds one live run with the operator's Anthropic key; every
gateway call carries that run's token, so each one is authenticated, keyed, metered and recorded
as in production. Scenarios, interleaved over the rounds so drift in the machine's speed hits
all of them:

- latency: one connection to each, the same request to the provider directly and through the
  gateway in turn, back to back; p50 and p99 of the whole answer (for a stream, its last byte);
  "added" is the gateway's p50/p99 minus the direct one's, per round;
- throughput: N connections for S seconds, answers per second;
- JSON: a non-streamed Messages answer; SSE: a streamed one of 25 events.

`--without-metering` swaps the accounting for a no-op, to tell the proxy's own cost from it.

Then `--streams` streams are opened through the gateway at once and held open by the provider
after their first event; once every one has its first event, Porter's RSS (VmRSS of its process)
is read, then the streams are released. Aim: at most 2 ms added at p50; 500 streams under
300 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HOST = "127.0.0.1"
OPERATOR_KEY = "sk-ant-bench-operator-key"
PATH = "/v1/messages"
AIM_ADDED_MS = 2.0
AIM_RSS_MIB = 300.0


# --- the processes ---------------------------------------------------------------------------


def serve_porter(config_path: str, port: int) -> None:
    import uvicorn

    from porter.app import create_app
    from porter.settings import Settings

    config = json.loads(Path(config_path).read_text())
    if config["without_metering"]:
        unmetered()
    app = create_app(Settings.from_mapping(config["env"]), background=False)
    uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, loop="uvloop", http="httptools",
                                  access_log=False, log_level="warning",
                                  backlog=2048)).run()


def unmetered() -> None:
    """--without-metering: the accounting replaced by a meter that does nothing, to tell the
    proxy's own cost from the accounting's (budgets, usage parsing, one commit per call)."""
    from porter.gateway import metering

    class Idle(metering.Meter):
        def __init__(self) -> None:
            pass

        def observe_request(self, body: bytes) -> None:
            pass

        def feed(self, chunk: bytes) -> None:
            pass

        async def finish(self, status: int, elapsed: float) -> None:
            pass

    async def admit(self: object, *args: object) -> metering.Meter:
        return Idle()

    metering.Metering.admit = admit  # type: ignore[method-assign,assignment]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def start(argv: list[str], port: int, probe: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTER_")}
    process = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.head(f"http://{HOST}:{port}{probe}", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{argv} did not start")


async def live_run(database: Path, keys: str) -> str:
    """A task whose run is live and runs with the operator's keys; its gateway token."""
    from porter.crypto import KeyRing
    from porter.store import Store
    from porter.tokens import GATEWAY_SUBKEY, gateway_token, new_run_id, token_hash
    from tests.conftest import trigger

    store = await Store.open(database)
    try:
        [recorded] = await store.record_triggers([trigger("bench-1", 1)], default_agent="claude")
        assert recorded.task_id is not None
        task = await store.get_task(recorded.task_id)
        assert task is not None
        run_id = new_run_id()
        await store.start_run(task, run_id=run_id, token_hash=token_hash("unused"),
                              runner="local", job=("bench", f"bench:{run_id}", {}))
        await store.update_task(task.id, key_source="operator")
    finally:
        await store.close()
    return gateway_token(KeyRing.parse(keys).derive(GATEWAY_SUBKEY), run_id)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


# --- a raw HTTP/1.1 client -------------------------------------------------------------------


@dataclass
class Target:
    port: int
    prefix: str  # "" directly, "/llm/anthropic" through the gateway
    token: str

    def request(self, body: bytes) -> bytes:
        head = (f"POST {self.prefix}{PATH} HTTP/1.1\r\nhost: {HOST}:{self.port}\r\n"
                f"x-api-key: {self.token}\r\nanthropic-version: 2023-06-01\r\n"
                f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n")
        return head.encode() + body


def body(*, stream: bool, hold: float = 0.0) -> bytes:
    data: dict[str, Any] = {
        "model": "claude-sonnet-4-5", "max_tokens": 1024, "stream": stream,
        "messages": [{"role": "user", "content": "Fix the typo in README.md. " * 30}],
        "fake_events": 20,
    }
    if hold:
        data["fake_hold_s"] = hold
    return json.dumps(data).encode()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, int, float]:
    """Status, body bytes, and when the first body byte arrived (perf_counter)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, chunked = None, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    first = 0.0
    size = 0
    if not chunked:
        data = await reader.readexactly(length or 0)
        return status, len(data), time.perf_counter()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        n = int(size_line.split(b";")[0], 16)
        await reader.readexactly(n + 2)
        if not first:
            first = time.perf_counter()
        if n == 0:
            return status, size, first
        size += n


@dataclass
class Sample:
    latencies: list[float] = field(default_factory=list)
    first_bytes: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    elapsed: float = 0.0

    def pct(self, q: float, which: str = "latencies") -> float:
        values = sorted(getattr(self, which))
        return values[min(len(values) - 1, int(q * len(values)))] * 1000

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.elapsed


async def connection(target: Target, payload: bytes, sample: Sample,
                     done: Callable[[], bool]) -> None:
    reader, writer = await asyncio.open_connection(HOST, target.port)
    try:
        while not done():
            await one_request(reader, writer, target.request(payload), sample)
    finally:
        writer.close()


async def one_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      request: bytes, sample: Sample) -> None:
    started = time.perf_counter()
    writer.write(request)
    status, _, first = await read_answer(reader)
    sample.latencies.append(time.perf_counter() - started)
    sample.first_bytes.append(first - started)
    sample.statuses[status] = sample.statuses.get(status, 0) + 1


async def latency(direct: Target, gateway: Target, payload: bytes, requests: int
                  ) -> tuple[Sample, Sample]:
    """One connection to each, the same request to one then the other, alternating which
    goes first: both see the same moment's load, so their difference is the gateway's."""
    pairs = [(direct, Sample()), (gateway, Sample())]
    streams = [await asyncio.open_connection(HOST, target.port) for target, _ in pairs]
    started = time.perf_counter()
    try:
        for n in range(requests):
            for i in ((0, 1) if n % 2 else (1, 0)):
                (target, sample), (reader, writer) = pairs[i], streams[i]
                await one_request(reader, writer, target.request(payload), sample)
    finally:
        for _, writer in streams:
            writer.close()
    for _, sample in pairs:
        sample.elapsed = time.perf_counter() - started
    return pairs[0][1], pairs[1][1]


async def throughput(target: Target, payload: bytes, connections: int, seconds: float
                     ) -> Sample:
    sample = Sample()
    started = time.perf_counter()
    stop = started + seconds
    await asyncio.gather(*(connection(target, payload, sample,
                                      lambda: time.perf_counter() >= stop)
                           for _ in range(connections)))
    sample.elapsed = time.perf_counter() - started
    return sample


async def held_streams(target: Target, count: int, hold: float, pid: int
                       ) -> tuple[float, float, float, int]:
    """Open `count` streams at once; RSS once all are held open. (RSS before, RSS held,
    seconds until all were open, streams answered 200 to the end)."""
    before = rss_mib(pid)
    payload = target.request(body(stream=True, hold=hold))
    opened = asyncio.Event()
    open_count = 0
    started = time.perf_counter()

    async def one() -> int:
        nonlocal open_count
        reader, writer = await asyncio.open_connection(HOST, target.port, limit=2 ** 16)
        try:
            writer.write(payload)
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readuntil(b"\n\n")  # the first event, inside the first chunk
            open_count += 1
            if open_count == count:
                opened.set()
            while await reader.read(65536):
                pass
            return int(head[9:12])
        finally:
            writer.close()

    streams = [asyncio.ensure_future(one()) for _ in range(count)]
    await asyncio.wait_for(opened.wait(), timeout=hold - 1)
    all_open = time.perf_counter() - started
    held = rss_mib(pid)
    statuses = await asyncio.gather(*streams)
    return before, held, all_open, sum(1 for s in statuses if s == 200)


# --- the run ---------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per latency scenario")
    parser.add_argument("--seconds", type=float, default=4.0, help="per throughput scenario")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--hold", type=float, default=20.0, help="seconds each stream is held")
    parser.add_argument("--without-metering", action="store_true",
                        help="replace the accounting with a no-op (the proxy's cost alone)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_porter(args.serve, args.port)
        return 0

    from porter.crypto import KeyRing

    workdir = Path(tempfile.mkdtemp(prefix="porter-bench-gateway-"))
    ports = {"provider": free_port(), "porter": free_port()}
    keys = KeyRing.generate().serialize()
    env = {"PORTER_DATABASE": str(workdir / "bench.db"), "PORTER_SECRET_KEYS": keys,
           "PORTER_SECRET_ANTHROPIC_API_KEY": OPERATOR_KEY, "PORTER_LOG_LEVEL": "warning",
           "PORTER_LLM_ANTHROPIC_URL": f"http://{HOST}:{ports['provider']}"}
    config = workdir / "porter.json"
    config.write_text(json.dumps({"env": env, "without_metering": args.without_metering}))
    token = uvloop.run(live_run(workdir / "bench.db", keys))
    provider = start([sys.executable, "-m", "tests.fakes.llm_provider", "--port",
                      str(ports["provider"])], ports["provider"], "/v1/models")
    porter = start([sys.executable, str(Path(__file__).resolve()), "--serve", str(config),
                    "--port", str(ports["porter"])], ports["porter"], "/llm/anthropic")
    direct = Target(ports["provider"], "", OPERATOR_KEY)
    gateway = Target(ports["porter"], "/llm/anthropic", token)
    kinds = {"JSON": body(stream=False), "SSE": body(stream=True)}
    results: dict[tuple[str, str, str], list[Sample]] = {}
    try:
        async def measure() -> tuple[float, float, float, int]:
            for payload in kinds.values():  # warm-up: connections, pools, caches
                await latency(direct, gateway, payload, 300)
            for _ in range(args.rounds):
                for kind, payload in kinds.items():
                    pair = await latency(direct, gateway, payload, args.requests)
                    for name, target, sample in (("direct", direct, pair[0]),
                                                 ("gateway", gateway, pair[1])):
                        results.setdefault(("latency", kind, name), []).append(sample)
                        results.setdefault(("throughput", kind, name), []).append(
                            await throughput(target, payload, args.connections, args.seconds))
            return await held_streams(gateway, args.streams, args.hold, porter.pid)

        rss_before, rss_held, all_open, completed = uvloop.run(measure())
    finally:
        for process in (porter, provider):
            process.terminate()
            process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)

    report(args, results, rss_before, rss_held, all_open, completed)
    return 0


def report(args: argparse.Namespace, results: dict[tuple[str, str, str], list[Sample]],
           rss_before: float, rss_held: float, all_open: float, completed: int) -> None:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    print(f"latency: {args.requests} requests each way, alternating; throughput: "
          f"{args.connections} connections × {args.seconds:g} s; {args.rounds} rounds, "
          f"medians of rounds; SSE = 25 events (time to the last byte; TTFB = first body byte)"
          + ("; ACCOUNTING OFF (--without-metering)" if args.without_metering else ""))
    print(f"{'scenario':<16}{'p50 ms':>8}{'p99 ms':>8}{'TTFB p50':>10}{'added p50':>11}"
          f"{'added p99':>11}{'req/s':>8}{'× direct':>10}  statuses")
    worst_added = 0.0
    for kind in ("JSON", "SSE"):
        for name in ("direct", "gateway"):
            lat = results[("latency", kind, name)]
            thr = results[("throughput", kind, name)]
            base_lat = results[("latency", kind, "direct")]
            base_thr = results[("throughput", kind, "direct")]
            added50 = added99 = ratio = ""
            if name == "gateway":
                a50 = med([g.pct(0.5) - d.pct(0.5) for g, d in zip(lat, base_lat, strict=True)])
                a99 = med([g.pct(0.99) - d.pct(0.99)
                           for g, d in zip(lat, base_lat, strict=True)])
                worst_added = max(worst_added, a50)
                added50, added99 = f"{a50:+.2f}", f"{a99:+.2f}"
                ratio = f"{med([g.rps / d.rps for g, d in zip(thr, base_thr, strict=True)]):.2f}"
            statuses: dict[int, int] = {}
            for sample in lat + thr:
                for code, count in sample.statuses.items():
                    statuses[code] = statuses.get(code, 0) + count
            print(f"{name + ' ' + kind:<16}{med([s.pct(0.5) for s in lat]):>8.2f}"
                  f"{med([s.pct(0.99) for s in lat]):>8.2f}"
                  f"{med([s.pct(0.5, 'first_bytes') for s in lat]):>10.2f}"
                  f"{added50:>11}{added99:>11}{med([s.rps for s in thr]):>8.0f}{ratio:>10}  "
                  + ",".join(f"{c}×{n}" for c, n in sorted(statuses.items())))
    print(f"{args.streams} streams held open through the gateway: all open after "
          f"{all_open:.2f} s; Porter RSS {rss_before:.0f} MiB idle → {rss_held:.0f} MiB held "
          f"({(rss_held - rss_before) * 1024 / args.streams:.0f} KiB per stream); "
          f"{completed}/{args.streams} answered 200 to the end")
    added_ok = "met" if worst_added <= AIM_ADDED_MS else "MISSED"
    rss_ok = "met" if rss_held < AIM_RSS_MIB else "MISSED"
    print(f"aims: added p50 ≤ {AIM_ADDED_MS:g} ms: {added_ok} ({worst_added:.2f}); "
          f"RSS < {AIM_RSS_MIB:g} MiB at {args.streams} streams: {rss_ok} ({rss_held:.0f})")


if __name__ == "__main__":
    raise SystemExit(main())
