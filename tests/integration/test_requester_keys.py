"""Whose keys a task runs with: the requester's, else the operator's, else none and no machine.

Porter whole and in-process (tests/fakes/world.py). People sign in through the fake GitHub's
OAuth flow and save keys through the /settings form; they comment as themselves, so the task's
requester id is their GitHub user id. The test plays the machine and reads the spec it is
served: the agent's environment there is what the agent would get.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from porter.errors import CryptoError
from porter.fly import FlyClient
from porter.launcher import DESTROY
from porter.runners import FlyRunner
from porter.states import Stage, TaskState
from porter.vault import Vault
from tests.fakes.fly import FakeFly
from tests.fakes.world import PUBLIC_URL, World, open_world
from tests.settings_helpers import (
    ALICE_KEY,
    BOB_KEY,
    OPERATOR_KEY,
    saved,
    swap_sealed,
)
from tests.web_helpers import Browser, signed_in

S = TaskState
# The world's own agent, made to take an Anthropic key: a key a person can save in /settings.
TAKES_ANTHROPIC = {"PORTER_AGENT_TESTER_KEYS": "ANTHROPIC_API_KEY"}
WITH_OPERATOR_KEY = {**TAKES_ANTHROPIC, "PORTER_SECRET_ANTHROPIC_API_KEY": OPERATOR_KEY}


@pytest.fixture
async def world(tmp_path: Path, pem: str) -> AsyncIterator[World]:
    async with open_world(tmp_path, pem, env=WITH_OPERATOR_KEY) as opened:
        yield opened


async def person(world: World, login: str, **fields: str) -> Browser:
    browser = await signed_in(world, login)
    if fields:
        await saved(browser, **fields)
    return browser


async def spec_of(world: World, task_id: int) -> dict[str, Any]:
    await world.settle()
    assert (await world.task(task_id)).state is S.STARTING, await world.task(task_id)
    answer = await (await world.machine(task_id)).spec()
    assert answer.status_code == 200, answer.text
    spec: dict[str, Any] = answer.json()
    return spec


async def test_a_task_runs_with_its_requesters_key_and_never_anothers(world: World) -> None:
    alice = await person(world, "alice", ANTHROPIC_API_KEY=ALICE_KEY)
    bob = await person(world, "bob", ANTHROPIC_API_KEY=BOB_KEY)
    alices = await world.request(user="alice", number=1)
    bobs = await world.request(user="bob", number=2)

    for task_id, mine, others in ((alices, ALICE_KEY, (BOB_KEY, OPERATOR_KEY)),
                                  (bobs, BOB_KEY, (ALICE_KEY, OPERATOR_KEY))):
        spec = await spec_of(world, task_id)
        assert spec["agent"]["env"]["ANTHROPIC_API_KEY"] == mine
        whole = json.dumps(spec)
        assert not [key for key in others if key in whole]
        task = await world.task(task_id)
        assert (task.key_source, task.fly_source) == ("requester", None)
        assert "requester" in json.dumps(task.to_json())  # the source, never the value
        assert mine not in json.dumps(task.to_json())
    for browser in (alice, bob):
        await browser.client.aclose()


async def test_a_requester_without_keys_runs_with_the_operators(world: World) -> None:
    alice = await person(world, "alice")  # signed in, saved nothing
    signed_in_task = await world.request(user="alice", number=1)
    stranger_task = await world.request(user="bob", number=2)  # never signed in
    for task_id in (signed_in_task, stranger_task):
        spec = await spec_of(world, task_id)
        assert spec["agent"]["env"]["ANTHROPIC_API_KEY"] == OPERATOR_KEY
        assert (await world.task(task_id)).key_source == "operator"
    await alice.client.aclose()


async def test_the_requesters_keys_win_as_a_whole_and_are_never_mixed(
        tmp_path: Path, pem: str) -> None:
    # aider takes all three providers' keys; the operator has Anthropic's and Gemini's.
    env = {"PORTER_SECRET_ANTHROPIC_API_KEY": OPERATOR_KEY,
           "PORTER_SECRET_GEMINI_API_KEY": "gm-operator-Hc5Ws2Dq8Lz4",
           "PORTER_AGENT_AIDER_COMMAND": "tester-cli"}
    async with open_world(tmp_path, pem, env=env) as world:
        alice = await person(world, "alice", OPENAI_API_KEY=ALICE_KEY)
        task_id = await world.request("@porter aider fix the typo", user="alice")
        spec = await spec_of(world, task_id)
        env_of_agent = spec["agent"]["env"]
        # Aider speaks to the gateway: it holds a gateway token under the one provider's name
        # the requester has a key for, and no model key of anyone's.
        keys = {k: v for k, v in env_of_agent.items() if k.endswith("_API_KEY")}
        assert list(keys) == ["OPENAI_API_KEY"] and keys["OPENAI_API_KEY"].startswith("plt_")
        whole = json.dumps(spec)
        assert not [k for k in (ALICE_KEY, OPERATOR_KEY, "gm-operator-Hc5Ws2Dq8Lz4") if k in whole]
        await alice.client.aclose()


async def test_with_no_key_anywhere_no_machine_starts_and_the_requester_is_told_where(
        tmp_path: Path, pem: str) -> None:
    async with open_world(tmp_path, pem, env=TAKES_ANTHROPIC) as world:
        task_id = await world.request(user="alice")
        await world.settle()
        task = await world.task(task_id)
        assert task.state is S.FAILED and task.stage == Stage.DISPATCH
        assert task.reason == (f"No API key for tester: add an Anthropic API key at "
                               f"{PUBLIC_URL}/settings")
        assert world.runner.launched == []
        assert await world.store.current_run(task_id) is None  # no run, no run token
        [status] = [body for body in world.porter_comments() if "porter:status" in body]
        assert f"{PUBLIC_URL}/settings" in status and "Anthropic API key" in status
        assert world.reactions(task_id)[-1] == "confused"

        # Once a key is saved, a retry runs with it.
        alice = await person(world, "alice", ANTHROPIC_API_KEY=ALICE_KEY)
        await world.comment("@porter retry", user="alice")
        await world.settle()
        spec = await spec_of(world, task_id)
        assert spec["agent"]["env"]["ANTHROPIC_API_KEY"] == ALICE_KEY
        await alice.client.aclose()


async def test_swapped_ciphertexts_open_for_nobody_and_the_task_fails_clearly(
        world: World) -> None:
    alice = await person(world, "alice", ANTHROPIC_API_KEY=ALICE_KEY)
    bob = await person(world, "bob", ANTHROPIC_API_KEY=BOB_KEY)
    alice_id, bob_id = world.fake.user("alice").id, world.fake.user("bob").id
    swap_sealed(world.settings.database, alice_id, bob_id, "ANTHROPIC_API_KEY")

    vault = Vault(world.runtime.keyring, world.store)
    for user_id in (alice_id, bob_id):
        with pytest.raises(CryptoError):
            await vault.open(user_id, ("ANTHROPIC_API_KEY",))

    task_id = await world.request(user="alice")
    await world.settle()
    task = await world.task(task_id)
    assert task.state is S.FAILED and task.stage == Stage.DISPATCH
    assert task.reason is not None and "could not be opened" in task.reason
    assert f"{PUBLIC_URL}/settings" in task.reason
    assert world.runner.launched == []  # neither bob's key nor the operator's instead
    # The page still answers (the last four characters were stored beside the ciphertext).
    page = await alice.client.get("/settings", headers={"Accept": "text/html"})
    assert page.status_code == 200 and ALICE_KEY not in page.text and BOB_KEY not in page.text
    for browser in (alice, bob):
        await browser.client.aclose()


async def test_the_requesters_key_is_scrubbed_from_what_the_machine_sends_back(
        world: World) -> None:
    alice = await person(world, "alice", ANTHROPIC_API_KEY=ALICE_KEY)
    task_id = await world.request(user="alice")
    await spec_of(world, task_id)
    caller = await world.machine(task_id)
    await caller.log(0, f"the agent printed its key: {ALICE_KEY}\n")
    await caller.heartbeat("agent", f"still here {ALICE_KEY}")
    done = await caller.complete({"status": "failed", "error": {"message": f"bad {ALICE_KEY}"},
                                  "log_tail": ALICE_KEY})
    assert done.status_code == 200
    await world.drain()
    assert ALICE_KEY not in await world.log_text(task_id)
    task = await world.api("GET", f"/api/tasks/{task_id}")
    assert ALICE_KEY not in json.dumps(task)
    assert not [body for body in world.porter_comments() if ALICE_KEY in body]
    await alice.client.aclose()


async def test_the_requesters_default_agent_and_model_apply_when_the_comment_names_none(
        world: World) -> None:
    alice = await person(world, "alice", ANTHROPIC_API_KEY=ALICE_KEY,
                         default_agent="claude", default_model="opus")
    defaulted = await world.request("@porter fix the typo", user="alice", number=1)
    named = await world.request("@porter tester fix the typo", user="alice", number=2)
    others = await world.request("@porter fix the typo", user="bob", number=3)
    got = [(t.agent, t.model) for t in [await world.task(i) for i in (defaulted, named, others)]]
    assert got == [("claude", "opus"), ("tester", None), ("tester", None)]
    spec = await spec_of(world, defaulted)
    assert spec["agent"]["name"] == "claude"
    assert spec["agent"]["env"]["ANTHROPIC_API_KEY"].startswith("plt_")  # a gateway token
    assert ALICE_KEY not in json.dumps(spec)
    assert (await world.task(defaulted)).key_source == "requester"
    assert spec["agent"]["argv"][-2:] == ["--model", "opus"]
    await alice.client.aclose()


async def test_a_key_removed_after_launch_is_not_replaced_by_the_operators(
        world: World) -> None:
    alice = await person(world, "alice", ANTHROPIC_API_KEY=ALICE_KEY)
    task_id = await world.request(user="alice")
    await world.settle()
    removed = await alice.client.post("/settings/remove", data={
        "csrf": alice.csrf, "name": "ANTHROPIC_API_KEY"})
    assert removed.status_code == 303
    answer = await (await world.machine(task_id)).spec()
    assert answer.status_code == 409
    assert OPERATOR_KEY not in answer.text and "removed their API key" in answer.text
    await alice.client.aclose()


# -- the requester's own Fly app --------------------------------------------------------------

OPERATOR_FLY_TOKEN = "fm2_operatorQm4Xs7Bv"
ALICE_FLY_TOKEN = "fm2_aliceZp3Kt9Wd"
IMAGE = "registry.fly.io/porter-agent:1"


async def test_a_requesters_machine_lives_in_their_fly_app_and_only_their_account_touches_it(
        tmp_path: Path, pem: str) -> None:
    fly = FakeFly(token=OPERATOR_FLY_TOKEN, app="porter-runs")
    fly.add_token(ALICE_FLY_TOKEN, orgs=["alice-org"], apps=["alice-runs"])
    async with fly.serve():
        operator = FlyRunner(FlyClient(token=OPERATOR_FLY_TOKEN, app="porter-runs",
                                       base_url=fly.url), image=IMAGE, region="ams")
        env = {**WITH_OPERATOR_KEY, "PORTER_FLY_API_URL": fly.url, "PORTER_AGENT_IMAGE": IMAGE}
        async with open_world(tmp_path, pem, env=env, runner=operator) as world:
            alice = await person(world, "alice", FLY_API_TOKEN=ALICE_FLY_TOKEN,
                                 fly_app="alice-runs")
            alices = await world.request(user="alice", number=1)
            bobs = await world.request(user="bob", number=2)
            await world.settle()

            alice_run, bob_run = await world.run(alices), await world.run(bobs)
            assert alice_run.runner_owner == world.fake.user("alice").id
            assert bob_run.runner_owner is None
            assert [m.id for m in fly.machines_in("alice-runs")] == [alice_run.machine_id]
            assert [m.id for m in fly.machines_in("porter-runs")] == [bob_run.machine_id]
            assert [(t.fly_source, t.key_source) for t in
                    (await world.task(alices), await world.task(bobs))] == [
                ("requester", "operator"), ("operator", "operator")]
            [machine] = fly.machines_in("alice-runs")
            assert set(machine.env) == {"PORTER_URL", "PORTER_RUN_ID", "PORTER_RUN_TOKEN"}

            # The watchdog reads her machine through her account: with the operator's, Fly
            # would answer 404 and the run would be failed as gone once the grace passed.
            for _ in range(3):
                world.clock.now += world.settings.watchdog_exit_grace + 1
                await world.runtime.watchdog.tick(world.clock.now)
            assert (await world.task(alices)).state is S.STARTING

            # A cancel's stop goes through her account (the operator's token reaches no app of
            # hers: Fly would answer 404)...
            await world.api("POST", f"/api/tasks/{bobs}/cancel")  # frees a slot
            again = await world.request(user="alice", number=3)
            await world.settle()
            run = await world.run(again)
            assert run.runner_owner == alice_run.runner_owner
            await world.api("POST", f"/api/tasks/{again}/cancel")
            await world.drain()
            path = f"^/v1/apps/alice-runs/machines/{run.machine_id}/stop$"
            assert [r.status for r in fly.requests_to("POST", path)] == [200]

            # ...and so does the destroy of a run past its deadline.
            world.clock.now += world.settings.task_timeout
            await world.runtime.watchdog.tick(world.clock.now)
            await world.drain()
            assert (await world.task(alices)).state is S.TIMED_OUT
            [destroy] = await world.store.jobs(kind=DESTROY, task_id=alices)
            assert destroy.payload == {"machine_id": alice_run.machine_id,
                                       "owner": alice_run.runner_owner}
            path = f"^/v1/apps/alice-runs/machines/{alice_run.machine_id}$"
            assert [r.status for r in fly.requests_to("DELETE", path)] == [200]
            mine = {alice_run.machine_id, run.machine_id}
            assert not [r for r in fly.requests if r.path.startswith("/v1/apps/porter-runs/")
                        and any(machine in r.path for machine in mine if machine)]
            await alice.client.aclose()
