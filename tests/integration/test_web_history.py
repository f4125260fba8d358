"""The history (`/tasks`) and its type-ahead (`/history/suggest`): filters, keyset pages, who
sees what, and what a malformed filter is told."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from porter.states import TaskState
from tests.fakes.world import ADMIN, OTHER_REPO, REPO, World, open_world
from tests.web_helpers import Browser, signed_in

HTML = {"Accept": "text/html"}
AS_ADMIN = {**ADMIN, **HTML}
S = TaskState
# The steps from queued to each state, through the store's own transitions.
PATHS = {
    S.QUEUED: [], S.REJECTED: [S.REJECTED], S.FAILED: [S.FAILED], S.CANCELLED: [S.CANCELLED],
    S.RUNNING: [S.STARTING, S.RUNNING], S.TIMED_OUT: [S.STARTING, S.TIMED_OUT],
    S.SUCCEEDED: [S.STARTING, S.RUNNING, S.PUBLISHING, S.SUCCEEDED],
}


@pytest.fixture
async def world(tmp_path: Path, pem: str) -> AsyncIterator[World]:
    async with open_world(tmp_path, pem) as opened:
        # carol reaches octo/hello only; acme/widgets is another installation she cannot see.
        opened.fake.set_permission(REPO, "carol", "read")
        yield opened


async def add(world: World, *, repo: str = REPO, number: int = 1, user: str = "alice",
              agent: str = "claude", state: TaskState = S.QUEUED, branch: str = "main",
              text: str = "fix the typo") -> int:
    payload = world.payload(f"@porter {agent} {text}", user=user, repo=repo, number=number,
                            installation_id=42 if repo == REPO else 43)
    task = await world.record("issue_comment", payload)
    await world.store.update_task(task.id, base_ref=branch)
    current = S.QUEUED
    for target in PATHS[state]:
        assert await world.store.transition(task.id, expected=current, target=target)
        current = target
    return task.id


def rows(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr class="task-row" id="task-(\d+)"', page)]


def link(page: str, rel: str) -> str | None:
    found = re.search(rf'<a href="([^"]*)" rel="{rel}">', page)
    return html.unescape(found.group(1)) if found else None


async def ids(world: World, query: str) -> list[int]:
    page = await world.client.get(f"/tasks?{query}", headers=AS_ADMIN)
    assert page.status_code == 200, page.text
    return rows(page.text)


async def test_each_filter_narrows_the_history_and_they_combine(world: World) -> None:
    a = await add(world, state=S.SUCCEEDED)
    b = await add(world, number=2, user="bob", agent="codex", state=S.FAILED,
                  branch="release/1.2")
    c = await add(world, repo=OTHER_REPO, user="bob", state=S.FAILED)
    d = await add(world, number=2, agent="codex", state=S.CANCELLED, branch="release/1.2")
    e = await add(world, number=3, user="bob", state=S.TIMED_OUT)

    assert await ids(world, "") == [e, d, c, b, a]
    assert await ids(world, "repo=octo/hello") == [e, d, b, a]
    assert await ids(world, "repo=acme/widgets") == [c]
    assert await ids(world, "state=failed") == [c, b]
    assert await ids(world, "state=timed_out") == [e]
    assert await ids(world, "agent=codex") == [d, b]
    assert await ids(world, "requester=bob") == [e, c, b]
    assert await ids(world, "requester=%40bob") == [e, c, b]  # "@bob" as people write it
    assert await ids(world, "branch=release%2F1.2") == [d, b]
    assert await ids(world, "issue=2") == [d, b]
    assert await ids(world, "issue=%232&repo=octo%2Fhello") == [d, b]  # "#2"
    assert await ids(world, "repo=octo/hello&state=failed&agent=codex&requester=bob"
                            "&branch=release/1.2&issue=2") == [b]
    assert await ids(world, "repo=octo/hello&state=failed&requester=alice") == []
    # A blank field, as a submitted form sends it, is no filter.
    assert await ids(world, "repo=&branch=&issue=&state=&agent=&requester=bob") == [e, c, b]


async def test_the_page_shows_the_filters_applied_and_escapes_task_text(world: World) -> None:
    hostile = await add(world, text='<img src=x onerror="alert(1)"> fix it', state=S.FAILED)
    await add(world, repo=OTHER_REPO)

    page = await world.client.get("/tasks?repo=octo/hello&state=failed&agent=claude",
                                  headers=AS_ADMIN)

    assert rows(page.text) == [hostile]
    assert "<img src=x" not in page.text and "&lt;img src=x" in page.text
    assert 'name="repo" value="octo/hello"' in page.text
    assert '<option value="failed" selected>' in page.text
    assert '<option value="claude" selected>' in page.text
    assert 'href="/tasks">Clear filters' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "<script>" not in page.text  # no inline script: the CSP would refuse it
    assert '<script src="/static/history.js' in page.text


async def test_keyset_pages_keep_the_filters_and_cover_every_task_once(world: World) -> None:
    wanted = []
    for n in range(11):
        failed = await add(world, number=1 + n % 4, state=S.FAILED)
        wanted.append(failed)
        await add(world, number=1 + n % 4, state=S.SUCCEEDED)  # filtered out, between them
    wanted.reverse()

    url: str | None = "/tasks?state=failed&repo=octo%2Fhello&limit=4"
    pages: list[list[int]] = []
    while url:
        assert "state=failed" in url and "repo=octo%2Fhello" in url and "limit=4" in url
        page = await world.client.get(url, headers=AS_ADMIN)
        assert page.status_code == 200
        pages.append(rows(page.text))
        url = link(page.text, "next")
    assert [len(p) for p in pages] == [4, 4, 3]
    assert [task for p in pages for task in p] == wanted  # newest first, none twice or skipped

    # And back up through the newer pages, to the same pages.
    back: list[list[int]] = []
    url = link((await world.client.get(
        f"/tasks?state=failed&repo=octo%2Fhello&limit=4&before={pages[1][-1]}",
        headers=AS_ADMIN)).text, "prev")
    while url:
        assert "state=failed" in url and "limit=4" in url
        page = await world.client.get(url, headers=AS_ADMIN)
        back.append(rows(page.text))
        url = link(page.text, "prev")
    assert back == [pages[1], pages[0]]
    first = await world.client.get("/tasks?state=failed&repo=octo%2Fhello&limit=4",
                                   headers=AS_ADMIN)
    assert link(first.text, "prev") is None and link(first.text, "next") is not None


async def test_a_user_sees_only_the_tasks_of_repositories_they_reach(world: World) -> None:
    mine = await add(world, state=S.FAILED, branch="main")
    await add(world, repo=OTHER_REPO, user="carol", state=S.FAILED, branch="secret-plan")
    theirs_too = await add(world, repo=OTHER_REPO, user="bob", branch="release/9")
    carol = await signed_in(world, "carol")
    try:
        client = carol.client
        page = await client.get("/tasks", headers=HTML)
        assert rows(page.text) == [mine]
        assert OTHER_REPO not in page.text
        # Even when asked by name, by the requester, by state or by branch.
        for query in (f"repo={OTHER_REPO}", "requester=carol", "state=failed",
                      "branch=secret-plan", "issue=1", f"before={theirs_too + 1}"):
            found = rows((await client.get(f"/tasks?{query}", headers=HTML)).text)
            assert found in ([], [mine]), query
        assert rows((await client.get("/tasks?repo=OCTO/Hello", headers=HTML)).text) == [mine]

        async def suggested(query: str) -> list[str]:
            response = await client.get(f"/history/suggest?{query}")
            assert response.status_code == 200, response.text
            assert response.headers["cache-control"] == "no-store"
            values: list[str] = response.json()["values"]
            return values

        assert await suggested("field=repo&q=") == [REPO]
        assert await suggested("field=repo&q=widg") == []
        assert await suggested("field=branch&q=") == ["main"]
        assert await suggested("field=branch&q=secret") == []
        assert await suggested(f"field=branch&q=&repo={OTHER_REPO}") == []
    finally:
        await carol.client.aclose()


async def test_someone_who_reaches_nothing_is_told_so(world: World) -> None:
    await add(world)
    nobody = await signed_in(world, "nobody")
    try:
        page = await nobody.client.get("/tasks", headers=HTML)
        assert page.status_code == 200 and rows(page.text) == []
        assert "You reach no repository" in page.text
        response = await nobody.client.get("/history/suggest?field=repo&q=")
        assert response.json()["values"] == []
    finally:
        await nobody.client.aclose()


async def test_signed_out_visitors_are_asked_to_sign_in(world: World) -> None:
    await add(world)
    page = await world.client.get("/tasks?state=failed", headers=HTML)
    assert page.status_code == 200 and rows(page.text) == []
    assert "Sign in with GitHub" in page.text
    assert "/login?next=/tasks%3Fstate%3Dfailed" in page.text
    suggestions = await world.client.get("/history/suggest?field=repo&q=")
    assert suggestions.json()["values"] == []


async def test_type_ahead_matches_anywhere_in_the_name_best_first(world: World) -> None:
    await add(world, branch="main")
    await add(world, branch="release/1.2")
    await add(world, repo=OTHER_REPO, branch="release/2.0")

    async def suggested(query: str) -> list[str]:
        response = await world.client.get(f"/history/suggest?{query}", headers=ADMIN)
        assert response.status_code == 200, response.text
        values: list[str] = response.json()["values"]
        return values

    assert await suggested("field=repo&q=") == [OTHER_REPO, REPO]
    assert await suggested("field=repo&q=HEL") == [REPO]
    assert await suggested("field=repo&q=wid") == [OTHER_REPO]
    assert await suggested("field=repo&q=C") == [OTHER_REPO, REPO]
    assert await suggested("field=branch&q=rel") == ["release/1.2", "release/2.0"]
    assert await suggested("field=branch&q=1.2") == ["release/1.2"]
    assert await suggested(f"field=branch&q=&repo={REPO}") == ["main", "release/1.2"]


@pytest.mark.parametrize(("query", "message"), [
    ("state=bogus", "state must be one of queued, starting"),
    ("repo=octo", "repo must be a repository's owner/name"),
    ("repo=a/b/c", "repo must be a repository's owner/name"),
    ("issue=twelve", "issue must be a whole number"),
    ("issue=%C2%B2", "issue must be a whole number"),
    ("requester=not%20a%20login", "requester must be a GitHub login"),
    ("agent=%3Cscript%3E", "agent must be an agent's name"),
    ("branch=a%20b", "branch must be a branch name"),
    ("branch=x%00y", "branch must be a branch name"),
    ("before=-1", "before must be a whole number"),
    ("before=3&after=1", "give before or after, not both"),
    ("limit=0", "limit must be from 1 to 200"),
    ("limit=100000", "limit must be from 1 to 200"),
])
async def test_a_malformed_filter_is_a_400_that_says_what_was_expected(
        world: World, query: str, message: str) -> None:
    response = await world.client.get(f"/tasks?{query}", headers=ADMIN)
    assert response.status_code == 400
    assert message in response.json()["error"]
    page = await world.client.get(f"/tasks?{query}", headers=AS_ADMIN)
    assert page.status_code == 400
    assert message in html.unescape(page.text)


@pytest.mark.parametrize(("query", "message"), [
    ("field=owner&q=a", "field must be repo or branch"),
    ("field=repo&q=" + "a" * 201, "q must be at most 200 characters"),
    ("field=branch&repo=nope", "repo must be a repository's owner/name"),
])
async def test_a_malformed_suggestion_request_is_a_400(world: World, query: str,
                                                       message: str) -> None:
    response = await world.client.get(f"/history/suggest?{query}", headers=ADMIN)
    assert response.status_code == 400
    assert message in response.json()["error"]


async def test_a_user_who_reaches_both_repositories_sees_both(world: World) -> None:
    a = await add(world)
    b = await add(world, repo=OTHER_REPO)
    alice: Browser = await signed_in(world, "alice")
    try:
        assert rows((await alice.client.get("/tasks", headers=HTML)).text) == [b, a]
        response = await alice.client.get("/history/suggest?field=repo&q=")
        assert response.json()["values"] == [OTHER_REPO, REPO]
    finally:
        await alice.client.aclose()
