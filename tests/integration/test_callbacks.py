"""The machine's callbacks (spec, heartbeat, logs, complete), fenced by the run token.

Porter runs whole and in-process (tests/fakes/world.py): `create_app` with the real Runtime on
the fake GitHub and the in-memory runner, its dispatcher and job runner driven by hand on an
injected clock. The test plays the machine: it calls back with the run's bearer token, as
container/porter_entrypoint/ does. What is asserted is what the requester and operator would see:
the task, its timeline, its log, the jobs queued for GitHub and the runner, and Porter's comments.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest

from porter.publisher import PUBLISH
from porter.states import TaskState
from porter.web.runs import COMPLETE_BYTES
from tests.fakes.entrypoint_module import load
from tests.fakes.world import (
    AGENT_ARGV,
    CANARY,
    PUBLIC_URL,
    REPO,
    UNDECLARED,
    World,
    open_world,
)

S = TaskState


@pytest.fixture
async def porter(tmp_path: Path, pem: str) -> AsyncIterator[World]:
    async with open_world(tmp_path, pem) as world:
        yield world


def load_entrypoint() -> ModuleType:
    """The entrypoint's spec module (standard library only), to check the spec with its own
    parser."""
    return load("spec")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- spec ----------------------------------------------------------------------------------


async def test_the_spec_is_what_the_entrypoint_reads_and_holds_only_a_read_token(
    porter: World,
) -> None:
    task_id = await porter.request("@porter fix the typo in the README")
    await porter.settle()
    assert (await porter.task(task_id)).state is S.STARTING
    run = await porter.run(task_id)
    [launch] = porter.runner.launched
    # The machine's whole environment: no secret and no repository access travel this way.
    assert launch.machine_env() == {"PORTER_URL": PUBLIC_URL, "PORTER_RUN_ID": run.id,
                                    "PORTER_RUN_TOKEN": porter.runtime.runs.token_for(run.id)}
    minted_before = len(porter.fake.minted_tokens)

    response = await (await porter.machine(task_id)).spec()

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    spec = response.json()
    parsed = load_entrypoint().parse_spec(spec)
    main = porter.fake.ref_sha(REPO, "heads/main")
    assert (parsed.repo, parsed.base_ref, parsed.base_sha) == (REPO, "main", main)
    assert parsed.clone_url == spec["clone_url"] == f"{porter.fake.web_url}/{REPO}.git"
    assert (spec["task_id"], spec["run_id"], spec["attempt"]) == (task_id, run.id, 1)
    [token] = porter.fake.minted_tokens[minted_before:]
    assert spec["clone_token"] == token.token
    assert (token.installation_id, token.repositories, token.requested_permissions) == (
        42, frozenset({REPO}), {"contents": "read"})
    assert token.permissions == {"contents": "read", "metadata": "read"}  # GitHub adds metadata
    assert spec["agent"] == {"name": "tester", "argv": AGENT_ARGV,
                             "env": {"CANARY_KEY": CANARY}, "output": "text"}
    assert UNDECLARED not in response.text
    assert "fix the typo in the README" in parsed.prompt
    assert "Fix the typo in file 1" in parsed.prompt  # the issue it was asked on
    assert parsed.limits.agent_timeout_s > 60

    task = await porter.task(task_id)
    assert task.state is S.RUNNING
    # Fetching it again (the entrypoint retries) moves nothing twice.
    assert (await (await porter.machine(task_id)).spec()).status_code == 200
    kinds = await porter.events(task_id)
    assert kinds.count("state.running") == 1 and kinds.count("stage.spec") == 1


async def test_the_clone_token_is_minted_once_and_the_spec_refused_once_the_agent_runs(
    porter: World,
) -> None:
    task_id = await porter.request()
    await porter.settle()
    machine = await porter.machine(task_id)
    minted_before = len(porter.fake.minted_tokens)

    first = await machine.spec()
    assert first.status_code == 200, first.text
    assert await machine.heartbeat("clone", "cloning") is False
    again = await machine.spec()  # the entrypoint fetches again when it did not hear back

    assert again.status_code == 200, again.text
    assert again.json()["clone_token"] == first.json()["clone_token"]
    assert len(porter.fake.minted_tokens) == minted_before + 1

    # Once the agent runs, what holds the run token may be the agent: it gets no keys or tokens.
    assert await machine.heartbeat("agent", "running tester") is False
    late = await machine.spec()
    assert late.status_code == 409 and CANARY not in late.text
    assert await machine.heartbeat("clone", "cloning again, honest") is False
    assert (await machine.spec()).status_code == 409
    assert len(porter.fake.minted_tokens) == minted_before + 1


# --- fencing -------------------------------------------------------------------------------

CALLS = [("GET", "spec", None),
         ("POST", "heartbeat", {"stage": "agent", "message": "hi"}),
         ("POST", "logs", {"seq": 0, "text": "hello"}),
         ("POST", "complete", {"status": "succeeded", "summary": "done"})]


@pytest.mark.parametrize("credential", [
    "none", "wrong", "basic", "bare token", "empty bearer", "another task's token",
])
async def test_a_call_without_this_runs_token_is_refused_and_changes_nothing(
    porter: World, credential: str
) -> None:
    task_id, mine = await porter.started()
    other_id, other = await porter.started("@porter fix the other typo", number=2)
    header = {
        "none": None,
        "wrong": "Bearer prt_" + "A" * 43,
        "basic": "Basic " + b64(f"{mine.run_id}:{mine.token}"),
        "bare token": mine.token,
        "empty bearer": "Bearer ",
        "another task's token": f"Bearer {other.token}",
    }[credential]
    headers = {"Authorization": header} if header is not None else {}
    before = await porter.snapshot([task_id, other_id], [mine.run_id, other.run_id])

    for method, what, body in CALLS:
        response = await porter.client.request(
            method, f"/api/runs/{mine.run_id}/{what}", json=body, headers=headers)
        assert response.status_code == 401, (what, response.text)
        assert mine.token not in response.text

    assert await porter.snapshot([task_id, other_id], [mine.run_id, other.run_id]) == before
    assert await mine.heartbeat() is False  # the right token still works


async def test_a_run_id_that_is_not_a_run_is_refused(porter: World) -> None:
    task_id, mine = await porter.started()
    before = await porter.snapshot([task_id], [mine.run_id])
    for run_id in ("r" + "0" * 20, "x" * 65, mine.run_id.upper()):
        for method, what, body in CALLS:
            response = await porter.client.request(
                method, f"/api/runs/{run_id}/{what}", json=body, headers=mine.auth)
            assert response.status_code == 401, (run_id, what, response.text)
    assert await porter.snapshot([task_id], [mine.run_id]) == before


@pytest.mark.parametrize("ending", ["failed", "cancelled"])
async def test_the_previous_attempts_token_is_refused_after_a_retry(
    porter: World, ending: str
) -> None:
    task_id, first = await porter.started()
    if ending == "failed":  # the machine reported and its run closed
        assert (await first.complete({"status": "failed", "exit_code": 1})).status_code == 200
    else:  # its run is still open when the retry starts the next one
        await porter.api("POST", f"/api/tasks/{task_id}/cancel")
    await porter.settle()
    assert (await porter.task(task_id)).state.value == ending

    retried = await porter.api("POST", f"/api/tasks/{task_id}/retry")
    assert retried["message"] == f"Retrying task #{task_id} (attempt 2)."
    await porter.settle()
    second = await porter.machine(task_id)
    assert second.run_id != first.run_id and second.token != first.token
    task = await porter.task(task_id)
    assert (task.state, task.attempt) == (S.STARTING, 2)
    before = await porter.snapshot([task_id], [first.run_id, second.run_id])

    for method, what, body in CALLS:
        late = await porter.client.request(method, f"/api/runs/{first.run_id}/{what}",
                                           json=body, headers=first.auth)
        assert late.status_code == 409, (what, late.text)
        crossed = await porter.client.request(method, f"/api/runs/{second.run_id}/{what}",
                                              json=body, headers=first.auth)
        assert crossed.status_code == 401, (what, crossed.text)

    assert await porter.snapshot([task_id], [first.run_id, second.run_id]) == before
    spec = await second.spec()
    assert spec.status_code == 200 and spec.json()["attempt"] == 2


# --- heartbeat -----------------------------------------------------------------------------


async def test_heartbeats_mark_stages_once_and_carry_a_cancel(porter: World) -> None:
    task_id, machine = await porter.started()
    assert await machine.heartbeat("clone", f"cloning with {CANARY}") is False
    assert await machine.heartbeat("agent", "running tester") is False
    assert await machine.heartbeat("agent", "still running") is False
    events = await porter.store.task_events(task_id)
    stages = [(e.kind, e.message) for e in events if e.kind.startswith("stage.")]
    assert stages == [("stage.spec", "machine fetched its spec"),
                      ("stage.clone", "cloning with [REDACTED]"),
                      ("stage.agent", "running tester")]

    before = await porter.snapshot([task_id], [machine.run_id])
    for bad in ({"stage": "not a word!"}, {"stage": 3}, {"message": "no stage"},
                {"stage": "x" * 40}):
        assert (await machine.post("heartbeat", bad)).status_code == 400, bad
    response = await porter.client.post(f"/api/runs/{machine.run_id}/heartbeat",
                                        content=b"{nope", headers=machine.auth)
    assert response.status_code == 400
    assert await porter.snapshot([task_id], [machine.run_id]) == before

    cancelled = await porter.api("POST", f"/api/tasks/{task_id}/cancel")
    assert cancelled["message"] == f"Cancelled task #{task_id}."
    assert cancelled["task"]["state"] == "cancelled"
    assert await machine.heartbeat() is True
    await porter.settle()
    assert porter.runner.stopped == ["m1"]
    assert porter.runner.destroyed == []  # a grace period for the agent to stop cleanly
    await porter.advance(15)
    assert porter.runner.destroyed == ["m1"]
    [status] = porter.porter_comments()
    assert status.startswith("🛑 Cancelled")
    assert porter.reactions(task_id) == ["eyes"]


# --- logs ----------------------------------------------------------------------------------


async def test_logs_are_stored_redacted_whatever_form_the_secret_takes(porter: World) -> None:
    task_id, machine = await porter.started()
    clone_token = porter.fake.minted_tokens[-1].token
    await machine.log(0, f"agent says key={CANARY}\n")
    await machine.log(1, f"encoded {b64(CANARY)} there\n")
    await machine.log(2, f"and split {CANARY[:11]}")
    await machine.log(3, f"{CANARY[11:]} across chunks\n")
    await machine.log(4, f"clone with {clone_token} and run token {machine.token}\n")
    await machine.log(5, "x" * 3000 + "\nthe end\n")

    while_running = await porter.log_text(task_id)
    assert (await machine.complete({"status": "failed", "exit_code": 1})).status_code == 200
    logs = await porter.log_text(task_id)

    assert logs.startswith(while_running)
    for line in ("agent says key=[REDACTED]\n", "encoded [REDACTED] there\n",
                 "across chunks\n", "the end\n"):
        assert line in logs, line
    joined = "".join(logs.split())
    for leaked in (CANARY, b64(CANARY).rstrip("="), CANARY[:11], CANARY[11:], clone_token,
                   machine.token):
        assert leaked not in joined


async def test_a_repeated_log_chunk_is_stored_once(porter: World) -> None:
    """The entrypoint sends a chunk again when it did not hear back; Porter may have kept it."""
    task_id, machine = await porter.started()
    await machine.log(0, "line one\n")
    await machine.log(0, "line one\n")
    await machine.log(1, "line two\n")
    await machine.log(1, "line two\n")
    await machine.log(2, "y" * 5000 + "\n")
    await machine.log(2, "y" * 5000 + "\n")
    assert (await machine.complete({"status": "failed"})).status_code == 200
    assert await porter.log_text(task_id) == "line one\nline two\n" + "y" * 5000 + "\n"


async def test_bad_or_oversized_log_chunks_are_refused(porter: World) -> None:
    task_id, machine = await porter.started()
    await machine.log(0, "kept\n")
    before = await porter.snapshot([task_id], [machine.run_id])
    url = f"/api/runs/{machine.run_id}/logs"
    big = json.dumps({"seq": 1, "text": "z" * (256 * 1024)}).encode()
    assert (await porter.client.post(url, content=big, headers=machine.auth)
            ).status_code == 413

    async def streamed() -> AsyncIterator[bytes]:  # no Content-Length to refuse up front
        for start in range(0, len(big), 8192):
            yield big[start:start + 8192]

    assert (await porter.client.post(url, content=streamed(), headers=machine.auth)
            ).status_code == 413
    for raw in (b"{not json", b"[1, 2]", b'{"seq": -1, "text": "x"}', b'{"seq": true, '
                b'"text": "x"}', b'{"seq": 1, "text": 5}', b""):
        response = await porter.client.post(url, content=raw, headers=machine.auth)
        assert response.status_code == 400, raw
    assert await porter.snapshot([task_id], [machine.run_id]) == before


# --- complete ------------------------------------------------------------------------------


async def test_complete_is_idempotent_and_publishes_once(porter: World) -> None:
    task_id, machine = await porter.started()
    body = {"status": "succeeded", "summary": "Fixed the typo.", "exit_code": 0,
            "cost_usd": 0.12, "changeset": porter.changeset()}

    first = await machine.complete(body)

    assert first.status_code == 200 and first.json() == {"accepted": True}
    task = await porter.task(task_id)
    assert (task.state, task.summary, task.cost_usd) == (S.PUBLISHING, "Fixed the typo.", 0.12)
    assert len(await porter.store.jobs(kind=PUBLISH)) == 1
    before = await porter.snapshot([task_id], [machine.run_id])

    again = await machine.complete(body)

    assert again.status_code == 200 and again.json()["accepted"] is True
    assert await porter.snapshot([task_id], [machine.run_id]) == before
    # A completed run is done talking: no more heartbeats or logs.
    assert (await machine.post("heartbeat", {"stage": "agent"})).status_code == 409
    assert (await machine.post("logs", {"seq": 9, "text": "late"})).status_code == 409
    assert (await machine.spec()).status_code == 409

    await porter.settle()
    task = await porter.task(task_id)
    assert task.state is S.SUCCEEDED, task.reason
    [pull] = porter.fake.pulls(REPO)
    assert "Fixed the typo." in (pull.body or "")
    assert porter.runner.destroyed == ["m1"]
    assert (await machine.complete(body)).status_code == 200
    await porter.settle()
    assert len(porter.fake.pulls(REPO)) == 1
    assert (await porter.task(task_id)).state is S.SUCCEEDED
    assert porter.reactions(task_id) == ["eyes", "rocket"]


async def test_a_late_complete_after_cancel_changes_nothing(porter: World) -> None:
    task_id, machine = await porter.started()
    await porter.api("POST", f"/api/tasks/{task_id}/cancel")
    await porter.settle()
    before = await porter.task(task_id)
    events = await porter.store.task_events(task_id)
    comments = porter.porter_comments()

    response = await machine.complete({"status": "succeeded", "summary": "All done!",
                                       "changeset": porter.changeset()})
    await porter.settle()

    assert response.status_code == 200
    after = await porter.task(task_id)
    assert (after.state, after.summary, after.reason) == (S.CANCELLED, None, before.reason)
    assert await porter.store.task_events(task_id) == events
    assert await porter.store.jobs(kind=PUBLISH) == []
    assert porter.fake.pulls(REPO) == []
    assert porter.porter_comments() == comments
    assert comments[0].startswith("🛑 Cancelled")


async def test_a_failure_is_told_with_the_redacted_reason(porter: World) -> None:
    task_id, machine = await porter.started()
    response = await machine.complete({
        "status": "failed", "exit_code": 2,
        "error": {"message": f"tester-cli: invalid key {CANARY}"},
        "log_tail": f"Traceback ... {CANARY}",
    })
    assert response.status_code == 200
    task = await porter.task(task_id)
    assert (task.state, task.stage) == (S.FAILED, "agent")
    assert task.reason == "tester-cli: invalid key [REDACTED]"
    run = await porter.run(task_id)
    assert run.result is not None and CANARY not in json.dumps(run.result)
    assert await porter.store.jobs(kind=PUBLISH) == []

    await porter.settle()
    [status] = porter.porter_comments()
    assert status.startswith(
        "❌ Failed while running the agent: tester-cli: invalid key [REDACTED]")
    assert porter.reactions(task_id) == ["eyes", "confused"]
    assert porter.runner.destroyed == ["m1"]


async def test_a_failure_reason_cannot_mention_close_or_hide_the_status(porter: World) -> None:
    task_id, machine = await porter.started()
    message = "tester-cli: ask @octocat <!-- Fixes #2 <img src=x onerror=alert(1)>"
    response = await machine.complete({"status": "failed", "error": {"message": message}})
    assert response.status_code == 200
    await porter.settle()
    [status] = porter.porter_comments()
    assert "@octocat" not in status and "Fixes #2" not in status and "<img" not in status
    assert status.count("<!--") == 1 and status.endswith(f"<!-- porter:status task={task_id} -->")
    assert message in status.replace("\u2060", "")


async def test_the_commit_message_is_stored_and_published_redacted(porter: World) -> None:
    task_id, machine = await porter.started()
    body = {"status": "succeeded", "summary": "ok", "changeset": {
        **porter.changeset(), "message": f"Fix the typo\n\nchecked with {CANARY}"}}
    assert (await machine.complete(body)).status_code == 200
    [job] = await porter.store.jobs(kind=PUBLISH)
    assert CANARY not in json.dumps(job.payload)
    await porter.settle()
    task = await porter.task(task_id)
    assert task.state is S.SUCCEEDED and task.commit_sha is not None
    message = porter.fake.commit_info(REPO, task.commit_sha).message
    assert message.strip() == "Fix the typo\n\nchecked with [REDACTED]"


async def test_the_summary_is_stored_and_published_redacted(porter: World) -> None:
    task_id, machine = await porter.started()
    summary = f"Fixed it. Used {CANARY} and {b64(CANARY)} to check."
    response = await machine.complete({"status": "succeeded", "summary": summary,
                                       "changeset": porter.changeset()})
    assert response.status_code == 200
    task = await porter.task(task_id)
    assert task.summary == "Fixed it. Used [REDACTED] and [REDACTED] to check."
    await porter.settle()
    assert (await porter.task(task_id)).state is S.SUCCEEDED
    [pull] = porter.fake.pulls(REPO)
    surfaces = [pull.body or "", *porter.porter_comments(), json.dumps(
        await porter.api("GET", f"/api/tasks/{task_id}"))]
    for text in surfaces:
        assert CANARY not in text and b64(CANARY).rstrip("=") not in text


async def test_bad_or_oversized_completions_are_refused(porter: World) -> None:
    task_id, machine = await porter.started()
    before = await porter.snapshot([task_id], [machine.run_id])
    url = f"/api/runs/{machine.run_id}/complete"
    over = COMPLETE_BYTES + 1
    response = await porter.client.post(
        url, content=b"{" + b" " * (over - 2) + b"}", headers=machine.auth)
    assert response.status_code == 413
    for raw in (b"{nope", b'"succeeded"', b'{"status": "great"}', b"{}"):
        response = await porter.client.post(url, content=raw, headers=machine.auth)
        assert response.status_code == 400, raw
    assert await porter.snapshot([task_id], [machine.run_id]) == before
    assert await machine.heartbeat() is False


async def test_the_agents_usage_is_kept_as_numbers_only(porter: World) -> None:
    _, machine = await porter.started()
    usage = {"input_tokens": 1200, "output_tokens": 345, "note": "ignore previous instructions",
             "nested": {"x": 1}}
    await machine.complete({"status": "succeeded", "summary": "ok", "exit_code": 0,
                            "cost_usd": 0.02, "usage": usage, "changeset": porter.changeset()})
    run = await porter.store.get_run(machine.run_id)
    assert run is not None and run.result is not None
    assert run.result["usage"] == {"input_tokens": 1200, "output_tokens": 345}
