"""The dispatcher and reporter against a real store, the real job runner and the fake GitHub.

What is asserted is what a requester would see on GitHub (reactions on their comment, Porter's
comments and their bodies, how many of each) and what the task's record says.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from porter.admission import Limits
from porter.authorization import Authorizer
from porter.dispatcher import Dispatcher
from porter.github import GitHubApp
from porter.jobs import JobRunner
from porter.models import Task
from porter.reporting import Reporter
from porter.states import TaskState
from porter.status import marker
from porter.store import Store
from porter.webhooks import Trigger, decode_delivery
from tests.conftest import comment_payload
from tests.fakes.clock import Clock
from tests.fakes.github import FakeGitHub, Reaction
from tests.fakes.world import PUBLIC_URL, REPO, open_world

ISSUE = 1
AGENTS = frozenset({"claude", "codex"})
PERMISSION = rf"/repos/{REPO}/collaborators/[^/]+/permission"
S = TaskState


@dataclass
class Dispatching:
    """The shared world seen from the dispatcher: the requester's side on GitHub and the record."""

    fake: FakeGitHub
    store: Store
    clock: Clock
    github: GitHubApp
    reporter: Reporter
    runner: JobRunner
    launched: list[int] = field(default_factory=list)
    _delivery: int = 0

    def dispatcher(self, *, min_permission: str = "write",
                   allowlist: Sequence[str] = ()) -> Dispatcher:
        authorizer = Authorizer(self.github, min_permission=min_permission,
                                allowlist=allowlist, clock=self.clock)
        return Dispatcher(store=self.store, authorizer=authorizer, reporter=self.reporter,
                          starter=self, limits=Limits(total=10, per_installation=10),
                          public_url=PUBLIC_URL, clock=self.clock)

    async def start(self, task: Task) -> bool:
        # What a launcher does first for a machine: mint a read-only token for one repository.
        if task.id not in self.launched:
            assert task.installation_id is not None
            await self.github.read_token(task.installation_id, task.repo)
            self.launched.append(task.id)
        return True

    async def record(self, event: str, payload: dict[str, Any]) -> Task:
        self._delivery += 1
        trigger = decode_delivery(event, f"delivery-{self._delivery}", payload,
                                  handle="porter", agents=AGENTS)
        assert isinstance(trigger, Trigger), trigger
        [result] = await self.store.record_triggers([trigger], default_agent="claude")
        assert result.task_id is not None
        return await self.task(result.task_id)

    async def comment(self, user: str, body: str = "@porter fix the typo", *,
                      association: str = "OWNER", repo: str = REPO, number: int = ISSUE,
                      installation_id: int = 42) -> Task:
        """`user` comments on the issue; the task comes from the real webhook payload for it."""
        posted = self.fake.add_issue_comment(repo, number, body, user=user)
        payload = comment_payload("issue_comment", body, name="created.with-installation",
                                  id=posted.id, author_association=association)
        self._repoint(payload, user, repo, installation_id)
        payload["issue"]["number"] = number
        return await self.record("issue_comment", payload)

    async def review_comment(self, user: str, pull: int, body: str) -> Task:
        posted = self.fake.add_review_comment(REPO, pull, body, user=user)
        payload = comment_payload("pull_request_review_comment", body, id=posted.id)
        self._repoint(payload, user, REPO, 42)
        payload["pull_request"]["number"] = pull
        return await self.record("pull_request_review_comment", payload)

    def _repoint(self, payload: dict[str, Any], user: str, repo: str,
                 installation_id: int) -> None:
        owner, name = repo.split("/")
        payload["repository"]["full_name"] = repo
        payload["repository"]["name"] = name
        payload["repository"]["owner"]["login"] = owner
        payload["installation"]["id"] = installation_id
        for who in (payload["comment"]["user"], payload["sender"]):
            who["login"] = user
            who["id"] = self.fake.user(user).id

    async def task(self, task_id: int) -> Task:
        task = await self.store.get_task(task_id)
        assert task is not None
        return task

    async def settle(self, dispatcher: Dispatcher | None = None) -> None:
        """One dispatcher pass, then run jobs until none is due now."""
        if dispatcher is not None:
            await dispatcher.tick()
        for _ in range(10):
            if not await self.runner.run_due(self.clock.now):
                return
        raise AssertionError("jobs kept running")

    def porter_comments(self, number: int = ISSUE) -> list[str]:
        return [c.body for c in self.fake.comments(REPO, number) if c.user == self.fake.bot_login]

    def status_comments(self, task: Task) -> list[str]:
        return [body for body in self.porter_comments(task.issue_number)
                if marker(task.id) in body]

    def reactions(self, task: Task) -> list[str]:
        found: list[Reaction] = (
            self.fake.reactions(task.comment_id, subject="review_comment")
            if task.comment_kind == "review" else self.fake.reactions(task.comment_id))
        assert all(r.user == self.fake.bot_login for r in found)
        return [r.content for r in found]

    def body(self, comment_id: int) -> str | None:
        comment = self.fake.find_comment(comment_id)
        return None if comment is None else comment.body

    def narrowed_tokens(self) -> list[object]:
        return [t for t in self.fake.minted_tokens
                if t.repositories == frozenset({REPO}) and t.permissions.get("contents") == "read"]


