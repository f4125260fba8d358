"""The history's query against a real SQLite file and a real PostgreSQL database: the planned
query (porter/store/listing.py) returns exactly what the filters say, page after page, and on
SQLite uses the indexes it was planned for."""

from __future__ import annotations

import itertools
import random
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from porter.models import Task, TaskFilter
from porter.store import Store
from porter.store.listing import page_query
from porter.store.pg_connection import PgConnection

REPOS = ("acme/big", "acme/api", "octo/hello", "octo/docs", "globex/web", "globex/cli")
STATES = ("succeeded", "failed", "cancelled", "queued")
AGENTS = ("claude", "codex", "goose")
PEOPLE = ("alice", "bob", "carol")
BRANCHES = ("main", "develop", "release/1.2")


async def seeded(database: Path | str) -> Store:
    """A store holding 400 tasks spread over the repositories, states, people and branches."""
    opened = await Store.open(database)
    rng = random.Random(3)
    rows = []
    for n in range(1, 401):
        repo = "acme/big" if rng.random() < 0.5 else rng.choice(REPOS)
        rows.append((n, f"d{n}", f"k{n}", repo, rng.randint(1, 6), rng.choice(PEOPLE),
                     rng.choice(AGENTS), rng.choice(STATES), rng.choice(BRANCHES), n))
    db = PgConnection.connect(database) if isinstance(database, str) else sqlite3.connect(database)
    try:
        db.execute("BEGIN")
        db.executemany("INSERT INTO deliveries VALUES (?, 'issue_comment', ?, 0)",
                       [(r[1], r[2]) for r in rows])
        db.executemany(
            "INSERT INTO tasks (id, delivery_id, comment_key, repo, issue_number,"
            " is_pull_request, comment_kind, comment_id, requester, agent, instruction, state,"
            " base_ref, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 0, 'issue_comment', 1,"
            " ?, ?, 'do it', ?, ?, ?, ?)", [(*r, r[-1]) for r in rows])
        db.execute("COMMIT")
    finally:
        db.close()
    return opened


@pytest.fixture
async def store(store_database: Path | str) -> AsyncIterator[Store]:
    """On either store (tests/conftest.py `store_database`)."""
    opened = await seeded(store_database)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    """SQLite's only: its query plans are what the `INDEXED BY` hints are for."""
    opened = await seeded(tmp_path / "porter.db")
    try:
        yield opened
    finally:
        await opened.close()


def matches(task: Task, where: TaskFilter) -> bool:
    return all((
        where.repos is None or task.repo in where.repos,
        where.repo is None or task.repo == where.repo,
        where.state is None or task.state.value == where.state,
        where.agent is None or task.agent == where.agent,
        where.requester is None or task.requester == where.requester,
        where.issue is None or task.issue_number == where.issue,
        where.branch is None or task.base_ref == where.branch,
    ))


FILTERS = [
    TaskFilter(),
    TaskFilter(repos=("acme/api", "octo/docs", "globex/cli")),
    TaskFilter(repos=REPOS),
    TaskFilter(repos=("acme/big",), state="failed"),
    TaskFilter(repos=("octo/hello", "acme/big"), branch="release/1.2"),
    TaskFilter(repos=("octo/hello", "acme/api"), issue=3, state="succeeded"),
    TaskFilter(repos=("octo/hello", "acme/big"), requester="carol"),
    TaskFilter(repos=("octo/hello", "acme/big"), agent="goose", state="queued"),
    TaskFilter(repos=("octo/hello",), repo="octo/hello", agent="codex"),
    TaskFilter(repos=("octo/hello",), repo="acme/big"),
    TaskFilter(repos=()),
    TaskFilter(repo="acme/big", state="cancelled", branch="main"),
    TaskFilter(requester="bob", state="failed"),
    TaskFilter(issue=2),
    TaskFilter(agent="claude", requester="alice", branch="develop"),
]


@pytest.mark.parametrize("where", FILTERS)
async def test_pages_walk_exactly_the_matching_tasks_both_ways(store: Store,
                                                               where: TaskFilter) -> None:
    everything = await store.list_tasks(limit=500)
    assert len(everything) == 400
    expected = [task.id for task in everything if matches(task, where)]

    walked: list[int] = []
    before: int | None = None
    pages = []
    while True:
        page = await store.list_tasks(where, before=before, limit=7)
        pages.append([task.id for task in page])
        walked += pages[-1]
        if len(page) < 7:
            break
        before = page[-1].id
    assert walked == expected

    # Backwards from the last page with `after`: the same pages, in reverse.
    for newer, older in itertools.pairwise(pages):
        if older:
            page = await store.list_tasks(where, after=older[0], limit=7)
            assert [task.id for task in page] == newer


def plan(store_path: Path, where: TaskFilter, **cursor: int) -> str:
    query = page_query(where, before=cursor.get("before"), after=cursor.get("after"))
    assert query is not None
    db = sqlite3.connect(store_path)
    try:
        steps = db.execute("EXPLAIN QUERY PLAN " + query[0], query[1]).fetchall()
    finally:
        db.close()
    return "\n".join(str(step[3]) for step in steps)


@pytest.mark.parametrize(("where", "index"), [
    (TaskFilter(repos=("acme/api", "octo/docs")), "COVERING INDEX tasks_by_repo (repo=?"),
    (TaskFilter(repos=("acme/api", "octo/docs"), state="failed"),
     "COVERING INDEX tasks_by_repo_state (repo=? AND state=?"),
    (TaskFilter(repos=("acme/api", "octo/docs"), branch="main"),
     "COVERING INDEX tasks_by_repo_branch (repo=? AND base_ref=?"),
    (TaskFilter(repos=("acme/api", "octo/docs"), issue=3),
     "COVERING INDEX tasks_by_issue (repo=? AND issue_number=?"),
    (TaskFilter(repos=("acme/api", "octo/docs"), requester="bob"), "tasks_by_requester"),
    (TaskFilter(repo="acme/big", state="failed"), "tasks_by_repo_state (repo=? AND state=?"),
    (TaskFilter(repo="acme/big", branch="main"), "tasks_by_repo_branch (repo=? AND base_ref=?"),
    (TaskFilter(requester="bob", state="failed"),
     "tasks_by_requester_state (requester=? AND state=?"),
    (TaskFilter(issue=4), "tasks_by_issue_number (issue_number=?"),
])
async def test_each_filter_seeks_an_index_and_never_scans_the_table(
        sqlite_store: Store, tmp_path: Path, where: TaskFilter, index: str) -> None:
    for cursor in ({}, {"before": 200}, {"after": 100}):
        steps = plan(tmp_path / "porter.db", where, **cursor)
        assert index in steps, steps
        assert "SCAN tasks" not in steps, steps
