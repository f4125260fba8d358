"""Who runs when: one live task per issue or PR, global and per-installation limits, and
`@porter cancel | retry` delivered as signed webhooks.

Porter runs whole and in-process (tests/fakes/world.py): the real Runtime on the fake GitHub and
the in-memory runner, the dispatcher and job runner driven by hand on an injected clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from porter.publisher import PUBLISH
from porter.states import TaskState
from tests.fakes.world import PUBLIC_URL, REPO, Caller, World, open_world

S = TaskState


@pytest.fixture
async def porter(tmp_path: Path, pem: str) -> AsyncIterator[World]:
    async with open_world(tmp_path, pem) as running:
        yield running


async def states(porter: World, *task_ids: int) -> list[TaskState]:
    return [(await porter.task(task_id)).state for task_id in task_ids]


async def finish(porter: World, task_id: int) -> None:
    """The task's machine reports a failure; Porter moves on."""
    machine = await porter.machine(task_id)
    if (await porter.task(task_id)).state is S.STARTING:
        assert (await machine.spec()).status_code == 200
    response = await machine.complete({"status": "failed", "exit_code": 1})
    assert response.status_code == 200
    await porter.settle()
    assert (await porter.task(task_id)).state is S.FAILED


def replies(porter: World, starts: str, number: int = 1, repo: str = REPO) -> list[str]:
    return [c for c in porter.porter_comments(number, repo) if c.startswith(starts)]


# --- one live task per issue ---------------------------------------------------------------


async def test_a_follow_up_by_the_same_requester_waits_behind_the_live_task(
    porter: World,
) -> None:
    first, machine = await porter.started()
    second = await porter.request("@porter and update the docs")
    await porter.settle()
    await porter.settle()

    assert await states(porter, first, second) == [S.RUNNING, S.QUEUED]
    assert porter.runner.run_ids() == [machine.run_id]
    link = f"{PUBLIC_URL}/tasks/{first}"
    assert replies(porter, "Queued behind") == [
        f"Queued behind task #{first} ({link}); it starts when that one ends.\n"
        f"<!-- porter:reply waiting:{second} -->"]

    await finish(porter, first)

    assert (await porter.task(second)).state is S.STARTING
    assert len(porter.runner.launched) == 2
    assert (await porter.machine(second)).run_id != machine.run_id
    assert len(replies(porter, "Queued behind")) == 1


async def test_another_requester_is_pointed_at_the_live_task(porter: World) -> None:
    first, _ = await porter.started()
    second = await porter.request("@porter do it my way", user="bob")
    await porter.settle()
    await porter.settle()

    link = f"{PUBLIC_URL}/tasks/{first}"
    task = await porter.task(second)
    assert task.state is S.REJECTED
    assert task.reason == (f"task #{first} by @alice is still running here ({link}); "
                           "comment again when it has finished")
    [reply] = replies(porter, "@bob")
    assert reply.startswith(f"@bob, one task at a time per issue: task #{first} by @alice "
                            f"is still running here ({link})")
    assert len(porter.runner.launched) == 1
    assert (await porter.task(first)).state is S.RUNNING
    assert porter.reactions(second) == ["confused"]  # refused before any acknowledgement
    # Whatever bob sees about his own task says it did not start.
    assert not [c for c in porter.porter_comments() if f"task={second}" in c
                and c.startswith("⏳")]


class Crash(Exception):
    """Porter died right after a write had committed."""