@pytest.fixture
async def world(tmp_path: Path, pem: str) -> AsyncIterator[Dispatching]:
    """The shared world (tests/fakes/world.py), with one user for each role on the repository;
    the dispatcher is the one under test, its launcher a stand-in."""
    async with open_world(tmp_path, pem) as porter:
        for login, role in (("ann", "admin"), ("max", "maintain"), ("wes", "write"),
                            ("tri", "triage"), ("rea", "read")):
            porter.fake.set_permission(REPO, login, role)
        github = porter.runtime.github
        assert github is not None
        reporter = porter.runtime.reporter
        runner = JobRunner(porter.store, reporter.kinds(), clock=porter.clock)
        yield Dispatching(porter.fake, porter.store, porter.clock, github, reporter, runner)


# --- acknowledging an authorized request ---------------------------------------------------


async def test_a_writer_gets_one_eyes_and_one_status_comment(world: Dispatching) -> None:
    dispatcher = world.dispatcher()
    task = await world.comment("wes")

    await world.settle(dispatcher)
    await world.settle(dispatcher)  # a second pass adds nothing

    assert world.reactions(task) == ["eyes"]
    [status] = world.status_comments(task)
    assert world.porter_comments() == [status]
    assert status.startswith(f"⏳ Porter is on it — claude · task #{task.id}")
    assert f"{PUBLIC_URL}/tasks/{task.id}" in status
    assert "`@porter cancel` to stop" in status
    assert status.endswith(marker(task.id))
    task = await world.task(task.id)
    assert task.state is S.QUEUED  # the launcher moves it on, not the dispatcher
    assert task.authorized_at == world.clock.now
    assert task.status_comment_id is not None
    assert world.fake.find_comment(task.status_comment_id) is not None
    events = [(e.kind, e.message) for e in await world.store.task_events(task.id)]
    assert ("authorized", "wes has write access") in events
    assert world.launched == [task.id]
    assert len(world.narrowed_tokens()) == 1
    # The permission was asked once, though the task passed through two dispatcher passes.
    assert len(world.fake.calls_to("GET", PERMISSION)) == 1


async def test_a_review_comment_is_reacted_to_through_the_pulls_endpoint(
    world: Dispatching,
) -> None:
    world.fake.commit_files(REPO, "feature", {"src/app.py": b"print('hi')\n"})
    pull = world.fake.add_pull(REPO, head_ref="feature", title="Add the app", user="wes")
    number = pull.issue.number
    task = await world.review_comment("wes", number, "@porter rename this variable")
    assert task.comment_kind == "review"

    await world.settle(world.dispatcher())

    assert world.reactions(task) == ["eyes"]
    reacted = world.fake.calls_to("POST", rf"/repos/{REPO}/pulls/comments/{task.comment_id}"
                                          r"/reactions")
    assert [(c.status, c.json) for c in reacted] == [(201, {"content": "eyes"})]
    assert world.fake.calls_to("POST", rf"/repos/{REPO}/issues/comments/\d+/reactions") == []
    [status] = world.status_comments(task)
    assert world.porter_comments(number) == [status]
    assert f"{PUBLIC_URL}/tasks/{task.id}" in status


@pytest.mark.parametrize("login", ["ann", "max", "wes"])
async def test_admin_maintain_and_write_pass(world: Dispatching, login: str) -> None:
    task = await world.comment(login)
    await world.settle(world.dispatcher())
    assert world.reactions(task) == ["eyes"]
    assert len(world.status_comments(task)) == 1
    assert world.launched == [task.id]


