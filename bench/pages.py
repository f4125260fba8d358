"""Page speed at 100k tasks: the feed, the filtered history and the task page, against a bare
Starlette endpoint measured in the same run.

    uv run python bench/pages.py [--tasks 100000] [--requests 100] [--rounds 3]

Fills a fresh SQLite database (migrated by the store first) with realistic tasks, events, runs
and logs (bench/pages_data.py), then serves the real app (`create_app`, background services
off) and a bare endpoint, each in its own process under uvicorn, and asks each page one request
at a time over a kept-alive connection: as an admin (the admin bearer token) and as two
signed-in users (real session cookies) who reach 50 repositories each: dana only smaller ones,
erin the three giants too. Which repositories a user reaches comes from an in-process stand-in
for GitHub, cached by Porter as in production. Rounds interleave the pages, so drift in the
machine's speed hits all of them. Prints p50 and p95 per page, their ratio to the bare
endpoint's, and whether p95 is within the 50 ms aim.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.pages_data import Filled, fill  # noqa: E402
from porter.crypto import KeyRing  # noqa: E402
from porter.store import Store  # noqa: E402

HOST = "127.0.0.1"
ADMIN_TOKEN = "bench-admin-token"
USERS = {"dana": 777, "erin": 778}
AIM_MS = 50.0


# --- the servers (each run as `python bench/pages.py --serve …` in its own process) ----------


def bare_app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    async def page(request: Any) -> HTMLResponse:
        return HTMLResponse("<!doctype html><title>bare</title><p>ok</p>")

    return Starlette(routes=[Route("/", page)])


def porter_app(config: dict[str, Any]) -> Any:
    from porter.app import create_app
    from porter.settings import Settings

    reach = {token: [{"full_name": name, "permissions": {"push": True, "pull": True}}
                     for name in names] for token, names in config["reach"].items()}

    def github(request: httpx.Request) -> httpx.Response:
        """What GitHub answers a user's token: one installation holding their repositories."""
        path = request.url.path
        mine = reach.get(request.headers.get("authorization", "").removeprefix("Bearer "), [])
        if path.endswith("/user/installations"):
            return httpx.Response(200, json={"total_count": 1, "installations": [{"id": 1}]})
        if path.endswith("/user/installations/1/repositories"):
            page = int(request.url.params.get("page", "1"))
            batch = mine[(page - 1) * 100:page * 100]
            return httpx.Response(200, json={"total_count": len(mine), "repositories": batch})
        return httpx.Response(404, json={"message": "Not Found"})

    return create_app(Settings.from_mapping(config["env"]), background=False,
                      users_transport=httpx.MockTransport(github))


