"""The task list's SQL: filters, who may see what, a keyset cursor; and type-ahead ranking.

The history must stay fast at 100k tasks and more (bench/pages.py), so the query is planned
here rather than left to SQLite's guesses (Porter never runs ANALYZE, so SQLite has no
statistics and treats every equality as equally selective):

- The page's ids come first from an index, then the rows by id: only the page's rows are read.
- A viewer restricted to their repositories (`repo IN (…)`, often dozens of names) is the hard
  case. Left alone, SQLite either walks the newest tasks until enough are visible (slow when
  the viewer's repositories are a sliver of the whole) or reads every visible task and sorts
  (slow when one of them is huge). Naming a `(repo, …, id)` index lets it seek each repository
  and stop after a page per repository: at most repositories × page index entries.
- A requester or agent filter is instead left to its own `(requester, …)`/`(agent, id)` index:
  a repository index would read every task of the viewer's repositories to find a rare
  requester, and a requester's tasks are few.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from porter.models import TaskFilter
from porter.store.base import matching

MAX_PAGE = 500


def _repository_index(where: TaskFilter) -> str:
    """The `(repo, …, id)` index that narrows a visible repository the most for this filter
    (see migrations 0001 and 0007)."""
    if where.issue is not None:
        return "tasks_by_issue"
    if where.state is not None:
        return "tasks_by_repo_state"
    if where.branch is not None:
        return "tasks_by_repo_branch"
    return "tasks_by_repo"


def page_query(where: TaskFilter, *, before: int | None = None, after: int | None = None,
               limit: int = 50, hints: bool = True) -> tuple[str, list[Any]] | None:
    """`SELECT * FROM tasks …` for one page, newest first, and its parameters; None when nothing
    can match (the viewer sees no repository, or not the one asked for).

    `before`: ids below it (the next, older page); `after` alone: the page just above it (the
    newer page), still returned newest first. `hints`: name the index to use (SQLite's
    `INDEXED BY`; PostgreSQL has no hints, and keeps the statistics SQLite lacks here).
    """
    visible = where.repos
    if visible is not None:
        if where.repo is not None:
            if where.repo not in visible:
                return None
            visible = None  # `repo = ?` already keeps to a visible repository
        elif not visible:
            return None
    clause, params = matching({
        "repo = ?": where.repo, "state = ?": where.state, "agent = ?": where.agent,
        "requester = ?": where.requester, "issue_number = ?": where.issue,
        "base_ref = ?": where.branch, "id < ?": before, "id > ?": after,
    })
    hint = ""
    if visible is not None:
        clause += (" AND " if clause else " WHERE ") + "repo IN (SELECT value FROM json_each(?))"
        params.append(json.dumps(list(visible)))
        if hints and where.agent is None and where.requester is None:
            hint = f" INDEXED BY {_repository_index(where)}"
    # The newer page is the `limit` ids just above `after`: nearest first, then shown newest first.
    order = "ASC" if after is not None and before is None else "DESC"
    sql = (f"SELECT * FROM tasks WHERE id IN (SELECT id FROM tasks{hint}{clause}"
           f" ORDER BY id {order} LIMIT ?) ORDER BY id DESC")
    return sql, [*params, max(1, min(limit, MAX_PAGE))]


# One index seek per distinct name ("loose index scan"): the names come without reading every
# task that carries them.
REPO_NAMES = (
    "WITH RECURSIVE names(repo) AS ("
    " SELECT MIN(repo) FROM tasks"
    " UNION ALL SELECT (SELECT MIN(repo) FROM tasks WHERE repo > names.repo) FROM names"
    " WHERE names.repo IS NOT NULL LIMIT ?)"
    " SELECT repo FROM names WHERE repo IS NOT NULL")
VISIBLE_REPO_NAMES = (
    "SELECT value FROM json_each(?) WHERE EXISTS (SELECT 1 FROM tasks WHERE repo = value)")
BRANCH_NAMES = (
    "WITH RECURSIVE names(ref) AS ("
    " SELECT MIN(base_ref) FROM tasks"
    " UNION ALL SELECT (SELECT MIN(base_ref) FROM tasks WHERE base_ref > names.ref) FROM names"
    " WHERE names.ref IS NOT NULL LIMIT ?)"
    " SELECT ref FROM names WHERE ref IS NOT NULL")
# The same walk inside each of the given repositories, over (repo, base_ref, id).
BRANCH_NAMES_IN = (
    "WITH RECURSIVE names(repo, ref) AS ("
    " SELECT value, (SELECT MIN(base_ref) FROM tasks WHERE repo = value) FROM json_each(?)"
    " UNION ALL SELECT repo, (SELECT MIN(base_ref) FROM tasks WHERE tasks.repo = names.repo"
    " AND base_ref > names.ref) FROM names WHERE names.ref IS NOT NULL LIMIT ?)"
    " SELECT DISTINCT ref FROM names WHERE ref IS NOT NULL")

# PostgreSQL has no `LIMIT` inside a recursive query: there it bounds the outer query, which
# stops the walk too (a recursive CTE is evaluated as far as its reader reads).
PG_REPO_NAMES = (
    "WITH RECURSIVE names(repo) AS ("
    " SELECT MIN(repo) FROM tasks"
    " UNION ALL SELECT (SELECT MIN(repo) FROM tasks WHERE repo > names.repo) FROM names"
    " WHERE names.repo IS NOT NULL)"
    " SELECT repo FROM names WHERE repo IS NOT NULL LIMIT ?")
PG_BRANCH_NAMES = (
    "WITH RECURSIVE names(ref) AS ("
    " SELECT MIN(base_ref) FROM tasks"
    " UNION ALL SELECT (SELECT MIN(base_ref) FROM tasks WHERE base_ref > names.ref) FROM names"
    " WHERE names.ref IS NOT NULL)"
    " SELECT ref FROM names WHERE ref IS NOT NULL LIMIT ?")
PG_BRANCH_NAMES_IN = (
    "WITH RECURSIVE names(repo, ref) AS ("
    " SELECT value, (SELECT MIN(base_ref) FROM tasks WHERE repo = value) FROM json_each(?)"
    " UNION ALL SELECT repo, (SELECT MIN(base_ref) FROM tasks WHERE tasks.repo = names.repo"
    " AND base_ref > names.ref) FROM names WHERE names.ref IS NOT NULL)"
    " SELECT DISTINCT ref FROM (SELECT ref FROM names LIMIT ?) AS walked WHERE ref IS NOT NULL")


def ranked(names: Iterable[str], typed: str, *, limit: int) -> list[str]:
    """Names containing `typed` (any case): those starting with it first, then those whose part
    after a `/` does (`wid` → acme/widgets), then the rest; alphabetical within each."""
    needle = typed.casefold()
    found = []
    for name in set(names):
        folded = name.casefold()
        at = folded.find(needle)
        if at < 0:
            continue
        tail = folded.rsplit("/", 1)[-1]
        rank = 0 if at == 0 else 1 if tail.startswith(needle) else 2
        found.append((rank, folded, name))
    return [name for *_, name in sorted(found)[:limit]]
