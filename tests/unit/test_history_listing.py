"""The history's pure parts: the query plan's choices, type-ahead ranking, the query string."""

from __future__ import annotations

import pytest

from porter.errors import BadRequest
from porter.models import TaskFilter
from porter.store.listing import page_query, ranked
from porter.web.history_params import parse


def test_nothing_is_asked_of_the_database_when_nothing_can_match() -> None:
    assert page_query(TaskFilter(repos=())) is None
    assert page_query(TaskFilter(repos=("a/b",), repo="c/d")) is None


def test_a_visible_repository_asked_by_name_needs_no_list() -> None:
    query = page_query(TaskFilter(repos=("a/b", "c/d"), repo="a/b"))
    assert query is not None
    sql, params = query
    assert "json_each" not in sql and "INDEXED BY" not in sql
    assert params == ["a/b", 50]


@pytest.mark.parametrize(("where", "index"), [
    (TaskFilter(repos=("a/b",)), "tasks_by_repo"),
    (TaskFilter(repos=("a/b",), state="failed"), "tasks_by_repo_state"),
    (TaskFilter(repos=("a/b",), branch="main", state="failed"), "tasks_by_repo_state"),
    (TaskFilter(repos=("a/b",), branch="main"), "tasks_by_repo_branch"),
    (TaskFilter(repos=("a/b",), issue=3, state="failed"), "tasks_by_issue"),
    (TaskFilter(repos=("a/b",), requester="bob"), None),
    (TaskFilter(repos=("a/b",), agent="goose", state="failed"), None),
    (TaskFilter(state="failed"), None),
])
def test_the_visible_list_seeks_each_repository_unless_a_person_or_agent_narrows_more(
        where: TaskFilter, index: str | None) -> None:
    query = page_query(where)
    assert query is not None
    if index is None:
        assert "INDEXED BY" not in query[0]
    else:
        assert f"INDEXED BY {index} " in query[0]


def test_the_newer_page_takes_the_ids_just_above_and_shows_them_newest_first() -> None:
    query = page_query(TaskFilter(), after=10, limit=5)
    assert query is not None
    assert "id > ? ORDER BY id ASC LIMIT ?) ORDER BY id DESC" in query[0]
    assert query[1] == [10, 5]


def test_suggestions_rank_a_prefix_then_a_name_prefix_then_the_rest() -> None:
    names = ["zeta/web-app", "acme/webhooks", "web/site", "acme/api", "octo/cobweb"]
    assert ranked(names, "web", limit=10) == ["web/site", "acme/webhooks", "zeta/web-app",
                                               "octo/cobweb"]
    assert ranked(names, "WEB", limit=2) == ["web/site", "acme/webhooks"]
    assert ranked(names, "", limit=3) == ["acme/api", "acme/webhooks", "octo/cobweb"]


def test_filters_are_read_as_people_write_them() -> None:
    query = parse({"repo": " OCTO/hello ", "issue": "#12", "requester": "@Bob",
                   "state": "", "branch": "release/1.2"}, ("octo/Hello",))
    assert query.where == TaskFilter(repo="octo/Hello", issue=12, requester="Bob",
                                     branch="release/1.2", repos=("octo/Hello",))
    assert query.link(before=7) == ("/tasks?repo=octo%2FHello&branch=release%2F1.2&issue=12"
                                    "&requester=Bob&before=7")


@pytest.mark.parametrize("query", [{"repo": "../etc"}, {"requester": "a" * 40},
                                   {"branch": "a..b\x7f"}, {"issue": "-3"}, {"limit": "201"}])
def test_malformed_filters_are_refused(query: dict[str, str]) -> None:
    with pytest.raises(BadRequest):
        parse(query, None)