def serve(kind: str, port: int, config_path: str | None) -> None:
    import uvicorn

    config = json.loads(Path(config_path).read_text()) if config_path else {}
    app = bare_app() if kind == "bare" else porter_app(config)
    uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, loop="uvloop", http="httptools",
                                  access_log=False, log_level="warning")).run()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def start(kind: str, port: int, config: Path | None, probe: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--serve", kind, "--port", str(port)]
    if config is not None:
        argv += ["--config", str(config)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTER_")}
    process = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://{HOST}:{port}{probe}", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the {kind} server did not start")


# --- the database and its people -------------------------------------------------------------


async def migrated(database: Path) -> None:
    store = await Store.open(database)
    await store.close()


async def sign_in(database: Path, keys: str, login: str, token: str) -> str:
    """A session for `login`, as /auth/callback would leave it; the cookie's value."""
    from porter.vault import Vault
    from porter.web import cookies
    from porter.web.access import ACCESS_TOKEN

    ring = KeyRing.parse(keys)
    store = await Store.open(database)
    try:
        session = secrets.token_urlsafe(24)
        await store.sign_in(
            user_id=USERS[login], login=login, name=login.title(), avatar_url=None,
            secrets=Vault(ring, store).sealed(USERS[login], {ACCESS_TOKEN: token}),
            token_expires_at=None, session_hash=cookies.digest(session),
            csrf=secrets.token_urlsafe(24), session_expires_at=time.time() + 7 * 86400)
    finally:
        await store.close()
    return cookies.sign(ring.derive("web-cookies"), session, now=time.time())


def newest_task(database: Path, repo: str) -> int:
    db = sqlite3.connect(database)
    try:
        return int(db.execute("SELECT MAX(id) FROM tasks WHERE repo = ?", (repo,)).fetchone()[0])
    finally:
        db.close()


# --- what is measured ------------------------------------------------------------------------


@dataclass
class Page:
    name: str
    who: str  # admin, or a user's login
    path: str
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    size: int = 0  # bytes of the last answer: a page that renders nothing shows here

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    def reset(self) -> None:
        self.latencies.clear()
        self.statuses.clear()


def history(**filters: str | int) -> str:
    return "/tasks?" + urlencode(filters)


def pages(filled: Filled, reach: dict[str, list[str]], rng: random.Random) -> list[Page]:
    giant = filled.repos[0]
    dana = [repo for repo in filled.repos if repo in set(reach["dana"])]  # busiest first
    release = next(b for repo in filled.repos for b in filled.branches[repo] if "release" in b)
    middle = filled.tasks // 2
    admin = [
        ("feed", "/"),
        ("history, no filter", "/tasks"),
        ("history: giant repo + failed", history(repo=giant, state="failed")),
        ("history: giant + timed_out + goose (rare)",
         history(repo=giant, state="timed_out", agent="goose")),
        ("history: rare requester + cancelled",
         history(requester=filled.requesters[-20], state="cancelled")),
        ("history: branch", history(branch=release)),
        ("history: failed, older page", history(state="failed", before=middle)),
        ("type-ahead: repositories", "/history/suggest?field=repo&q=ac"),
        ("task page with a log", f"/tasks/{filled.logged[-1]}"),
        ("task page", f"/tasks/{filled.tasks - 1000 - rng.randrange(5000)}"),
    ]
    as_dana = [
        ("feed", "/"),
        ("history, no filter (50 repos)", "/tasks"),
        ("history: timed_out", history(state="timed_out")),
        ("history: agent goose", history(agent="goose")),
        ("history: busiest requester", history(requester=filled.requesters[0])),
        ("history: repo not visible", history(repo=giant, state="failed")),
        ("history: own repo + failed", history(repo=dana[0], state="failed")),
        ("history: timed_out, older page", history(state="timed_out", before=middle)),
        ("type-ahead: branches", "/history/suggest?field=branch&q=rel"),
        ("task page", f"/tasks/{newest_task(filled.path, dana[0])}"),
    ]
    as_erin = [
        ("feed", "/"),
        ("history, no filter (50 repos, 3 giants)", "/tasks"),
        ("history: timed_out", history(state="timed_out")),
        ("history: cancelled, release branch", history(state="cancelled", branch=release)),
        ("history: agent goose, older page", history(agent="goose", before=middle)),
    ]
    return ([Page(name, "admin", path) for name, path in admin]
            + [Page(name, "dana", path) for name, path in as_dana]
            + [Page(name, "erin", path) for name, path in as_erin])


def measure(client: httpx.Client, page: Page, count: int, headers: dict[str, str]) -> None:
    for _ in range(count):
        started = time.perf_counter()
        response = client.get(page.path, headers=headers)
        page.latencies.append(time.perf_counter() - started)
        page.statuses[response.status_code] = page.statuses.get(response.status_code, 0) + 1
        page.size = len(response.content)


def report(filled: Filled, filling: float, bare: Page, measured: list[Page],
           args: argparse.Namespace) -> None:
    print(f"{filled.tasks} tasks in {len(filled.repos)} repositories (largest "
          f"{filled.repos[0]}), filled in {filling:.1f} s; {args.rounds} rounds × "
          f"{args.requests} sequential requests per page over one kept-alive connection")
    base50, base95 = bare.percentile(0.5), bare.percentile(0.95)
    print(f"{'page':<44}{'as':<7}{'p50 ms':>8}{'p95 ms':>8}{'p50 ×':>8}{'p95 ×':>8}"
          f"  p95≤{AIM_MS:.0f}{'KiB':>6}  statuses")
    print(f"{bare.name:<44}{'-':<7}{base50:>8.2f}{base95:>8.2f}{1:>8.1f}{1:>8.1f}")
    for page in measured:
        p50, p95 = page.percentile(0.5), page.percentile(0.95)
        statuses = ",".join(f"{code}×{n}" for code, n in sorted(page.statuses.items()))
        print(f"{page.name:<44}{page.who:<7}{p50:>8.2f}{p95:>8.2f}{p50 / base50:>8.1f}"
              f"{p95 / base95:>8.1f}  {'yes' if p95 <= AIM_MS else 'NO':<6}"
              f"{page.size / 1024:>6.1f}  {statuses}")
    worst = max(measured, key=lambda page: page.percentile(0.95))
    print(f"median of the pages' p95: "
          f"{statistics.median(p.percentile(0.95) for p in measured):.2f} ms; worst p95: "
          f"{worst.percentile(0.95):.2f} ms ({worst.name}, as {worst.who})")


def run(workdir: Path, args: argparse.Namespace) -> None:
    database = workdir / "bench.db"
    started = time.perf_counter()
    asyncio.run(migrated(database))
    filled = fill(database, tasks=args.tasks)
    filling = time.perf_counter() - started
    rng = random.Random(11)
    reach = {"dana": rng.sample(filled.repos[3:], 50),  # all but the three giants
             "erin": filled.repos[:3] + rng.sample(filled.repos[3:], 47)}
    tokens = {login: f"ghu_{login}_" + secrets.token_hex(16) for login in USERS}
    keys = KeyRing.generate().serialize()
    headers = {"admin": {"Authorization": f"Bearer {ADMIN_TOKEN}", "Accept": "text/html"}}
    for login, token in tokens.items():
        cookie = asyncio.run(sign_in(database, keys, login, token))
        headers[login] = {"Cookie": f"porter_session={cookie}", "Accept": "text/html"}
    config = workdir / "config.json"
    config.write_text(json.dumps({
        "reach": {tokens[login]: names for login, names in reach.items()},
        "env": {"PORTER_DATABASE": str(database), "PORTER_ADMIN_TOKEN": ADMIN_TOKEN,
                "PORTER_SECRET_KEYS": keys, "PORTER_LOG_LEVEL": "warning",
                "PORTER_GITHUB_CLIENT_ID": "Iv1.bench",
                "PORTER_GITHUB_CLIENT_SECRET": "bench-secret",
                "PORTER_PUBLIC_URL": "http://127.0.0.1"}}))
    ports = {"bare": free_port(), "porter": free_port()}
    servers = [start("bare", ports["bare"], None, "/"),
               start("porter", ports["porter"], config, "/healthz")]
    bare = Page("bare Starlette endpoint", "-", "/")
    measured = pages(filled, reach, rng)
    try:
        with httpx.Client(base_url=f"http://{HOST}:{ports['bare']}") as bare_client, \
                httpx.Client(base_url=f"http://{HOST}:{ports['porter']}") as client:
            for page in measured:  # warm-up: caches, the users' repositories, SQLite's pages
                measure(client, page, 5, headers[page.who])
                page.reset()
            measure(bare_client, bare, 5, {})
            bare.reset()
            for _ in range(args.rounds):
                measure(bare_client, bare, args.requests, {})
                for page in measured:
                    measure(client, page, args.requests, headers[page.who])
    finally:
        for process in servers:
            process.terminate()
            process.wait(timeout=10)
    report(filled, filling, bare, measured, args)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=100, help="per page and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", choices=("porter", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.config)
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="porter-bench-pages-"))
    try:
        run(workdir, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # the database alone is about 140 MB
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
