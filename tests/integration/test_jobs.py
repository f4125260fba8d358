"""The job runner against a real store and the fake GitHub: retries, GitHub's rate limits,
giving up with a reason, and re-armed jobs (tests/integration/test_job_concurrency.py has
concurrency, priorities and pacing).

The jobs are the reporter's real ones (reactions, the status comment); what is asserted is what
GitHub saw (calls, reactions, comments) and what the store says about each job and task.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from porter.jobs import Backoff, JobContext, JobKind, JobRunner
from porter.models import Job, Task
from porter.reporting import REACT, STATUS, Reporter
from porter.states import TaskState
from porter.status import marker
from porter.store import Store
from porter.webhooks import Trigger, decode_delivery
from tests.conftest import comment_payload
from tests.fakes.clock import Clock
from tests.fakes.github import FakeGitHub
from tests.fakes.world import OTHER_REPO as OTHER
from tests.fakes.world import PUBLIC_URL, REPO, open_world

INSTALLATIONS = {REPO: 42, OTHER: 43}


class Ceiling(random.Random):
    """Jitter that always picks the top of its range, so the backoff envelope is visible."""

    def uniform(self, a: float, b: float) -> float:
        return b


@dataclass
class World:
    fake: FakeGitHub
    store: Store
    clock: Clock
    reporter: Reporter

    def runner(self, *, backoff: Backoff | None = None,
               kinds: dict[str, JobKind] | None = None) -> JobRunner:
        return JobRunner(self.store, kinds or self.reporter.kinds(), clock=self.clock,
                         rng=Ceiling(), backoff=backoff or Backoff())

    async def run(self, runner: JobRunner, at: float) -> int:
        """Run what is due at `at`, with every clock (the fake's too) reading `at`."""
        self.clock.now = at
        return await runner.run_due(at)

    async def task(self, user: str = "wes", repo: str = REPO) -> Task:
        posted = self.fake.add_issue_comment(repo, 1, "@porter fix the typo", user=user)
        payload = comment_payload("issue_comment", posted.body,
                                  name="created.with-installation", id=posted.id)
        owner, name = repo.split("/")
        payload["repository"].update(full_name=repo, name=name)
        payload["repository"]["owner"]["login"] = owner
        payload["installation"]["id"] = INSTALLATIONS[repo]
        payload["issue"]["number"] = 1
        payload["comment"]["user"]["login"] = payload["sender"]["login"] = user
        trigger = decode_delivery("issue_comment", f"delivery-{posted.id}", payload,
                                  handle="porter", agents={"claude"})
        assert isinstance(trigger, Trigger)
        [result] = await self.store.record_triggers([trigger], default_agent="claude")
        assert result.task_id is not None
        task = await self.store.get_task(result.task_id)
        assert task is not None
        return task

    async def job(self, key: str) -> Job:
        [job] = [j for j in await self.store.jobs() if j.key == key]
        return job

    def reaction_calls(self, task: Task) -> list[Any]:
        return self.fake.calls_to(
            "POST", rf"/repos/{task.repo}/issues/comments/{task.comment_id}/reactions")

    def reactions(self, task: Task) -> list[str]:
        return [r.content for r in self.fake.reactions(task.comment_id)]


@pytest.fixture
async def world(tmp_path: Path, pem: str, store_database: Path | str) -> AsyncIterator[World]:
    """The shared world (tests/fakes/world.py) on either store; the job runners are the
    tests' own."""
    async with open_world(tmp_path, pem, database=store_database) as porter:
        yield World(porter.fake, porter.store, porter.clock, porter.runtime.reporter)


def reactions_path(task: Task) -> str:
    return rf"/repos/{task.repo}/issues/comments/{task.comment_id}/reactions"


# --- retries -------------------------------------------------------------------------------


async def test_server_errors_are_retried_with_growing_delays_and_react_once(
    world: World,
) -> None:
    runner = world.runner()
    task = await world.task()
    t0 = world.clock.now
    world.fake.fail("POST", reactions_path(task), 500, times=2)
    await world.reporter.react(task, "eyes")
    key = f"react:{task.id}:1:eyes"

    assert await world.run(runner, t0) == 1
    first = await world.job(key)
    assert (first.state, first.attempts) == ("pending", 1)
    assert first.last_error == "GitHub answered 500: Server Error"
    assert first.run_after == pytest.approx(t0 + 4)  # base 2 · 2¹

    assert await world.run(runner, t0 + 3.9) == 0
    assert len(world.reaction_calls(task)) == 1
    assert await world.run(runner, t0 + 4) == 1
    second = await world.job(key)
    assert (second.state, second.attempts) == ("pending", 2)
    assert second.run_after - (t0 + 4) == pytest.approx(8)  # base 2 · 2²: the delay grew

    assert await world.run(runner, t0 + 12) == 1
    done = await world.job(key)
    assert (done.state, done.last_error) == ("done", None)
    assert [c.status for c in world.reaction_calls(task)] == [500, 500, 201]
    assert world.reactions(task) == ["eyes"]


def test_backoff_is_full_jitter_under_a_growing_cap() -> None:
    backoff = Backoff(base=2.0, cap=300.0)
    rng = random.Random(1)
    for attempt in range(1, 12):
        ceiling = min(300.0, 2.0 * 2 ** attempt)
        delays = [backoff.delay(attempt, rng) for _ in range(200)]
        assert all(0.1 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # jitter spreads over the whole range
    assert backoff.delay(30, Ceiling()) == 300.0
    assert backoff.delay(1, Ceiling()) == 4.0


async def test_retry_after_is_obeyed_exactly_for_the_whole_installation(world: World) -> None:
    runner = world.runner()
    task = await world.task()
    t0 = world.clock.now
    world.fake.fail("POST", reactions_path(task), 429, headers={"retry-after": "3"})
    await world.reporter.react(task, "eyes")

    assert await world.run(runner, t0) == 1
    job = await world.job(f"react:{task.id}:1:eyes")
    assert job.run_after == pytest.approx(t0 + 3)
    assert job.attempts == 1

    # Another write for the same installation, due now, waits for the same moment.
    await world.reporter.react(task, "heart")
    assert await world.run(runner, t0 + 1) == 0
    held = await world.job(f"react:{task.id}:1:heart")
    assert (held.state, held.attempts) == ("pending", 0)
    assert held.run_after == pytest.approx(t0 + 3)

    assert await world.run(runner, t0 + 2.9) == 0
    assert len(world.reaction_calls(task)) == 1
    assert await world.run(runner, t0 + 3) == 2
    assert [c.time for c in world.reaction_calls(task)[1:]] == [t0 + 3, t0 + 3]
    assert sorted(world.reactions(task)) == ["eyes", "heart"]


async def test_a_spent_rate_limit_waits_until_it_resets(world: World) -> None:
    runner = world.runner()
    task = await world.task()
    t0 = world.clock.now
    world.fake.rate_limit("POST", reactions_path(task), status=403, reset_in=30)
    reset = int(t0) + 30
    await world.reporter.react(task, "eyes")

    assert await world.run(runner, t0) == 1
    job = await world.job(f"react:{task.id}:1:eyes")
    assert job.state == "pending"
    assert job.run_after == pytest.approx(reset)
    assert "API rate limit exceeded" in (job.last_error or "")

    assert await world.run(runner, reset - 0.5) == 0
    assert len(world.reaction_calls(task)) == 1
    assert await world.run(runner, reset) == 1
    assert world.reactions(task) == ["eyes"]


async def test_a_secondary_limit_said_only_in_the_message_waits_a_minute(world: World) -> None:
    runner = world.runner()
    task = await world.task()
    t0 = world.clock.now
    world.fake.fail("POST", reactions_path(task), 403, body={
        "message": "You have exceeded a secondary rate limit. Please wait a few minutes before "
                   "you try again.",
        "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
    })
    await world.reporter.react(task, "eyes")

    assert await world.run(runner, t0) == 1
    job = await world.job(f"react:{task.id}:1:eyes")
    assert (job.state, job.run_after) == ("pending", pytest.approx(t0 + 60))
    assert await world.run(runner, t0 + 59) == 0
    assert await world.run(runner, t0 + 60) == 1
    assert world.reactions(task) == ["eyes"]


# --- giving up -----------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "body", "error"), [
    (404, None, "GitHub answered 404: Not Found"),
    (422, {"message": "Validation Failed", "errors": [{"code": "invalid"}]},
     "GitHub answered 422: Validation Failed (invalid)"),
])
async def test_a_refusal_from_github_is_given_up_at_once_with_the_reason(
    world: World, status: int, body: Any, error: str
) -> None:
    runner = world.runner()
    task = await world.task()
    if status == 404:
        world.fake.remove_comment(task.comment_id)  # the requester deleted their comment
    else:
        world.fake.fail("POST", reactions_path(task), status, body=body)
    await world.reporter.react(task, "eyes")

    assert await world.run(runner, world.clock.now) == 1
    assert await world.run(runner, world.clock.now + 3600) == 0

    job = await world.job(f"react:{task.id}:1:eyes")
    assert (job.state, job.attempts, job.last_error) == ("given_up", 1, error)
    assert len(world.reaction_calls(task)) == 1
    events = [(e.kind, e.message) for e in await world.store.task_events(task.id)]
    assert ("job.given_up", f"react: {error}") in events