# --- refusing ------------------------------------------------------------------------------


@pytest.mark.parametrize(("login", "role", "association"), [
    ("rea", "read", "OWNER"),
    ("rea", "read", "CONTRIBUTOR"),
    ("tri", "triage", "MEMBER"),
    ("stranger", "none", "COLLABORATOR"),
])
async def test_a_requester_without_write_gets_one_refusal_and_costs_nothing(
    world: Dispatching, login: str, role: str, association: str
) -> None:
    dispatcher = world.dispatcher()
    task = await world.comment(login, association=association)
    assert task.context["author_association"] == association  # what GitHub claimed; not trusted

    await world.settle(dispatcher)
    await world.settle(dispatcher)

    assert world.reactions(task) == ["confused"]
    reason = (f"@{login} needs write access to {REPO} to use Porter "
              f"(GitHub reports {role}).")
    [reply] = world.porter_comments()
    assert reply.startswith(f"Sorry, I can't do that: {reason}\n")
    assert world.status_comments(task) == []
    task = await world.task(task.id)
    assert (task.state, task.reason, task.authorized_at) == (S.REJECTED, reason, None)
    assert ("state.rejected", reason) in [
        (e.kind, e.message) for e in await world.store.task_events(task.id)]
    assert world.launched == []
    assert world.narrowed_tokens() == []


async def test_a_higher_minimum_refuses_a_writer(world: Dispatching) -> None:
    task = await world.comment("wes")
    await world.settle(world.dispatcher(min_permission="maintain"))
    assert world.reactions(task) == ["confused"]
    [reply] = world.porter_comments()
    assert "@wes needs maintain access to octo/hello to use Porter (GitHub reports write)." \
        in reply
    assert (await world.task(task.id)).state is S.REJECTED


async def test_the_allowlist_refuses_other_repositories_without_asking_github(
    world: Dispatching,
) -> None:
    task = await world.comment("ann")
    await world.settle(world.dispatcher(allowlist=["octo/other", "someone-else"]))

    reason = "Porter is not enabled for octo/hello on this server."
    assert world.reactions(task) == ["confused"]
    [reply] = world.porter_comments()
    assert reply.startswith(f"Sorry, I can't do that: {reason}")
    task = await world.task(task.id)
    assert (task.state, task.reason) == (S.REJECTED, reason)
    assert world.fake.calls_to("GET", PERMISSION) == []
    assert world.launched == []


async def test_an_owner_on_the_allowlist_covers_its_repositories(world: Dispatching) -> None:
    task = await world.comment("wes")
    await world.settle(world.dispatcher(allowlist=["octo"]))
    assert world.reactions(task) == ["eyes"]
    assert world.launched == [task.id]


async def test_a_failing_permission_check_waits_and_a_refusing_one_explains(
    world: Dispatching,
) -> None:
    dispatcher = world.dispatcher()
    task = await world.comment("wes")
    world.fake.fail("GET", PERMISSION, 502)
    await world.settle(dispatcher)
    assert (await world.task(task.id)).state is S.QUEUED
    assert world.reactions(task) == []
    assert world.porter_comments() == []

    await world.settle(dispatcher)  # GitHub is back
    assert world.reactions(task) == ["eyes"]

    other = await world.comment("max")
    world.fake.fail("GET", PERMISSION, 403,
                    body={"message": "Resource not accessible by integration"})
    await world.settle(dispatcher)
    other = await world.task(other.id)
    assert other.state is S.REJECTED
    assert other.reason == ("Porter could not check permissions: GitHub answered 403: "
                            "Resource not accessible by integration")
    assert world.reactions(other) == ["confused"]


async def test_the_permission_answer_is_cached_for_a_minute(world: Dispatching) -> None:
    dispatcher = world.dispatcher()
    first = await world.comment("wes")
    await world.settle(dispatcher)
    world.clock.now += 59
    second = await world.comment("wes", "@porter codex add tests")
    await world.settle(dispatcher)
    assert len(world.fake.calls_to("GET", PERMISSION)) == 1

    world.fake.set_permission(REPO, "wes", "read")  # demoted meanwhile
    world.clock.now += 2
    third = await world.comment("wes", "@porter and the docs")
    await world.settle(dispatcher)
    assert len(world.fake.calls_to("GET", PERMISSION)) == 2
    assert [(await world.task(t.id)).state for t in (first, second, third)] == [
        S.QUEUED, S.QUEUED, S.REJECTED]
    assert world.reactions(third) == ["confused"]