async def test_a_crash_while_refusing_still_answers_once(
    porter: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = await porter.started()
    second = await porter.request("@porter do it my way", user="bob")
    original = porter.store.finish_task

    async def then_die(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(porter.store, "finish_task", original)
        await original(*args, **kwargs)
        raise Crash

    monkeypatch.setattr(porter.store, "finish_task", then_die)
    with pytest.raises(Crash):
        await porter.runtime.dispatcher.tick()
    await porter.settle()  # after the restart
    await porter.settle()

    assert (await porter.task(second)).state is S.REJECTED
    assert len(replies(porter, "@bob, one task at a time per issue")) == 1
    assert porter.reactions(second) == ["confused"]  # refused before any acknowledgement
    assert (await porter.task(first)).state is S.RUNNING


async def test_a_task_refused_after_waiting_for_a_slot_does_not_still_look_queued(
    tmp_path: Path, pem: str
) -> None:
    async with open_world(tmp_path, pem, {"PORTER_MAX_LIVE_TASKS": "1"}) as porter:
        elsewhere, _ = await porter.started(number=2)
        mine = await porter.request("@porter fix it")
        theirs = await porter.request("@porter no, like this", user="bob")
        await porter.settle()
        [waiting] = [c for c in porter.porter_comments() if f"task={theirs}" in c]
        assert waiting.startswith("⏳")  # both wait for the one slot, acknowledged

        await finish(porter, elsewhere)

        assert await states(porter, mine, theirs) == [S.STARTING, S.REJECTED]
        assert len(replies(porter, "@bob, one task at a time per issue")) == 1
        assert porter.reactions(theirs) == ["eyes", "confused"]
        [status] = [c for c in porter.porter_comments() if f"task={theirs}" in c]
        assert not status.startswith("⏳"), status


# --- limits --------------------------------------------------------------------------------


async def test_the_global_limit_keeps_the_rest_queued_in_order(tmp_path: Path, pem: str) -> None:
    async with open_world(tmp_path, pem, {"PORTER_MAX_LIVE_TASKS": "2"}) as porter:
        tasks = [await porter.request(f"@porter fix typo {n}", number=n) for n in (1, 2, 3, 4)]
        await porter.settle()
        assert await states(porter, *tasks) == [S.STARTING, S.STARTING, S.QUEUED, S.QUEUED]
        assert len(porter.runner.launched) == 2

        await finish(porter, tasks[1])
        assert await states(porter, *tasks) == [S.STARTING, S.FAILED, S.STARTING, S.QUEUED]

        await finish(porter, tasks[0])
        assert await states(porter, *tasks) == [S.FAILED, S.FAILED, S.STARTING, S.STARTING]
        assert len(porter.runner.launched) == 4
        # Waiting for a free slot is not waiting behind anyone: nobody was refused or told so.
        for number in (1, 2, 3, 4):
            assert replies(porter, "Queued behind", number) == []
            assert replies(porter, "@alice", number) == []


async def test_the_per_installation_limit_lets_other_installations_start(
    tmp_path: Path, pem: str
) -> None:
    env = {"PORTER_MAX_LIVE_PER_INSTALLATION": "1"}
    async with open_world(tmp_path, pem, env) as porter:
        octo_one = await porter.request("@porter fix it", number=1)
        octo_two = await porter.request("@porter fix that", number=2)
        acme = await porter.request("@porter make them green", repo="acme/widgets",
                                    installation_id=43)
        await porter.settle()
        assert await states(porter, octo_one, octo_two, acme) == [
            S.STARTING, S.QUEUED, S.STARTING]

        await finish(porter, acme)
        assert (await porter.task(octo_two)).state is S.QUEUED  # acme's slot is not octo's

        await finish(porter, octo_one)
        assert (await porter.task(octo_two)).state is S.STARTING
        assert len(porter.runner.launched) == 3


async def test_a_busy_issue_answers_at_once_even_when_every_slot_is_taken(
    tmp_path: Path, pem: str
) -> None:
    async with open_world(tmp_path, pem, {"PORTER_MAX_LIVE_TASKS": "1"}) as porter:
        first, _ = await porter.started()
        elsewhere = await porter.request("@porter fix the other one", number=2)
        intruder = await porter.request("@porter my turn", user="bob")
        follow_up = await porter.request("@porter and the docs")
        await porter.settle()

        assert await states(porter, first, elsewhere, intruder, follow_up) == [
            S.RUNNING, S.QUEUED, S.REJECTED, S.QUEUED]
        assert len(replies(porter, "@bob, one task at a time per issue")) == 1
        assert len(replies(porter, f"Queued behind task #{first}")) == 1

        await finish(porter, first)  # the oldest waiting task gets the one slot
        assert await states(porter, elsewhere, follow_up) == [S.STARTING, S.QUEUED]
        await finish(porter, elsewhere)
        assert (await porter.task(follow_up)).state is S.STARTING


# --- @porter cancel and retry, as comments -------------------------------------------------


async def test_cancelling_a_queued_task_needs_no_machine(tmp_path: Path, pem: str) -> None:
    async with open_world(tmp_path, pem, {"PORTER_MAX_LIVE_TASKS": "1"}) as porter:
        first, _ = await porter.started()
        waiting = await porter.request("@porter fix the other one", number=2)
        await porter.settle()
        assert (await porter.task(waiting)).state is S.QUEUED

        response = await porter.comment("@porter cancel", number=2)
        assert response.json()["status"] == "accepted"
        await porter.settle()

        task = await porter.task(waiting)
        assert (task.state, task.reason) == (S.CANCELLED, "cancelled by @alice")
        assert await porter.store.current_run(waiting) is None
        assert replies(porter, "Cancelled task", 2) == [
            f"Cancelled task #{waiting}.\n" + _reply_marker(porter, 2)]
        assert [c for c in porter.porter_comments(2) if c.startswith("🛑 Cancelled")]

        await finish(porter, first)  # the freed slot does not bring it back
        assert (await porter.task(waiting)).state is S.CANCELLED
        assert len(porter.runner.launched) == 1


async def test_cancelling_a_running_task_stops_and_destroys_its_machine(porter: World) -> None:
    task_id, machine = await porter.started()

    await porter.comment("@porter cancel", user="mallory")  # no write access: refused
    await porter.settle()
    assert (await porter.task(task_id)).state is S.RUNNING
    [refusal] = replies(porter, "Sorry, I can't do that")
    assert "@mallory needs write access" in refusal

    await porter.comment("@porter cancel")
    await porter.settle()

    assert (await porter.task(task_id)).state is S.CANCELLED
    assert await machine.heartbeat() is True
    assert porter.runner.stopped == ["m1"]
    await porter.advance(15)
    assert porter.runner.destroyed == ["m1"]
    assert len(replies(porter, f"Cancelled task #{task_id}.")) == 1
    [status] = replies(porter, "🛑 Cancelled")
    assert "Nothing was published" in status
    late = await machine.complete({"status": "succeeded", "changeset": porter.changeset()})
    assert late.status_code == 200
    await porter.settle()
    assert await porter.store.jobs(kind=PUBLISH) == []
    assert porter.fake.pulls(REPO) == []


async def test_retry_starts_a_new_attempt_and_fences_off_the_old_one(porter: World) -> None:
    task_id, old = await porter.started()
    await finish(porter, task_id)
    assert replies(porter, "❌ Failed while running the agent")

    await porter.comment("@porter retry")
    await porter.settle()

    task = await porter.task(task_id)
    assert (task.state, task.attempt) == (S.STARTING, 2)
    new = await porter.machine(task_id)
    assert new.run_id != old.run_id and new.token != old.token
    assert len(replies(porter, f"Retrying task #{task_id} (attempt 2).")) == 1
    for response in (await old.spec(), await old.post("heartbeat", {"stage": "agent"}),
                     await old.post("logs", {"seq": 0, "text": "old"}),
                     await old.complete({"status": "succeeded",
                                         "changeset": porter.changeset()})):
        assert response.status_code == 409, response.text
    impostor = Caller(porter.client, new.run_id, old.token)
    assert (await impostor.spec()).status_code == 401

    spec = await new.spec()
    assert spec.status_code == 200 and spec.json()["attempt"] == 2
    done = await new.complete({"status": "succeeded", "summary": "Fixed, second time.",
                               "changeset": porter.changeset()})
    assert done.status_code == 200
    await porter.settle()
    assert (await porter.task(task_id)).state is S.SUCCEEDED
    assert len(porter.fake.pulls(REPO)) == 1
    [status] = [c for c in porter.porter_comments() if "porter:status" in c]
    assert status.startswith("✅")


async def test_retry_finds_the_requesters_task_past_a_refused_one(porter: World) -> None:
    task_id, _ = await porter.started()
    intruder = await porter.request("@porter my turn", user="bob")
    await porter.settle()
    assert (await porter.task(intruder)).state is S.REJECTED
    await finish(porter, task_id)

    await porter.comment("@porter retry")
    await porter.settle()

    assert len(replies(porter, f"Retrying task #{task_id} (attempt 2).")) == 1
    task = await porter.task(task_id)
    assert (task.state, task.attempt) == (S.STARTING, 2)
    assert (await porter.task(intruder)).state is S.REJECTED


def _reply_marker(porter: World, number: int) -> str:
    """The hidden key of the newest command reply on the issue (its comment id is in it)."""
    [comment] = [c for c in porter.fake.comments(REPO, number)
                 if c.user != porter.fake.bot_login and c.body == "@porter cancel"]
    return f"<!-- porter:reply command:issue:{comment.id} -->"