async def test_too_many_failures_are_given_up_with_the_count(world: World) -> None:
    runner = world.runner(backoff=Backoff(max_attempts=3))
    task = await world.task()
    world.fake.fail("POST", reactions_path(task), 503, times=10)
    await world.reporter.react(task, "eyes")

    at = world.clock.now
    for _ in range(5):
        await world.run(runner, at)
        at += 300

    job = await world.job(f"react:{task.id}:1:eyes")
    error = "GitHub answered 503: Service Unavailable (gave up after 3 attempts)"
    assert (job.state, job.attempts, job.last_error) == ("given_up", 3, error)
    assert len(world.reaction_calls(task)) == 3
    assert world.reactions(task) == []
    events = [(e.kind, e.message) for e in await world.store.task_events(task.id)]
    assert ("job.given_up", f"react: {error}") in events


async def test_without_the_app_a_job_is_given_up_saying_so(world: World) -> None:
    reporter = Reporter(store=world.store, github=None, public_url=PUBLIC_URL, mention="porter")
    runner = world.runner(kinds=reporter.kinds())
    task = await world.task()
    await reporter.react(task, "eyes")
    await world.run(runner, world.clock.now)
    job = await world.job(f"react:{task.id}:1:eyes")
    assert job.state == "given_up"
    assert job.last_error == "the GitHub App is not configured, so Porter cannot post on GitHub"


