"""A realistic Porter database at scale, for bench/pages.py: 100k tasks in a few seconds.

Rows go in by direct SQL into the real schema (the store has migrated the file first), in one
transaction. The shape is what a busy deployment looks like: a few huge repositories and a long
tail, most tasks finished (succeeded far more often than not), a handful live, a few agents
used very unevenly, requesters that come and go, base branches that are mostly `main`, a
timeline for every task, a run for every task that reached a machine, and logs for a few.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ORGS = ("acme", "octo", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell",
        "cyberdyne", "soylent", "wonka")
WORDS = ("api", "web", "cli", "docs", "infra", "billing", "search", "auth", "mobile", "data",
         "sdk", "ui", "core", "gateway", "worker", "deploy", "metrics", "payments", "chat",
         "reports", "admin", "sync", "export", "mail", "notify", "storage", "ledger", "maps")
# The giants, with their share of all tasks; the tail shares the rest.
HUGE = (("acme/monorepo", 0.20), ("globex/platform", 0.10), ("octo/hello", 0.06))
STATES = (("succeeded", 0.62), ("failed", 0.17), ("rejected", 0.07), ("cancelled", 0.08),
          ("timed_out", 0.06))
AGENTS = (("claude", 0.46), ("codex", 0.25), ("aider", 0.10), ("opencode", 0.08),
          ("gemini", 0.07), ("goose", 0.04))
LIVE_STATES = ("queued", "starting", "running", "publishing")
DAY = 86400.0
LOG_LINE = "2025-01-01T00:00:00Z agent: edited src/module_{n}.py, ran the tests: {n} passed\n"


TASK_COLUMNS = (
    "id", "delivery_id", "comment_key", "repo", "installation_id", "issue_number",
    "is_pull_request", "comment_kind", "comment_id", "comment_url", "requester", "requester_id",
    "agent", "model", "instruction", "context", "state", "stage", "reason", "attempt",
    "created_at", "updated_at", "status_comment_id", "base_ref", "base_sha", "branch",
    "commit_sha", "pr_number", "pr_url", "summary", "cost_usd", "files_changed", "started_at",
    "finished_at", "authorized_at", "key_source", "fly_source")
RUN_COLUMNS = (
    "id", "task_id", "attempt", "token_hash", "runner", "machine_id", "state", "stage",
    "message", "last_heartbeat_at", "cancel_requested", "log_bytes", "result", "created_at",
    "updated_at", "completed_at", "prompt", "runner_owner")


@dataclass(frozen=True)
class Filled:
    path: Path
    tasks: int
    repos: list[str]  # most tasks first
    requesters: list[str]  # most active first
    branches: dict[str, list[str]]  # repo -> its base branches
    logged: list[int]  # tasks whose current run has a log


def _insert(db: sqlite3.Connection, table: str, columns: tuple[str, ...],
            rows: Sequence[tuple[object, ...]]) -> None:
    names, marks = ", ".join(columns), ", ".join("?" * len(columns))
    # Fixed table and column names; every value is bound.
    db.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)  # noqa: S608


def _pick(rng: random.Random, table: tuple[tuple[str, float], ...]) -> str:
    return rng.choices([name for name, _ in table], [weight for _, weight in table])[0]


def _sha(seed: str) -> str:
    """Looks like a git commit id."""
    return hashlib.sha256(seed.encode()).hexdigest()[:40]


def _repos(rng: random.Random, count: int) -> tuple[list[str], list[float]]:
    names = [name for name, _ in HUGE]
    seen = set(names)
    while len(names) < count:
        name = f"{rng.choice(ORGS)}/{rng.choice(WORDS)}-{rng.choice(WORDS)}"
        if name not in seen:
            seen.add(name)
            names.append(name)
    tail = 1.0 - sum(share for _, share in HUGE)
    zipf = [1 / (rank ** 1.1) for rank in range(1, count - len(HUGE) + 1)]
    weights = [share for _, share in HUGE] + [tail * z / sum(zipf) for z in zipf]
    return names, weights


def _branches(rng: random.Random) -> list[str]:
    base = ["main"] if rng.random() < 0.8 else ["master"]
    if rng.random() < 0.3:
        base.append("develop")
    base += [f"release/{rng.randint(1, 4)}.{minor}" for minor in range(rng.randint(0, 4))]
    return base


@dataclass
class _Rows:
    deliveries: list[tuple[object, ...]] = field(default_factory=list)
    tasks: list[tuple[object, ...]] = field(default_factory=list)
    events: list[tuple[object, ...]] = field(default_factory=list)
    runs: list[tuple[object, ...]] = field(default_factory=list)


class _Maker:
    """One task at a time, with its delivery, its timeline and its run."""

    def __init__(self, rng: random.Random, names: list[str]) -> None:
        self.rng = rng
        self.branches = {repo: _branches(rng) for repo in names}
        self.installations = {org: 1000 + i for i, org in enumerate(ORGS)}
        self.people = [f"dev-{i:03d}" for i in range(320)]
        self.activity = [1 / (rank ** 0.9) for rank in range(1, len(self.people) + 1)]
        self.issues = dict.fromkeys(names, 0)
        self.rows = _Rows()

    def add(self, index: int, repo: str, at: float, state: str) -> None:
        rng = self.rng
        requester = rng.choices(self.people, self.activity)[0]
        # Issues are reused: several tasks on one issue, as retries and follow-ups are.
        if rng.random() < 0.6 or self.issues[repo] == 0:
            self.issues[repo] += 1
        number = rng.randint(max(1, self.issues[repo] - 5), self.issues[repo])
        pull = rng.random() < 0.35
        branches = self.branches[repo]
        base_ref = rng.choice(branches) if rng.random() < 0.3 else branches[0]
        kind = "pull_request_review_comment" if pull and rng.random() < 0.3 else "issue_comment"
        comment_id = 10_000_000 + index
        finished = at + rng.uniform(60, 1800) if state not in LIVE_STATES else None
        ran = state not in ("rejected", "queued")
        done = state == "succeeded"
        pr_number = self.issues[repo] + 1000 + index % 97
        self.rows.deliveries.append((f"d-{index}", kind, f"{kind}:{comment_id}", at))
        self.rows.tasks.append((
            index, f"d-{index}", f"{kind}:{comment_id}", repo,
            self.installations[repo.split("/")[0]], number, int(pull), kind, comment_id,
            f"https://github.com/{repo}/issues/{number}#issuecomment-{comment_id}", requester,
            5000 + self.people.index(requester), _pick(rng, AGENTS), None,
            f"{rng.choice(('fix', 'add', 'refactor', 'document', 'test'))} the "
            f"{rng.choice(WORDS)} {rng.choice(('handler', 'module', 'page', 'flag', 'bug'))}",
            "{}", state, "agent" if state in ("failed", "timed_out") else None,
            "the agent exited with status 1" if state == "failed" else None, 1, at,
            finished or at, 900_000 + index if state != "rejected" else None, base_ref,
            _sha(f"{repo}{index}") if state != "rejected" else None,
            f"porter/{index}-fix" if done else None, _sha(f"c{index}") if done else None,
            pr_number if done else None,
            f"https://github.com/{repo}/pull/{pr_number}" if done else None,
            "Changed the handler and its tests." if done else None,
            round(rng.uniform(0.02, 3.5), 4) if ran else None,
            rng.randint(1, 12) if done else None, at + 5 if ran else None, finished,
            at + 1 if state != "rejected" else None,
            "requester" if rng.random() < 0.3 else "operator", None,
        ))
        self._timeline(index, at, state, finished, f"{repo}#{number}")
        if ran:
            self.rows.runs.append((
                f"run-{index}", index, 1, hashlib.sha256(b"%d" % index).hexdigest(), "fly",
                f"m-{index:x}", "completed" if finished is not None else "running", "agent",
                None, at + 10, 0, 0, json.dumps({"summary": "done"}) if done else None, at, at,
                finished, f"Instruction for task {index}", None))

    def _timeline(self, index: int, at: float, state: str, finished: float | None,
                  where: str) -> None:
        steps = [(at, "queued", f"queued from {where}")]
        if state == "rejected":
            steps.append((at + 1, "rejected", "no write access"))
        elif state != "queued":
            steps.append((at + 2, "starting", "machine starting"))
            if state != "starting":
                steps.append((at + 5, "running", "agent running"))
            if state in ("publishing", "succeeded"):
                steps.append((at + 50, "publishing", "committing"))
            if finished is not None:
                steps.append((finished, state, state))
        self.rows.events += [(index, 1, when, f"state.{kind}", message, "{}")
                             for when, kind, message in steps]


def fill(path: Path, *, tasks: int = 100_000, repos: int = 600, seed: int = 7) -> Filled:
    """`tasks` tasks over the last year into the migrated database at `path`."""
    rng = random.Random(seed)
    names, weights = _repos(rng, repos)
    maker = _Maker(rng, names)
    now = time.time()
    start = now - 365 * DAY
    for index, repo in enumerate(rng.choices(names, weights, k=tasks), start=1):
        live = index > tasks - 40 and rng.random() < 0.6
        state = rng.choice(LIVE_STATES) if live else _pick(rng, STATES)
        maker.add(index, repo, start + (now - start) * index / tasks + rng.random() * 30, state)
    rows = maker.rows
    logged = [row[1] for row in rows.runs[-400::8]]  # a few recent runs, most of them finished
    logs = [(f"run-{task_id}", seq, 0.0,
             "".join(LOG_LINE.format(n=seq * 10 + k) for k in range(10)))
            for task_id in logged for seq in range(1, 41)]
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA synchronous = OFF")
        db.execute("BEGIN")
        db.executemany("INSERT INTO deliveries VALUES (?, ?, ?, ?)", rows.deliveries)
        _insert(db, "tasks", TASK_COLUMNS, rows.tasks)
        _insert(db, "task_events", ("task_id", "attempt", "at", "kind", "message", "data"),
                rows.events)
        _insert(db, "runs", RUN_COLUMNS, rows.runs)
        _insert(db, "run_logs", ("run_id", "seq", "at", "text"), logs)
        db.execute("UPDATE runs SET log_bytes = (SELECT SUM(LENGTH(text)) FROM run_logs"
                   " WHERE run_id = runs.id) WHERE id IN (SELECT DISTINCT run_id FROM run_logs)")
        db.execute("COMMIT")
    finally:
        db.close()
    by_repo = Counter(str(row[3]) for row in rows.tasks)
    by_person = Counter(str(row[10]) for row in rows.tasks)
    return Filled(path, tasks, [name for name, _ in by_repo.most_common()],
                  [name for name, _ in by_person.most_common()], maker.branches,
                  [int(str(task_id)) for task_id in logged])