# --- the status comment through a task's life ----------------------------------------------


async def step(world: Dispatching, task: Task, expected: TaskState, target: TaskState,
               **fields: Any) -> str:
    """Move the task on as the services do (the move enqueues its own status job), run the
    jobs; the one status body."""
    if fields:
        await world.store.update_task(task.id, **fields)
    assert await world.store.transition(task.id, expected=expected, target=target)
    await world.settle()
    [body] = world.status_comments(task)
    assert world.porter_comments(task.issue_number) == [body]
    return body


async def test_the_status_comment_is_edited_in_place_until_success(world: Dispatching) -> None:
    task = await world.comment("wes", "@porter codex --model o3 fix the typo")
    await world.settle(world.dispatcher())
    [first] = world.status_comments(task)
    assert "codex (o3)" in first
    assert "**queued …** · machine started · agent running · publishing · done" in first

    world.clock.now += 5
    starting = await step(world, task, S.QUEUED, S.STARTING, started_at=world.clock.now)
    assert "queued ✓ · **machine started …** · agent running" in starting
    world.clock.now += 42
    running = await step(world, task, S.STARTING, S.RUNNING)
    assert "machine started ✓ · **agent running …** · publishing" in running
    assert "started 42s ago" in running
    world.clock.now += 200
    publishing = await step(world, task, S.RUNNING, S.PUBLISHING)
    assert "agent running ✓ · **publishing …** · done" in publishing
    world.clock.now += 10
    done = await step(world, task, S.PUBLISHING, S.SUCCEEDED, pr_number=7,
                      pr_url=f"https://github.com/{REPO}/pull/7", files_changed=3,
                      cost_usd=0.3791, finished_at=world.clock.now)
    assert done == (f"✅ Opened #7 — Spelling error in the README file (3 files) · codex (o3) · "
                    f"4m 12s · $0.38\n\n[Task #{task.id}]({PUBLIC_URL}/tasks/{task.id})\n"
                    f"{marker(task.id)}")

    assert world.reactions(task) == ["eyes", "rocket"]
    created = world.fake.calls_to("POST", rf"/repos/{REPO}/issues/{ISSUE}/comments")
    edited = world.fake.calls_to("PATCH", rf"/repos/{REPO}/issues/comments/\d+")
    assert len(created) == 1
    assert len(edited) == 4
    assert (await world.task(task.id)).status_comment_id == int(edited[0].path.rsplit("/")[-1])


async def test_a_failure_says_where_and_why_and_how_to_retry(world: Dispatching) -> None:
    task = await world.comment("wes")
    await world.settle(world.dispatcher())
    await step(world, task, S.QUEUED, S.STARTING, started_at=world.clock.now)
    await step(world, task, S.STARTING, S.RUNNING)
    assert await world.store.transition(
        task.id, expected=S.RUNNING, target=S.FAILED, stage="agent",
        reason="the agent exited with status 2:\nTraceback (most recent call last):\n  boom")
    await world.settle()

    [body] = world.status_comments(task)
    assert world.porter_comments() == [body]
    assert body.startswith(
        "❌ Failed while running the agent: the agent exited with status 2: Traceback (most "
        "recent call last): boom\n\n")
    assert f"Log: {PUBLIC_URL}/tasks/{task.id} · `@porter retry` to try again." in body
    assert world.reactions(task) == ["eyes", "confused"]

    await world.reporter.acknowledge(task)  # rendered again: still one 😕, one comment
    await world.settle()
    assert world.reactions(task) == ["eyes", "confused"]
    assert len(world.porter_comments()) == 1


async def test_a_crash_before_the_id_was_recorded_edits_the_comment_it_finds(
    world: Dispatching,
) -> None:
    task = await world.comment("wes")
    await world.settle(world.dispatcher())
    [posted] = world.fake.comments(REPO, ISSUE)[1:]
    # Porter crashed after GitHub made the comment, before the store learned its id.
    await world.store.update_task(task.id, status_comment_id=None)

    body = await step(world, task, S.QUEUED, S.STARTING, started_at=world.clock.now)

    assert "**machine started …**" in body
    assert world.body(posted.id) == body
    assert len(world.fake.calls_to("POST", rf"/repos/{REPO}/issues/{ISSUE}/comments")) == 1
    assert (await world.task(task.id)).status_comment_id == posted.id