async def test_a_crashing_handler_is_retried_not_lost(world: World) -> None:
    calls: list[int] = []

    async def flaky(ctx: JobContext) -> dict[str, object]:
        calls.append(ctx.job.attempts)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return {"ok": True}

    runner = world.runner(kinds={"flaky": JobKind(run=flaky)})
    job_id = await world.store.enqueue("flaky", "flaky:1", {}, installation_id=42)
    t0 = world.clock.now
    await world.run(runner, t0)
    [job] = [j for j in await world.store.jobs() if j.id == job_id]
    assert (job.state, job.last_error) == ("pending", "internal error: RuntimeError")
    await world.run(runner, t0 + 300)
    [job] = [j for j in await world.store.jobs() if j.id == job_id]
    assert (job.state, job.result) == ("done", {"ok": True})
    assert calls == [0, 1]


# --- re-arming -----------------------------------------------------------------------------


async def test_a_job_re_armed_while_it_runs_runs_again(world: World) -> None:
    kinds = world.reporter.kinds()
    status = kinds[STATUS].run
    task = await world.task()

    async def status_then_task_moves(ctx: JobContext) -> dict[str, object] | None:
        result = await status(ctx)
        if ctx.job.generation == 0:
            # The task changed after this run read it: its re-render is asked for mid-run.
            assert await world.store.transition(task.id, expected=TaskState.QUEUED,
                                                target=TaskState.STARTING)
        return result

    runner = world.runner(kinds={**kinds, STATUS: JobKind(run=status_then_task_moves)})
    await world.store.enqueue(STATUS, f"status:{task.id}", {"task_id": task.id},
                              task_id=task.id, installation_id=task.installation_id, rearm=True)

    assert await world.run(runner, world.clock.now) == 1
    job = await world.job(f"status:{task.id}")
    assert (job.state, job.generation) == ("pending", 1)
    [stale] = [c.body for c in world.fake.comments(REPO, 1) if marker(task.id) in c.body]
    assert "**queued …**" in stale

    assert await world.run(runner, world.clock.now) == 1
    assert (await world.job(f"status:{task.id}")).state == "done"
    [fresh] = [c.body for c in world.fake.comments(REPO, 1) if marker(task.id) in c.body]
    assert "**machine started …**" in fresh
    assert await world.run(runner, world.clock.now) == 0


async def test_a_job_without_a_handler_waits_without_spending_attempts(world: World) -> None:
    runner = world.runner(kinds={REACT: world.reporter.kinds()[REACT]})
    await world.store.enqueue("mystery", "mystery:1", {})
    t0 = world.clock.now
    assert await world.run(runner, t0) == 0
    job = await world.job("mystery:1")
    assert (job.state, job.attempts, job.run_after) == ("pending", 0, t0 + 60)
    assert job.last_error == "no handler for job kind mystery"
