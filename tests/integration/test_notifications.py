"""The operator is told when a task ends: a signed webhook and a Slack message, delivered by the
job runner to real loopback receivers, retried while the receiver fails, and never holding the
task up.

Porter runs whole and in-process (tests/fakes/world.py) on a clock that moves only when the test
moves it; the receivers are real HTTP servers on loopback sockets (tests/loopback.py).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from porter import standard_webhooks
from porter.logs import remember_secret
from porter.models import Job
from porter.notices import NOTIFY_JOB
from porter.states import JobState, TaskState
from porter.store import Store
from tests.fakes.clock import Clock
from tests.fakes.world import PUBLIC_URL, REPO, World, open_world
from tests.loopback import served
from tests.store_helpers import queued

S = TaskState
KEY = bytes(range(100, 132))
SECRET = "whsec_" + base64.b64encode(KEY).decode()


@dataclass
class Receiver:
    """An HTTP endpoint that records each request and answers from a script (then 200)."""

    answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    clock: Clock | None = None
    at: list[float] = field(default_factory=list)  # the test's clock at each request

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.got.append(({k.decode(): v.decode() for k, v in scope["headers"]}, body))
        if self.clock is not None:
            self.at.append(self.clock())
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode(), v.encode()) for k, v in headers.items()]})
        await send({"type": "http.response.body", "body": b"ok"})


@contextlib.asynccontextmanager
async def porter_telling(tmp_path: Path, pem: str, receiver: Receiver, *, slack: bool = False
                         ) -> AsyncIterator[World]:
    """Porter whose webhook (or Slack) channel is `receiver`, served on loopback."""
    async with served(receiver) as url:
        env = ({"PORTER_NOTIFY_SLACK_URL": f"{url}/services/T0/B0/x"} if slack else
               {"PORTER_NOTIFY_WEBHOOK_URL": f"{url}/porter",
                "PORTER_NOTIFY_WEBHOOK_SECRET": SECRET})
        async with open_world(tmp_path, pem, env=env) as world:
            yield world


async def notifications(world: World, task_id: int) -> list[Job]:
    return await world.store.jobs(kind=NOTIFY_JOB, task_id=task_id)


async def failed(world: World, body: str = "@porter fix the typo") -> int:
    """A task that ran and failed; its id."""
    task_id, machine = await world.started(body)
    response = await machine.complete({"status": "failed", "error": {"message": "it broke"}})
    assert response.status_code == 200
    return task_id


async def test_a_finished_task_is_told_in_a_signed_standard_webhook(tmp_path: Path,
                                                                    pem: str) -> None:
    receiver = Receiver()
    async with porter_telling(tmp_path, pem, receiver) as world:
        task_id, machine = await world.started()
        assert await notifications(world, task_id) == []  # starting, running: nothing told
        response = await machine.complete({"status": "succeeded", "summary": "Fixed Teh.",
                                           "changeset": world.changeset()})
        assert response.status_code == 200
        await world.settle()  # publishes, then tells

        task = await world.task(task_id)
        assert task.state is S.SUCCEEDED and task.pr_url
        [(headers, body)] = receiver.got
        standard_webhooks.verify(KEY, headers, body, now=world.clock.now)
        # And by hand, as any receiver would: HMAC-SHA256 of "id.timestamp.body".
        signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
        digest = base64.b64encode(hmac.new(KEY, signed, hashlib.sha256).digest()).decode()
        assert headers["webhook-signature"] == f"v1,{digest}"
        assert int(headers["webhook-timestamp"]) == int(world.clock.now)
        assert headers["content-type"] == "application/json"
        note = json.loads(body)
        assert note["type"] == "task.finished"
        assert {k: note["data"][k] for k in ("task_id", "attempt", "state", "repo",
                                            "issue_number", "url", "pr_url", "summary")} == {
            "task_id": task_id, "attempt": 1, "state": "succeeded", "repo": REPO,
            "issue_number": 1, "url": f"{PUBLIC_URL}/tasks/{task_id}", "pr_url": task.pr_url,
            "summary": "Fixed Teh."}
        assert SECRET not in body.decode() and "ghs_" not in body.decode()
        [job] = await notifications(world, task_id)
        assert job.state is JobState.DONE

        await world.advance(3600)  # told once
        assert len(receiver.got) == 1


async def test_slack_is_told_with_the_instruction_made_inert(tmp_path: Path, pem: str) -> None:
    receiver = Receiver()
    async with porter_telling(tmp_path, pem, receiver, slack=True) as world:
        task_id = await failed(world, "@porter <!channel> @here fix the typo")
        await world.settle()

        [(headers, body)] = receiver.got
        assert "webhook-signature" not in headers
        text = json.loads(body)["text"]
        assert "<!channel>" not in text and "@here" not in text
        assert "&lt;!channel&gt; @\u2060here fix the typo" in text
        assert f"<{PUBLIC_URL}/tasks/{task_id}|#{task_id}> *failed*" in text
        assert "Reason: it broke" in text


async def test_a_secret_porter_learned_is_redacted_from_the_agents_text(tmp_path: Path,
                                                                          pem: str) -> None:
    learned = "learned-notify-canary-5d1a7c"  # no token shape: known only as a secret
    remember_secret(learned)
    receiver = Receiver()
    async with porter_telling(tmp_path, pem, receiver) as world:
        task_id, machine = await world.started()
        response = await machine.complete({"status": "failed",
                                           "error": {"message": f"it broke on {learned}"}})
        assert response.status_code == 200
        await world.settle()

        [(_, body)] = receiver.got
        assert learned not in body.decode()
        assert json.loads(body)["data"]["reason"].endswith("[REDACTED]"), task_id


async def test_slack_gets_at_most_one_message_a_second(tmp_path: Path, pem: str) -> None:
    receiver = Receiver()
    async with porter_telling(tmp_path, pem, receiver, slack=True) as world:
        receiver.clock = world.clock
        first, machine = await world.started()
        second, other = await world.started(number=2)
        for caller in (machine, other):
            await caller.complete({"status": "failed", "error": {"message": "it broke"}})
        await world.settle()

        assert len(receiver.got) == 2
        assert receiver.at[1] - receiver.at[0] >= 1.0
        for task_id in (first, second):
            [job] = await notifications(world, task_id)
            assert (job.state, job.attempts) == (JobState.DONE, 0)  # waiting cost no attempt


async def test_a_receiver_answering_503_is_tried_again_when_it_says(tmp_path: Path,
                                                                    pem: str) -> None:
    receiver = Receiver(answers=[(503, {"Retry-After": "30"})])
    async with porter_telling(tmp_path, pem, receiver) as world:
        task_id = await failed(world)
        await world.settle()

        assert (await world.task(task_id)).state is S.FAILED
        [job] = await notifications(world, task_id)
        assert job.state is JobState.PENDING and "answered 503" in (job.last_error or "")
        assert job.run_after == pytest.approx(world.clock.now + 30)  # as Retry-After said
        assert len(receiver.got) == 1

        await world.advance(30)

        [job] = await notifications(world, task_id)
        assert job.state is JobState.DONE
        first, second = receiver.got
        assert first[0]["webhook-id"] == second[0]["webhook-id"]  # the receiver's idempotency key
        assert int(second[0]["webhook-timestamp"]) == int(first[0]["webhook-timestamp"]) + 30
        standard_webhooks.verify(KEY, second[0], second[1], now=world.clock.now)


async def test_a_receiver_answering_400_is_given_up(tmp_path: Path, pem: str) -> None:
    receiver = Receiver(answers=[(400, {})])
    async with porter_telling(tmp_path, pem, receiver) as world:
        task_id = await failed(world)
        await world.settle()
        await world.advance(3600)

        [job] = await notifications(world, task_id)
        assert job.state is JobState.GIVEN_UP
        assert f"webhook notification of task {task_id}: answered 400" in (job.last_error or "")
        assert len(receiver.got) == 1


async def test_the_task_ends_while_the_receiver_is_down_and_is_told_once_it_is_up(
    tmp_path: Path, pem: str,
) -> None:
    receiver = Receiver()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # not listening yet: connections are refused
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/porter"
    env = {"PORTER_NOTIFY_WEBHOOK_URL": url, "PORTER_NOTIFY_WEBHOOK_SECRET": SECRET}
    async with open_world(tmp_path, pem, env=env) as world:
        task_id = await failed(world)
        await world.runtime.jobs.run_due(world.clock.now)  # one pass: the status, the 😕, us

        assert (await world.task(task_id)).state is S.FAILED
        assert world.porter_comments()[0].startswith("❌ Failed")
        [job] = await notifications(world, task_id)
        assert job.state is JobState.PENDING and "ConnectError" in (job.last_error or "")

        sock.listen(16)
        async with served(receiver, sock):
            world.clock.now = max(world.clock.now, job.run_after)
            await world.drain()

        [job] = await notifications(world, task_id)
        assert job.state is JobState.DONE
        [(_, body)] = receiver.got
        assert json.loads(body)["data"]["state"] == "failed"


async def test_without_channels_nothing_is_enqueued(tmp_path: Path, pem: str) -> None:
    async with open_world(tmp_path, pem) as world:
        task_id = await failed(world)
        await world.settle()
        assert world.store.notify_channels == ()
        assert await notifications(world, task_id) == []


# --- the store's side: which state changes owe a notification -------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "porter.db")
    opened.notify_channels = ("webhook", "slack")
    yield opened
    await opened.close()


async def keys(store: Store) -> list[str]:
    return [job.key for job in await store.jobs(kind=NOTIFY_JOB)]


async def test_each_end_of_each_attempt_owes_one_notification_per_channel(store: Store) -> None:
    task = await queued(store)
    launch = ("machine.launch", "launch:r1", {"run_id": "r1"})
    assert await store.start_run(task, run_id="r1", token_hash="h", runner="local", job=launch)
    run = await store.current_run(task.id)
    assert run is not None
    await store.run_contact(run, stage="clone")
    assert await keys(store) == []  # starting, running: not an end

    assert await store.complete_run(run, result={}, target=S.TIMED_OUT, message="too long")
    assert await keys(store) == [f"notify:{task.id}:1:webhook", f"notify:{task.id}:1:slack"]
    first = (await store.jobs(kind=NOTIFY_JOB))[0]
    assert (first.payload["state"], first.installation_id) == ("timed_out", None)

    assert await store.retry(task.id) == 2
    assert len(await keys(store)) == 2  # queued again: not an end
    await store.finish_task(task.id, expected=[S.QUEUED], target=S.CANCELLED, message="stop")
    assert await keys(store) == [f"notify:{task.id}:{attempt}:{channel}"
                                 for attempt in (1, 2) for channel in ("webhook", "slack")]


async def test_a_refusal_is_not_told(store: Store) -> None:
    task = await queued(store)
    assert await store.transition(task.id, expected=S.QUEUED, target=S.REJECTED,
                                  message="not allowed", reason="not allowed")
    assert await keys(store) == []


async def test_no_channel_no_row(store: Store) -> None:
    store.notify_channels = ()
    task = await queued(store)
    await store.finish_task(task.id, expected=[S.QUEUED], target=S.CANCELLED, message="stop")
    assert await keys(store) == []