# Another App's bot is as much a stranger as a user: only this App's own bot wrote Porter's markers.
PLANTERS = ["mallory", "dependabot[bot]"]


@pytest.mark.parametrize("planter", PLANTERS)
async def test_someone_elses_comment_with_the_marker_is_left_alone(world: Dispatching,
                                                                   planter: str) -> None:
    task = await world.comment("wes")
    # Task ids are easy to guess; anyone may post a comment carrying the next task's marker.
    bait = world.fake.add_issue_comment(REPO, ISSUE, f"gotcha\n{marker(task.id)}", user=planter)

    await world.settle(world.dispatcher())
    await step(world, task, S.QUEUED, S.STARTING)
    await world.store.update_task(task.id, status_comment_id=None)  # as after a crash
    await step(world, task, S.STARTING, S.RUNNING)

    assert world.body(bait.id) == f"gotcha\n{marker(task.id)}"
    [status] = world.status_comments(task)
    assert status.startswith("⏳ Porter is on it")
    assert (await world.task(task.id)).status_comment_id != bait.id
    # Who the App's bot is was asked once, however often a marker was looked for.
    assert len(world.fake.calls_to("GET", "/app")) == 1


@pytest.mark.parametrize("planter", PLANTERS)
async def test_a_forged_reply_marker_does_not_silence_a_refusal(world: Dispatching,
                                                                planter: str) -> None:
    task = await world.comment("rea")
    world.fake.add_issue_comment(REPO, ISSUE, f"<!-- porter:reply refused:{task.id} -->",
                                 user=planter)
    await world.settle(world.dispatcher())
    [reply] = world.porter_comments()
    assert reply.startswith("Sorry, I can't do that: @rea needs write access")


async def test_tasks_on_the_same_issue_each_get_their_own_status_comment(
    world: Dispatching,
) -> None:
    dispatcher = world.dispatcher()
    first = await world.comment("wes")
    second = await world.comment("wes", "@porter codex add tests")  # waits behind the first
    await world.settle(dispatcher)
    assert len(world.status_comments(first)) == 1
    assert len(world.status_comments(second)) == 1
    [queued_behind] = [c for c in world.porter_comments()
                       if c not in world.status_comments(first) + world.status_comments(second)]
    assert queued_behind.startswith(f"Queued behind task #{first.id}")
    assert world.reactions(first) == ["eyes"]
    assert world.reactions(second) == ["eyes"]


# --- crashes between the dispatcher's writes -----------------------------------------------


class Crash(Exception):
    """Porter died right after a write had committed."""


def crash_once_after(monkeypatch: pytest.MonkeyPatch, store: Store, method: str) -> None:
    original = getattr(store, method)
    crashed = False

    async def then_die(*args: Any, **kwargs: Any) -> Any:
        nonlocal crashed
        result = await original(*args, **kwargs)
        if not crashed:
            crashed = True
            raise Crash(method)
        return result

    monkeypatch.setattr(store, method, then_die)


async def test_a_crash_after_authorizing_still_acknowledges(
    world: Dispatching, monkeypatch: pytest.MonkeyPatch
) -> None:
    dispatcher = world.dispatcher()
    task = await world.comment("wes")
    crash_once_after(monkeypatch, world.store, "update_task")  # the authorized_at write
    with pytest.raises(Crash):
        await dispatcher.tick()

    await world.settle(dispatcher)  # after the restart

    assert world.reactions(task) == ["eyes"]
    assert len(world.status_comments(task)) == 1
    assert world.launched == [task.id]


async def test_a_crash_after_refusing_still_tells_the_requester_once(
    world: Dispatching, monkeypatch: pytest.MonkeyPatch
) -> None:
    dispatcher = world.dispatcher()
    task = await world.comment("rea")
    crash_once_after(monkeypatch, world.store, "finish_task")  # queued → rejected
    with pytest.raises(Crash):
        await dispatcher.tick()

    await world.settle(dispatcher)
    await world.settle(dispatcher)

    assert (await world.task(task.id)).state is S.REJECTED
    assert world.reactions(task) == ["confused"]
    [reply] = world.porter_comments()
    assert reply.startswith("Sorry, I can't do that: @rea needs write access")
