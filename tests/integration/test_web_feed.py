"""The feed (`/`), the task page (`/tasks/{id}`), their live streams, and cancel and retry from
the page, as a signed-in person meets them."""

from __future__ import annotations

import html
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from porter.models import TaskFilter
from porter.states import TaskState
from tests.fakes.world import CANARY, OTHER_REPO, World, open_world
from tests.web_helpers import Browser, signed_in
from tests.web_sse import EventStream

HTML = {"Accept": "text/html"}


@pytest.fixture
async def world(tmp_path: Path, pem: str, store_database: Path | str) -> AsyncIterator[World]:
    async with open_world(tmp_path, pem, database=store_database) as opened:
        yield opened


@pytest.fixture
async def alice(world: World) -> AsyncIterator[Browser]:
    browser = await signed_in(world, "alice")
    yield browser
    await browser.client.aclose()


def rows(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr class="task-row" id="task-(\d+)"', page)]


async def finished_with_a_pull_request(world: World) -> int:
    """A task that ran, logged, cost money and opened a pull request."""
    task_id, machine = await world.started("@porter fix the typo")
    await machine.log(0, "".join(f"step {n}: reading README.md\n" for n in range(200)))
    response = await machine.complete({
        "status": "succeeded", "summary": "Fixed the typo in the README.", "exit_code": 0,
        "cost_usd": 0.4213, "usage": {"input_tokens": 1200, "output_tokens": 340},
        "changeset": world.changeset()})
    assert response.status_code == 200, response.text
    await world.settle()
    task = await world.task(task_id)
    assert task.state is TaskState.SUCCEEDED and task.pr_number is not None
    return task_id


# --- the feed --------------------------------------------------------------------------------


async def test_an_anonymous_visitor_is_asked_to_sign_in_and_sees_no_task(world: World) -> None:
    await world.request("@porter fix the typo")
    page = await world.client.get("/", headers=HTML)
    assert page.status_code == 200
    assert "Sign in with GitHub" in page.text
    assert rows(page.text) == [] and "fix the typo" not in page.text
    assert (await world.client.get("/live/feed")).status_code == 401


async def test_the_feed_lists_the_newest_tasks_with_what_a_reader_needs(
        world: World, alice: Browser) -> None:
    done = await finished_with_a_pull_request(world)
    queued = await world.request("@porter codex make the widgets green", repo=OTHER_REPO,
                                 installation_id=43)

    page = await alice.client.get("/", headers=HTML)

    assert page.status_code == 200
    assert rows(page.text) == [queued, done]  # newest first
    task = await world.task(done)
    start = page.text.index(f'id="task-{done}"')
    row = page.text[start:page.text.index("</tr>", start)]
    for text in ("octo/hello", f"{world.settings.github_url}/octo/hello/issues/1", "@alice",
                 "succeeded", "$0.42", f"/octo/hello/pull/{task.pr_number}",
                 f'href="/tasks/{done}"'):
        assert text in row, text
    assert "acme/widgets" in page.text and "codex" in page.text
    assert re.search(r'id="feed-empty"\s+hidden', page.text)


async def test_a_user_with_no_visible_task_sees_an_empty_feed(world: World) -> None:
    await world.request("@porter fix the typo")
    world.fake.add_user("nobody")
    browser = await signed_in(world, "nobody")
    page = await browser.client.get("/", headers=HTML)
    assert rows(page.text) == []
    assert "No tasks yet" in page.text and "fix the typo" not in page.text
    await browser.client.aclose()


async def test_a_new_task_and_its_state_changes_reach_an_open_feed(
        world: World, alice: Browser) -> None:
    page = await alice.client.get("/", headers=HTML)
    live = re.search(r'data-live="([^"]+)"', page.text)
    assert live is not None
    async with EventStream(world, live.group(1).replace("&amp;", "&"),
                           cookies=alice.client.cookies) as stream:
        assert stream.status == 200
        started = time.monotonic()
        task_id = await world.request("@porter fix the typo")
        created = await stream.next("task", within=2)
        assert time.monotonic() - started < 2
        assert created["id"] == task_id and created["state"] == "queued"
        assert created["html"].startswith(f'<tr class="task-row" id="task-{task_id}"')
        assert "fix the typo" in created["html"]

        await world.settle()  # dispatched: queued → starting
        changed = await stream.next("task", within=2)
        assert changed["id"] == task_id and changed["state"] == "starting"
        assert "starting" in changed["html"]
        # Each change once: no event repeats a change already sent.
        assert await stream.drain(1.5) == []


async def test_the_feed_stream_resumes_where_the_browser_left_off(
        world: World, alice: Browser) -> None:
    first = await world.request("@porter fix the typo")
    cursor = world.clock.now + 5  # past the first task's change and the stream's overlap
    world.clock.now += 10
    second = await world.request("@porter fix it again", number=2)
    async with EventStream(world, "/live/feed", cookies=alice.client.cookies,
                           headers={"Last-Event-ID": f"{cursor:.6f}"}) as stream:
        sent = await stream.drain(1.5)
    assert [data["id"] for name, data in sent if name == "task"] == [second]
    assert first != second


async def test_the_stream_sends_heartbeats_and_stops_when_the_tab_closes(
        world: World, alice: Browser, monkeypatch: pytest.MonkeyPatch) -> None:
    from porter.web import live

    monkeypatch.setattr(live, "HEARTBEAT", 0.2)
    async with EventStream(world, "/live/feed", cookies=alice.client.cookies) as stream:
        await stream.drain(1.2)
        assert ": keep-alive\nid: " in stream.body  # a reconnect resumes from there
    assert stream.finished


# --- the task page ---------------------------------------------------------------------------


async def test_the_task_page_shows_the_whole_story_of_a_task(world: World, alice: Browser
                                                            ) -> None:
    task_id = await finished_with_a_pull_request(world)
    task = await world.task(task_id)
    run = await world.run(task_id)

    page = await alice.client.get(f"/tasks/{task_id}", headers=HTML)

    assert page.status_code == 200
    text = page.text
    github = world.settings.github_url
    for kind in ("state.queued", "state.starting", "state.running", "state.publishing",
                 "state.succeeded"):
        assert kind in text, kind
    assert f"{github}/octo/hello/issues/1" in text
    assert f"{github}/octo/hello/pull/{task.pr_number}" in text
    assert "$0.42" in text and "input tokens" in text and "1200" in text
    assert "step 199: reading README.md" in text  # the log
    assert "Fixed the typo in the README." in text  # the summary
    assert run.machine_id is not None and run.machine_id in text
    assert "fix the typo" in text and "What the agent was sent" in text
    assert f'action="/tasks/{task_id}/retry"' in text  # alice may write: she may retry
    assert f'action="/tasks/{task_id}/cancel"' not in text  # nothing to cancel


async def test_the_page_shows_the_prompt_the_machine_got_with_secrets_redacted(
        world: World, alice: Browser) -> None:
    task_id, machine = await world.started(f"@porter fix the typo, the key is {CANARY}")
    spec = (await machine.spec()).json()
    assert CANARY in spec["prompt"]  # the agent needs its instruction as given

    page = await alice.client.get(f"/tasks/{task_id}", headers=HTML)

    prompt = re.search(r'<pre class="prompt">(.*?)</pre>', page.text, re.S)
    assert prompt is not None
    assert CANARY not in prompt.group(1) and "[REDACTED]" in prompt.group(1)
    assert html.unescape(prompt.group(1)) == spec["prompt"].replace(CANARY, "[REDACTED]")


async def test_the_task_stream_carries_the_log_and_state_changes(
        world: World, alice: Browser) -> None:
    task_id, machine = await world.started("@porter fix the typo")
    page = await alice.client.get(f"/tasks/{task_id}", headers=HTML)
    live = re.search(r'id="task-head" data-live="([^"]+)"', page.text)
    assert live is not None
    async with EventStream(world, live.group(1).replace("&amp;", "&"),
                           cookies=alice.client.cookies) as stream:
        first = await stream.next("state")
        assert first["state"] == "running" and f"Task #{task_id}" in first["head"]
        assert f'action="/tasks/{task_id}/cancel"' in first["head"]

        await machine.log(0, "".join(f"line {n}\n" for n in range(500)))
        logged = await stream.next("log", within=2)
        assert logged["text"].startswith("line 0\n")

        await machine.complete({"status": "failed", "exit_code": 3})
        ended = await stream.next("state", within=2)
        assert ended["state"] == "failed"
        assert "state.failed" in ended["timeline"]
        assert f'action="/tasks/{task_id}/retry"' in ended["head"]
        tail = [data for name, data in await stream.drain(1.2) if name == "log"]
        assert "line 499" in "".join(logged["text"] + "".join(d["text"] for d in tail))


async def test_the_task_page_asks_an_anonymous_visitor_to_sign_in(world: World) -> None:
    task_id = await world.request("@porter fix the typo")
    page = await world.client.get(f"/tasks/{task_id}", headers=HTML)
    assert page.status_code == 401
    assert "Sign in with GitHub" in page.text and "fix the typo" not in page.text
    assert (await world.client.get(f"/tasks/{task_id + 1}", headers=HTML)).status_code == 401


async def test_a_missing_task_is_a_404(world: World, alice: Browser) -> None:
    assert (await alice.client.get("/tasks/999", headers=HTML)).status_code == 404
    assert (await alice.client.get("/api/tasks/999")).status_code == 404


# --- cancel and retry from the page ----------------------------------------------------------


async def test_cancel_and_retry_from_the_page_are_audited(world: World, alice: Browser
                                                          ) -> None:
    task_id, _ = await world.started("@porter fix the typo")

    cancelled = await alice.client.post(f"/tasks/{task_id}/cancel",
                                        data={"csrf": alice.csrf}, headers=HTML)

    assert cancelled.status_code == 303
    assert cancelled.headers["location"] == f"/tasks/{task_id}?done=cancelled"
    assert (await world.task(task_id)).state is TaskState.CANCELLED
    page = await alice.client.get(cancelled.headers["location"], headers=HTML)
    assert "Cancelled." in page.text

    retried = await alice.client.post(f"/tasks/{task_id}/retry", data={"csrf": alice.csrf},
                                      headers=HTML)
    assert retried.headers["location"] == f"/tasks/{task_id}?done=retried"
    task = await world.task(task_id)
    assert task.state is TaskState.QUEUED and task.attempt == 2

    entries = [e for e in await world.store.audit_entries() if e.action in ("cancel", "retry")]
    assert [(e.action, e.actor, e.source, e.target) for e in reversed(entries)] == [
        ("cancel", "alice", "page", f"task:{task_id}"),
        ("retry", "alice", "page", f"task:{task_id}")]
    assert all(e.actor_id == world.fake.user("alice").id for e in entries)


async def test_a_cancel_without_the_csrf_token_is_refused_and_the_task_goes_on(
        world: World, alice: Browser) -> None:
    task_id, _ = await world.started("@porter fix the typo")
    for form in ({}, {"csrf": "forged"}, {"csrf": ""}):
        refused = await alice.client.post(f"/tasks/{task_id}/cancel", data=form, headers=HTML)
        assert refused.status_code == 403, form
    for headers in ({}, {"X-CSRF-Token": "forged"}):
        refused = await alice.client.post(f"/api/tasks/{task_id}/cancel", headers=headers)
        assert refused.status_code == 403, headers
    assert (await alice.client.post(f"/tasks/{task_id}/retry", data={})).status_code == 403
    assert (await world.task(task_id)).state is TaskState.RUNNING
    assert [e for e in await world.store.audit_entries() if e.action == "cancel"] == []


async def test_cancel_by_api_with_a_session_needs_the_header_and_is_audited(
        world: World, alice: Browser) -> None:
    task_id = await world.request("@porter fix the typo")
    response = await alice.client.post(f"/api/tasks/{task_id}/cancel",
                                       headers={"X-CSRF-Token": alice.csrf})
    assert response.status_code == 200, response.text
    assert response.json()["task"]["state"] == "cancelled"
    [entry] = [e for e in await world.store.audit_entries() if e.action == "cancel"]
    assert (entry.actor, entry.source) == ("alice", "api")


async def test_cancel_and_retry_by_comment_are_audited_as_comments(world: World) -> None:
    task_id = await world.request("@porter fix the typo")
    await world.comment("@porter cancel")
    await world.settle()
    assert (await world.task(task_id)).state is TaskState.CANCELLED
    await world.comment("@porter retry", user="bob")
    await world.settle()
    entries = [(e.action, e.actor, e.source) for e in await world.store.audit_entries()]
    assert ("cancel", "alice", "comment") in entries
    assert ("retry", "bob", "comment") in entries


# --- the store's reads behind them -----------------------------------------------------------


async def test_a_viewer_reaching_thousands_of_repositories_is_one_bound_value(
        world: World) -> None:
    mine = await world.request("@porter fix the typo")
    await world.request("@porter make the widgets green", repo=OTHER_REPO, installation_id=43)
    many = (*(f"org/repo-{n}" for n in range(40_000)), "octo/hello")
    assert [t.id for t in await world.store.list_tasks(TaskFilter(repos=many))] == [mine]
    assert [t.id for t in await world.store.tasks_changed_since(many, 0)] == [mine]
    assert await world.store.list_tasks(TaskFilter(repos=())) == []
    assert len(await world.store.list_tasks(TaskFilter(repos=None))) == 2


async def test_the_log_tail_is_the_end_of_the_log_and_its_last_chunk(world: World) -> None:
    task_id, machine = await world.started("@porter fix the typo")
    await machine.log(0, "".join(f"line {n:04d}\n" for n in range(3000)))
    run = await world.run(task_id)
    chunks = await world.store.run_logs(run.id)
    whole = "".join(text for _, text in chunks)
    text, last = await world.store.run_log_tail(run.id, max_chars=100)
    assert text == whole[-100:] and last == chunks[-1][0]
    assert await world.store.run_log_tail("no-such-run", max_chars=100) == ("", -1)
    after = await world.store.run_logs_after(run.id, -1, limit=1)
    assert after == chunks[:1]
    assert await world.store.run_logs_after(run.id, last) == []
