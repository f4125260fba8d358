"""Intake benchmark: Porter's webhook route against a bare Starlette endpoint, in one run.

    uv run python bench/intake.py [--seconds 8] [--connections 64]

Both servers run as separate processes under uvicorn (uvloop, httptools, no access log) on
loopback and receive the same signed, real payloads from tests/fixtures. Prints requests/s,
p50 and p99 for each scenario and the ratio to the bare endpoint's throughput.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.loadgen import Result, request, run  # noqa: E402
from porter.webhooks import sign  # noqa: E402
from tests.conftest import FIXTURES  # noqa: E402

SECRET = "bench-secret"
HOST = "127.0.0.1"
SENTINEL = 987_654_321_987


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def start(argv: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.post(f"http://{HOST}:{port}/webhooks/github", content=b"{}", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{argv} did not start")


def comment_template(body: str) -> tuple[bytes, bytes]:
    payload = json.loads((FIXTURES / "issue_comment" / "created.payload.json").read_text())
    payload["comment"]["body"] = body
    payload["comment"]["id"] = SENTINEL
    raw = json.dumps(payload).encode()
    before, after = raw.split(str(SENTINEL).encode(), 1)
    return before, after


def maker(port: int, body_text: str, *, unique: bool) -> Callable[[], bytes]:
    before, after = comment_template(body_text)
    counter = itertools.count(1)
    fixed = before + b"1" + after
    fixed_signature = sign(fixed, secret=SECRET.encode())

    def make() -> bytes:
        n = next(counter)
        body = before + str(n).encode() + after if unique else fixed
        signature = sign(body, secret=SECRET.encode()) if unique else fixed_signature
        return request(HOST, port, "/webhooks/github", body, {
            "Content-Type": "application/json",
            "X-GitHub-Event": "issue_comment",
            "X-GitHub-Delivery": f"bench-{os.getpid()}-{n}",
            "X-Hub-Signature-256": signature,
        })

    return make


def measure(port: int, make: Callable[[], bytes], args: argparse.Namespace) -> Result:
    async def go() -> Result:
        await run(HOST, port, make, connections=args.connections, seconds=0.5)  # warm-up
        return await run(HOST, port, make, connections=args.connections, seconds=args.seconds)

    return uvloop.run(go())


SCENARIOS = (
    ("bare endpoint, plain comment", "bare", "looks good to me", None),
    ("porter, comment without mention", "porter", "looks good to me", 0),
    ("bare endpoint, @porter comment", "bare", "@porter fix the typo", None),
    ("porter, @porter comment (durable)", "porter", "@porter fix the typo", 2),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per scenario and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="porter-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTER_")}
    ports = {"bare": free_port(), "porter": free_port()}
    porter_env = {**env, "PORTER_DATABASE": str(workdir / "bench.db"), "PORTER_PORT":
                  str(ports["porter"]), "PORTER_GITHUB_WEBHOOK_SECRET": SECRET,
                  "PORTER_LOG_LEVEL": "warning"}
    uvicorn = [sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--host", HOST, "--port",
               str(ports["bare"]), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
               "--log-level", "warning"]
    servers = [start(uvicorn, env, ports["bare"]),
               start([sys.executable, "-m", "porter.cli", "serve"], porter_env, ports["porter"])]
    makers = {name: maker(ports[target], body, unique=True)
              for name, target, body, _ in SCENARIOS}
    results: dict[str, list[Result]] = {name: [] for name, *_ in SCENARIOS}
    try:
        # Rounds interleave the scenarios, so drift in the machine's speed hits all of them.
        for _ in range(args.rounds):
            for name, target, _, _ in SCENARIOS:
                results[name].append(measure(ports[target], makers[name], args))
    finally:
        for process in servers:
            process.terminate()
            process.wait(timeout=10)
    db = sqlite3.connect(workdir / "bench.db")
    tasks = db.execute("SELECT COUNT(*) FROM tasks").fetchone()[0]
    db.close()

    print(f"{args.connections} connections, {args.rounds} rounds × {args.seconds:.0f} s per "
          f"scenario, payload {sum(map(len, comment_template('x'))) // 1024} KiB "
          "(issue_comment fixture, unique comment id and HMAC per request); medians of rounds")
    print(f"{'scenario':<36}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'ratio':>8}  statuses")
    names = [name for name, *_ in SCENARIOS]
    for name, _, _, base in SCENARIOS:
        runs = results[name]
        ratio = ""
        if base is not None:
            pairs = zip(runs, results[names[base]], strict=True)
            ratio = f"{statistics.median(r.rps / b.rps for r, b in pairs):.2f}"
        statuses: Counter[int] = Counter()
        for r in runs:
            statuses.update(r.statuses)
        print(f"{name:<36}{statistics.median(r.rps for r in runs):>9.0f}"
              f"{statistics.median(r.p50 for r in runs):>9.2f}"
              f"{statistics.median(r.percentile(0.99) for r in runs):>9.2f}{ratio:>8}  "
              + ",".join(f"{code}×{count}" for code, count in sorted(statuses.items())))
    recorded = sum(r.statuses.get(202, 0) for r in results[names[3]])
    print(f"durable: {recorded} deliveries answered 202 in timed runs; tasks in the database "
          f"(warm-ups included): {tasks}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
