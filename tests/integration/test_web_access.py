"""Who sees what: a user sees the tasks of the repositories their GitHub account reaches through
the App, by page, live stream and API alike; others' tasks are 404s, as if they did not exist;
only those with permission on a repository (and admins) cancel or retry its tasks."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from porter.states import TaskState
from tests.fakes.world import ADMIN, OTHER_REPO, REPO, World, open_world
from tests.web_helpers import Browser, signed_in
from tests.web_sse import EventStream

HTML = {"Accept": "text/html"}


@pytest.fixture
async def world(tmp_path: Path, pem: str) -> AsyncIterator[World]:
    async with open_world(tmp_path, pem, env={"PORTER_ADMIN_LOGINS": "dana"}) as opened:
        opened.fake.set_permission(REPO, "carol", "read")  # reaches octo/hello, may not write
        for login in ("mallory", "dana"):
            opened.fake.add_user(login)  # no repository at all
        yield opened


async def as_user(world: World, login: str) -> Browser:
    return await signed_in(world, login)


async def two_tasks(world: World) -> tuple[int, int]:
    """One task in octo/hello and one in acme/widgets, still queued."""
    mine = await world.request("@porter fix the typo")
    theirs = await world.request("@porter make the widgets green", repo=OTHER_REPO,
                                 installation_id=43)
    return mine, theirs


def row_ids(page: str) -> set[int]:
    return {int(n) for n in re.findall(r'id="task-(\d+)"', page)}


async def test_a_user_sees_only_the_tasks_of_repositories_they_reach(world: World) -> None:
    mine, theirs = await two_tasks(world)
    carol = await as_user(world, "carol")

    feed = await carol.client.get("/", headers=HTML)
    assert row_ids(feed.text) == {mine}
    assert OTHER_REPO not in feed.text and "widgets green" not in feed.text

    listed = (await carol.client.get("/api/tasks")).json()["tasks"]
    assert [t["id"] for t in listed] == [mine]
    assert (await carol.client.get(f"/api/tasks?repo={OTHER_REPO}")).json()["tasks"] == []
    assert (await carol.client.get(f"/api/tasks/{mine}")).status_code == 200

    # A task elsewhere answers exactly as one that does not exist.
    missing = theirs + 100
    for path in ("/api/tasks/{}", "/api/tasks/{}/logs"):
        hidden = await carol.client.get(path.format(theirs))
        absent = await carol.client.get(path.format(missing))
        assert hidden.status_code == absent.status_code == 404
        assert hidden.json()["error"] == absent.json()["error"].replace(str(missing),
                                                                        str(theirs))
    page = await carol.client.get(f"/tasks/{theirs}", headers=HTML)
    assert page.status_code == 404 and "widgets" not in page.text
    await carol.client.aclose()


async def test_a_user_without_any_access_sees_nothing_anywhere(world: World) -> None:
    mine, theirs = await two_tasks(world)
    mallory = await as_user(world, "mallory")
    assert row_ids((await mallory.client.get("/", headers=HTML)).text) == set()
    assert (await mallory.client.get("/api/tasks")).json()["tasks"] == []
    for task_id in (mine, theirs):
        assert (await mallory.client.get(f"/tasks/{task_id}", headers=HTML)).status_code == 404
        assert (await mallory.client.get(f"/api/tasks/{task_id}")).status_code == 404
        async with EventStream(world, f"/live/tasks/{task_id}",
                               cookies=mallory.client.cookies) as stream:
            assert stream.status == 404
    await mallory.client.aclose()


async def test_the_feed_stream_carries_nothing_of_a_repository_the_viewer_does_not_reach(
        world: World) -> None:
    carol = await as_user(world, "carol")
    mallory = await as_user(world, "mallory")
    async with EventStream(world, "/live/feed", cookies=carol.client.cookies) as seen, \
            EventStream(world, "/live/feed", cookies=mallory.client.cookies) as blind:
        theirs = await world.request("@porter make the widgets green", repo=OTHER_REPO,
                                     installation_id=43)
        await world.settle()  # it starts, runs on a machine, then is cancelled
        await world.api("POST", f"/api/tasks/{theirs}/cancel")
        assert (await world.task(theirs)).state is TaskState.CANCELLED
        mine = await world.request("@porter fix the typo")
        # carol's stream is alive: her own repository's task comes through.
        assert (await seen.next("task", within=2))["id"] == mine
        await seen.drain(1.2)
        await blind.drain(0.1)
    for stream in (seen, blind):
        assert OTHER_REPO not in stream.body and "widgets" not in stream.body
        assert all(data["id"] != theirs for _, data in stream.seen)
    assert blind.seen == []


async def test_a_user_who_loses_access_stops_receiving_that_repositorys_tasks(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from porter.web import live

    monkeypatch.setattr(live, "RECHECK", 0.2)
    carol = await as_user(world, "carol")
    services = world.client._transport.app.state.services  # type: ignore[attr-defined]
    async with EventStream(world, "/live/feed", cookies=carol.client.cookies) as stream:
        first = await world.request("@porter fix the typo")
        assert (await stream.next("task", within=2))["id"] == first
        world.fake.set_permission(REPO, "carol", "none")
        services.access.forget(world.fake.user("carol").id)  # as when the cache runs out
        await stream.drain(0.5)  # the stream identifies her again
        second = await world.request("@porter fix it again", number=2)
        await stream.drain(1.5)
    assert all(data["id"] != second for _, data in stream.seen)


async def test_a_reader_cannot_cancel_or_retry_and_an_outsider_gets_404s(world: World) -> None:
    mine, theirs = await two_tasks(world)
    carol = await as_user(world, "carol")
    page = await carol.client.get(f"/tasks/{mine}", headers=HTML)
    assert "/cancel" not in page.text  # no button for her

    refused = await carol.client.post(f"/tasks/{mine}/cancel", data={"csrf": carol.csrf},
                                      headers=HTML)
    assert refused.status_code == 403 and "needs write access" in refused.text
    api = await carol.client.post(f"/api/tasks/{mine}/cancel",
                                  headers={"X-CSRF-Token": carol.csrf})
    assert api.status_code == 403
    for action in ("cancel", "retry"):
        hidden = await carol.client.post(f"/tasks/{theirs}/{action}", data={"csrf": carol.csrf})
        assert hidden.status_code == 404
        hidden = await carol.client.post(f"/api/tasks/{theirs}/{action}",
                                         headers={"X-CSRF-Token": carol.csrf})
        assert hidden.status_code == 404
    for task_id in (mine, theirs):
        assert (await world.task(task_id)).state is TaskState.QUEUED
    assert [e for e in await world.store.audit_entries() if e.action == "cancel"] == []
    await carol.client.aclose()


async def test_an_anonymous_caller_can_do_nothing(world: World) -> None:
    mine, _ = await two_tasks(world)
    for method, path in (("GET", "/api/tasks"), ("GET", f"/api/tasks/{mine}"),
                         ("POST", f"/api/tasks/{mine}/cancel"), ("POST", f"/tasks/{mine}/cancel"),
                         ("GET", "/live/feed"), ("GET", f"/live/tasks/{mine}")):
        response = await world.client.request(method, path)
        assert response.status_code in (401, 403), (method, path, response.status_code)
    assert (await world.task(mine)).state is TaskState.QUEUED


async def test_admins_see_and_control_every_repository(world: World) -> None:
    mine, theirs = await two_tasks(world)
    dana = await as_user(world, "dana")  # an admin by login, with no repository of her own
    assert row_ids((await dana.client.get("/", headers=HTML)).text) == {mine, theirs}
    assert "admin" in (await dana.client.get("/", headers=HTML)).text
    done = await dana.client.post(f"/tasks/{theirs}/cancel", data={"csrf": dana.csrf})
    assert done.status_code == 303
    assert (await world.task(theirs)).state is TaskState.CANCELLED
    [entry] = [e for e in await world.store.audit_entries() if e.action == "cancel"]
    assert (entry.actor, entry.source, entry.target) == ("dana", "page", f"task:{theirs}")

    # The admin token, as before: every task, and no CSRF token (no cookie to ride on).
    listed = await world.client.get("/api/tasks", headers=ADMIN)
    assert {t["id"] for t in listed.json()["tasks"]} == {mine, theirs}
    retried = await world.client.post(f"/api/tasks/{theirs}/retry", headers=ADMIN)
    assert retried.status_code == 200
    entries = [(e.action, e.actor, e.source) for e in await world.store.audit_entries()]
    assert ("retry", "operator", "api") in entries
    await dana.client.aclose()
