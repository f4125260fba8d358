"""Intake benchmark: Porter's webhook route against a bare Starlette endpoint, in one run.

    uv run python bench/intake.py [--seconds 8] [--connections 64] [--database URL]

Both servers run as separate processes under uvicorn (uvloop, httptools, no access log) on
loopback and receive the same signed, real payloads from tests/fixtures. Prints requests/s,
p50 and p99 for each scenario and the ratio to the bare endpoint's throughput.

`--database postgresql://USER:PASSWORD@HOST/NAME` adds durable intake on PostgreSQL, with one
and with three `porter serve` replicas (the connections spread round-robin over their ports),
each compared to Porter on SQLite. The URL may name any PostgreSQL server whose user may
create databases: each scenario runs on a new database of its own, dropped afterwards. Every
durable scenario ends with a check, from the database itself, that each delivery answered 202
became exactly one task. The password is never printed.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import intake_postgres as pg  # noqa: E402
from bench.loadgen import Result, request, run  # noqa: E402
from porter.webhooks import sign  # noqa: E402
from tests.conftest import FIXTURES  # noqa: E402

SECRET = "bench-secret"
HOST = "127.0.0.1"
SENTINEL = 987_654_321_987
PORTER = [sys.executable, "-m", "porter.cli", "serve"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def launch(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def wait_ready(process: subprocess.Popen[bytes], port: int) -> subprocess.Popen[bytes]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            httpx.post(f"http://{HOST}:{port}/webhooks/github", content=b"{}", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"{process.args!r} did not start")


def start(argv: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    return wait_ready(launch(argv, env), port)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def comment_template(body: str) -> tuple[bytes, bytes]:
    payload = json.loads((FIXTURES / "issue_comment" / "created.payload.json").read_text())
    payload["comment"]["body"] = body
    payload["comment"]["id"] = SENTINEL
    raw = json.dumps(payload).encode()
    before, after = raw.split(str(SENTINEL).encode(), 1)
    return before, after


def maker(port: int, body_text: str, *, unique: bool, tag: str) -> Callable[[], bytes]:
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
            "X-GitHub-Delivery": f"bench-{os.getpid()}-{tag}-{n}",
            "X-Hub-Signature-256": signature,
        })

    return make


@dataclass
class Acks:
    """The delivery ids answered 202 in a scenario (warm-ups included): the load generator
    tells it every reply."""

    ids: list[str] = field(default_factory=list)

    def __call__(self, sent: bytes, status: int) -> None:
        if status == 202:
            head = sent[:sent.index(b"\r\n\r\n")]
            self.ids.append(head.split(b"X-GitHub-Delivery: ", 1)[1].split(b"\r\n", 1)[0]
                            .decode())


def measure(ports: list[int], make: Callable[[], bytes], args: argparse.Namespace,
            seen: Acks | None) -> Result:
    async def go() -> Result:
        await run(HOST, ports, make, connections=args.connections, seconds=0.5,  # warm-up
                  seen=seen)
        return await run(HOST, ports, make, connections=args.connections, seconds=args.seconds,
                         seen=seen)

    return uvloop.run(go())


@dataclass(frozen=True)
class Scenario:
    name: str
    target: str  # which servers receive it: bare, porter (SQLite), pg1, pg3
    body: str
    base: str | None = None  # the scenario whose requests/s its ratio divides by
    durable: bool = False  # its deliveries become tasks: check them in the database after


PLAIN, MENTION = "looks good to me", "@porter fix the typo"
SQLITE = "porter, @porter comment (durable)"
SCENARIOS = (
    Scenario("bare endpoint, plain comment", "bare", PLAIN),
    Scenario("porter, comment without mention", "porter", PLAIN, "bare endpoint, plain comment"),
    Scenario("bare endpoint, @porter comment", "bare", MENTION),
    Scenario(SQLITE, "porter", MENTION, "bare endpoint, @porter comment", durable=True),
)
POSTGRES = (
    Scenario("porter on PostgreSQL ×1 (durable)", "pg1", MENTION, SQLITE, durable=True),
    Scenario("porter on PostgreSQL ×3 (durable)", "pg3", MENTION, SQLITE, durable=True),
)
REPLICAS = {"pg1": 1, "pg3": 3}  # Porter processes sharing each PostgreSQL scenario's database


def porter_env(env: dict[str, str], port: int, database: str,
               data_dir: Path) -> dict[str, str]:
    # The data directory (key ring, runs) is shared by a scenario's replicas, as on one host.
    return {**env, "PORTER_DATABASE": database, "PORTER_PORT": str(port),
            "PORTER_GITHUB_WEBHOOK_SECRET": SECRET, "PORTER_LOG_LEVEL": "warning",
            "PORTER_DATA_DIR": str(data_dir)}


def replicas(stack: contextlib.ExitStack, env: dict[str, str], database: str, count: int,
             data_dir: Path) -> list[int]:
    """`count` Porter processes on one database: the first migrates it and writes the key
    ring before the others start (at once, as a rollout would)."""
    ports = [free_port() for _ in range(count)]
    first = start(PORTER, porter_env(env, ports[0], database, data_dir), ports[0])
    stack.callback(stop, first)
    rest = [launch(PORTER, porter_env(env, port, database, data_dir)) for port in ports[1:]]
    for process in rest:
        stack.callback(stop, process)
    for process, port in zip(rest, ports[1:], strict=True):
        wait_ready(process, port)
    return ports


def durability(name: str, acked: list[str], recorded: list[str]) -> bool:
    """Print whether every delivery answered 202 is one task, no more, no less."""
    lost = len(set(acked) - set(recorded))
    duplicated = len(recorded) - len(set(recorded))
    unacked = len(set(recorded) - set(acked))  # recorded, but its answer was not a 202
    ok = lost == 0 and duplicated == 0 and len(acked) == len(set(acked))
    print(f"durability, {name}: {len(acked)} deliveries answered 202 ({len(set(acked))} distinct "
          f"ids), {len(recorded)} tasks in the database: lost {lost}, duplicated {duplicated}, "
          f"recorded without a 202 {unacked}: {'OK' if ok else 'FAILED'}")
    return ok


def recorded_sqlite(path: Path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        return [row[0] for row in db.execute("SELECT delivery_id FROM tasks")]
    finally:
        db.close()


def report(args: argparse.Namespace, scenarios: list[Scenario],
           results: dict[str, list[Result]]) -> None:
    print(f"{args.connections} connections, {args.rounds} rounds × {args.seconds:.0f} s per "
          f"scenario, payload {sum(map(len, comment_template('x'))) // 1024} KiB "
          "(issue_comment fixture, unique comment id and HMAC per request); medians of rounds")
    print(f"{'scenario':<40}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'ratio':>8}  statuses")
    for scenario in scenarios:
        runs = results[scenario.name]
        ratio = ""
        if scenario.base is not None:
            pairs = zip(runs, results[scenario.base], strict=True)
            ratio = f"{statistics.median(r.rps / b.rps for r, b in pairs):.2f}"
        statuses: Counter[int] = Counter()
        for r in runs:
            statuses.update(r.statuses)
        print(f"{scenario.name:<40}{statistics.median(r.rps for r in runs):>9.0f}"
              f"{statistics.median(r.p50 for r in runs):>9.2f}"
              f"{statistics.median(r.percentile(0.99) for r in runs):>9.2f}{ratio:>8}  "
              + ",".join(f"{code}×{count}" for code, count in sorted(statuses.items())))
    print("ratio: Porter's rows to the bare endpoint above them"
          + ("; PostgreSQL's rows to Porter on SQLite (one process)" if args.database else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per scenario and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--database", metavar="URL", help="a PostgreSQL server URL whose user "
                        "may create databases: adds PostgreSQL with 1 and 3 replicas")
    args = parser.parse_args()
    try:
        return bench(args)
    except psycopg.Error as exc:  # a driver's message may quote the URL
        print(f"bench: PostgreSQL: {pg.hide_password(args.database, str(exc))}", file=sys.stderr)
        return 2


def bench(args: argparse.Namespace) -> int:
    scenarios = [*SCENARIOS, *(POSTGRES if args.database else ())]
    settings = pg.server_settings(args.database) if args.database else None  # fails early
    workdir = Path(tempfile.mkdtemp(prefix="porter-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTER_")}
    ports = {"bare": [free_port()], "porter": [free_port()]}
    uvicorn = [sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--host", HOST, "--port",
               str(ports["bare"][0]), "--loop", "uvloop", "--http", "httptools",
               "--no-access-log", "--log-level", "warning"]
    results: dict[str, list[Result]] = {s.name: [] for s in scenarios}
    acks = {s.name: Acks() for s in scenarios if s.durable}
    with contextlib.ExitStack() as databases:  # dropped after the servers stop and the check
        databases.callback(shutil.rmtree, workdir, ignore_errors=True)
        urls = {target: databases.enter_context(pg.scratch_database(args.database, n))
                for n, target in enumerate(REPLICAS) if args.database}
        with contextlib.ExitStack() as servers:
            servers.callback(stop, start(uvicorn, env, ports["bare"][0]))
            sqlite_env = porter_env(env, ports["porter"][0], str(workdir / "bench.db"), workdir)
            servers.callback(stop, start(PORTER, sqlite_env, ports["porter"][0]))
            for target, url in urls.items():
                ports[target] = replicas(servers, env, url, REPLICAS[target], workdir / target)
            makers = {s.name: maker(ports[s.target][0], s.body, unique=True, tag=str(n))
                      for n, s in enumerate(scenarios)}
            # Rounds interleave the scenarios, so drift in the machine's speed hits all of them.
            for _ in range(args.rounds):
                for s in scenarios:
                    results[s.name].append(measure(ports[s.target], makers[s.name], args,
                                                   acks.get(s.name)))
        recorded = {SQLITE: recorded_sqlite(workdir / "bench.db")}
        recorded |= {s.name: pg.recorded_postgres(urls[s.target]) for s in POSTGRES
                     if args.database}

    report(args, scenarios, results)
    print(f"machine: {os.cpu_count()} CPU cores, shared by the load generator and every server")
    print("SQLite: WAL, synchronous=FULL (each commit fsyncs)")
    if settings:
        print(f"PostgreSQL {settings['server_version']} at {pg.shown(args.database)}: "
              f"fsync={settings['fsync']}, synchronous_commit={settings['synchronous_commit']}")
        if settings["fsync"] != "on" or settings["synchronous_commit"] == "off":
            print("  this server acknowledges commits before they reach the disk: its figures "
                  "flatter PostgreSQL against SQLite's fsync per commit")
    verdicts = [durability(name, acks[name].ids, ids) for name, ids in recorded.items()]
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    raise SystemExit(main())
