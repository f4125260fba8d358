"""The gateway's accounting end to end: calls through Porter's gateway (real socket, fake provider)
are metered from their answers, priced, summed into the task's cost, held to the run's and the
requester's daily budget, and counted in each provider's health (/metrics, diagnostics)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from porter.diagnostics import diagnose
from porter.gateway import prices
from porter.gateway.budgets import day_start
from porter.gateway.health import PROVIDER_HEALTH, ProviderHealth, health_checks
from porter.gateway.usage import Usage
from porter.states import Stage, TaskState
from porter.status import marker
from porter.store.llm import METERED, REPORTED, LlmCall
from tests.fakes.llm_dialects import (
    Text,
    Tool,
    anthropic_events,
    anthropic_message,
    gemini_events,
    responses_events,
)
from tests.fakes.llm_dialects import Usage as Told
from tests.fakes.llm_provider import Recorded, Reply
from tests.fakes.world import REPO
from tests.gateway_helpers import GatewayWorld, gateway_world
from tests.web_helpers import signed_in

MESSAGES = "/llm/anthropic/v1/messages"
RESPONSES = "/llm/openai/v1/responses"
GEMINI = "/llm/gemini/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
# $0.03 on Claude Sonnet 4.5 ($3 per million input tokens)
THREE_CENTS = Told(input_tokens=10_000, output_tokens=0)


@pytest.fixture(autouse=True)
def fresh_health() -> None:
    PROVIDER_HEALTH.reset()  # one per process: other tests' calls must not count here


@pytest.fixture
async def gw(tmp_path: Path, pem: str, store_database: Path | str
             ) -> AsyncIterator[GatewayWorld]:
    async with gateway_world(tmp_path, pem, database=store_database) as opened:
        yield opened


async def claude(gw: GatewayWorld, token: str, told: Told = THREE_CENTS) -> httpx.Response:
    """One streamed call, returned once the gateway has recorded it (it records a call after
    the answer's last byte is sent, so the agent may be a moment ahead of it)."""
    gw.provider.push("anthropic", Reply.sse(anthropic_events([Text("ok")], told)))
    before = await count_calls(gw)
    answer = await gw.client.post(MESSAGES, headers={"x-api-key": token},
                                  json={"model": "claude-sonnet-4-5", "max_tokens": 64,
                                        "stream": True, "messages": []})
    if answer.status_code not in (401, 402):
        await recorded(gw, before + 1)
    return answer


async def count_calls(gw: GatewayWorld) -> int:
    rows = await gw.world.store._read("SELECT COUNT(*) FROM llm_calls")
    return int(next(iter(rows))[0])


async def recorded(gw: GatewayWorld, calls: int) -> None:
    deadline = time.monotonic() + 10
    while await count_calls(gw) < calls:
        assert time.monotonic() < deadline, f"the gateway did not record {calls} calls"
        await asyncio.sleep(0.01)


def priced(model: str, usage: Usage) -> float:
    cost = prices.cost(model, usage, at=time.time())
    assert cost is not None
    return cost


# -- metering and the task's cost -------------------------------------------------------------


async def test_every_dialect_is_metered_and_the_task_costs_their_sum(gw: GatewayWorld) -> None:
    task_id, caller = await gw.world.started()
    token = gw.token(caller.run_id)
    told = Told(input_tokens=1200, output_tokens=300, cache_read_tokens=5000,
                cache_write_tokens=700)
    gw.provider.push("anthropic", Reply.sse(anthropic_events(
        [Text("Writing it."), Tool("Write", {"file_path": "a.py", "content": "x"})], told)))
    gw.provider.push("responses", Reply.sse(responses_events([Text("done")], told)))
    gw.provider.push("gemini", Reply.sse(gemini_events([Text("done")], told)))
    for path, header in ((MESSAGES, {"x-api-key": token}),
                         (RESPONSES, {"authorization": f"Bearer {token}"}),
                         (GEMINI, {"x-goog-api-key": token})):
        answer = await gw.client.post(path, headers=header,
                                      json={"model": "asked-for", "stream": True})
        assert answer.status_code == 200, answer.text
    await recorded(gw, 3)
    # Anthropic counts its input apart from cache reads and writes; OpenAI and Gemini count
    # cached tokens inside the prompt (the fake has no cache writes for them).
    expected = {
        "claude-sonnet-4-5": priced("claude-sonnet-4-5", Usage(1200, 300, 5000, 700)),
        "gpt-5-codex": priced("gpt-5-codex", Usage(0, 300, 1200)),
        "gemini-2.5-pro": priced("gemini-2.5-pro", Usage(0, 300, 1200)),
    }
    calls = await gw.world.store.task_calls(task_id)
    assert calls is not None and calls.calls == 3 and calls.unpriced == 0
    assert calls.output_tokens == 900
    task = await gw.world.task(task_id)
    assert task.cost_source == METERED
    assert task.cost_usd == pytest.approx(sum(expected.values()))
    assert await gw.world.store.run_cost(caller.run_id) == pytest.approx(task.cost_usd)
    # the agent's own claim at the end does not replace what Porter metered
    done = await caller.complete({"status": "failed", "cost_usd": 99.0,
                                  "error": {"message": "gave up"}})
    assert done.status_code == 200
    task = await gw.world.task(task_id)
    assert task.cost_usd == pytest.approx(sum(expected.values()))
    assert task.cost_source == METERED
    await gw.world.drain()
    [status] = gw.world.porter_comments()[-1:]
    assert f"${task.cost_usd:.2f} metered by Porter" in status
    # the task page shows the metered cost and usage, not the agent's
    alice = await signed_in(gw.world, "alice")
    page = (await alice.client.get(f"/tasks/{task_id}", headers={"Accept": "text/html"})).text
    assert "metered by Porter" in page and "$99" not in page
    assert re.search(r"model calls <b>3</b>", page) and re.search(r"output tokens <b>900</b>",
                                                                   page)
    await alice.client.aclose()


async def test_a_whole_answer_is_metered_and_an_unknown_model_is_not_priced(
        gw: GatewayWorld) -> None:
    task_id, caller = await gw.world.started()
    token = gw.token(caller.run_id)
    gw.provider.push("anthropic", Reply.json(anthropic_message([Text("hi")], THREE_CENTS)),
                     Reply.json(anthropic_message([Text("hi")], THREE_CENTS,
                                                  model="mystery-model-1")))
    for _ in range(2):
        answer = await gw.client.post(MESSAGES, headers={"x-api-key": token},
                                      json={"model": "claude-sonnet-4-5", "messages": []})
        assert answer.status_code == 200
    await recorded(gw, 2)
    calls = await gw.world.store.task_calls(task_id)
    # the second answer was served by a model with no price; the request's is priced, so the
    # call is priced at the model asked for
    assert calls is not None and calls.calls == 2 and calls.unpriced == 0
    gw.provider.push("anthropic", Reply.json(anthropic_message([Text("hi")], THREE_CENTS,
                                                               model="mystery-model-1")))
    answer = await gw.client.post(MESSAGES, headers={"x-api-key": token},
                                  json={"model": "mystery-model-1", "messages": []})
    assert answer.status_code == 200
    await recorded(gw, 3)
    calls = await gw.world.store.task_calls(task_id)
    assert calls is not None and calls.calls == 3 and calls.unpriced == 1
    assert calls.cost_usd == pytest.approx(0.06)  # the unpriced call is not guessed at
    assert (await gw.world.task(task_id)).cost_usd == pytest.approx(0.06)


async def test_failed_calls_cost_nothing_and_a_task_without_calls_keeps_the_agents_figure(
        gw: GatewayWorld) -> None:
    task_id, caller = await gw.world.started()
    token = gw.token(caller.run_id)
    gw.provider.push("anthropic", Reply.error("anthropic", 529, "Overloaded"))
    answer = await gw.client.post(MESSAGES, headers={"x-api-key": token}, json={})
    assert answer.status_code == 529
    await recorded(gw, 1)
    calls = await gw.world.store.task_calls(task_id)
    assert calls is not None and calls.cost_usd == 0 and calls.unpriced == 0
    # providers bill no failed call: the task has cost $0, as Porter metered it
    task = await gw.world.task(task_id)
    assert (task.cost_usd, task.cost_source) == (0, METERED)
    other_id, other = await gw.world.started(number=2)
    await other.complete({"status": "failed", "cost_usd": 0.42,
                          "error": {"message": "gave up"}})
    task = await gw.world.task(other_id)
    assert (task.cost_usd, task.cost_source) == (0.42, REPORTED)
    await gw.world.drain()
    assert "$0.42 reported by the agent" in gw.world.porter_comments(number=2)[-1]


async def test_the_pull_request_says_the_cost_was_metered(gw: GatewayWorld) -> None:
    task_id, caller = await gw.world.started()
    answer = await claude(gw, gw.token(caller.run_id))
    assert answer.status_code == 200
    done = await caller.complete({"status": "succeeded", "summary": "Fixed the typo.",
                                  "cost_usd": 7.5, "changeset": gw.world.changeset()})
    assert done.status_code == 200
    await gw.world.drain()
    task = await gw.world.task(task_id)
    assert task.state is TaskState.SUCCEEDED
    assert (task.cost_usd, task.cost_source) == (pytest.approx(0.03), METERED)
    [pull] = gw.world.fake.pulls(REPO)
    assert "$0.03 metered by Porter" in (pull.issue.body or "")
    [status] = [c for c in gw.world.porter_comments() if marker(task_id) in c]
    assert status.startswith("✅ Opened #") and "· $0.03 metered by Porter" in status


# -- budgets ----------------------------------------------------------------------------------


async def test_a_run_over_its_budget_is_refused_and_its_task_fails_at_stage_budget(
        tmp_path: Path, pem: str) -> None:
    async with gateway_world(tmp_path, pem, env={"PORTER_RUN_BUDGET_USD": "0.05"}) as gw:
        task_id, caller = await gw.world.started()
        token = gw.token(caller.run_id)
        assert (await claude(gw, token)).status_code == 200  # $0.03 of $0.05
        assert (await claude(gw, token)).status_code == 200  # $0.06: crosses the line
        sent = len(gw.provider.requests)
        refused = await claude(gw, token)
        assert refused.status_code == 402
        reason = ("the run is over its per-run budget: $0.06 spent of $0.05 "
                  "(PORTER_RUN_BUDGET_USD)")
        assert refused.json()["error"]["message"] == reason  # in Anthropic's error shape
        assert len(gw.provider.requests) == sent  # nothing forwarded
        task = await gw.world.task(task_id)
        assert (task.state, task.stage, task.reason) == (TaskState.FAILED, Stage.BUDGET, reason)
        # the machine is stopped as a cancel stops it, and the token is dead
        run = await gw.world.run(task_id)
        assert run.cancel_requested
        await gw.world.drain()
        assert run.machine_id in gw.world.runner.stopped
        again = await claude(gw, token)
        assert again.status_code == 401
        assert await caller.heartbeat() is True  # the machine hears it should stop
        status = gw.world.porter_comments()[-1]
        assert f"❌ Failed while running the agent: {reason}" in status
        assert "$0.06 metered by Porter" in status


async def test_the_daily_budget_spans_the_requesters_runs(tmp_path: Path, pem: str) -> None:
    env = {"PORTER_USER_DAILY_BUDGET_USD": "0.05", "PORTER_MAX_LIVE_TASKS": "8",
           "PORTER_MAX_LIVE_PER_INSTALLATION": "8"}
    async with gateway_world(tmp_path, pem, env=env) as gw:
        first_id, first = await gw.world.started(number=1)
        second_id, second = await gw.world.started(number=2)
        alice = (await gw.world.task(first_id)).requester_id
        assert alice is not None
        yesterday = day_start(gw.world.clock.now) - 1
        await gw.world.store.record_call(LlmCall(
            run_id=first.run_id, task_id=first_id, user_id=alice, provider="anthropic",
            model="claude-opus-5-5", status=200, input_tokens=1_000_000, output_tokens=0,
            cache_read_tokens=0, cache_write_tokens=0, cost_usd=4.0, started_at=yesterday,
            duration_ms=900))
        bobs_id, bobs = await gw.world.started(number=3, user="bob")
        assert (await claude(gw, gw.token(first.run_id))).status_code == 200
        assert (await claude(gw, gw.token(second.run_id))).status_code == 200  # $0.06 today
        # alice's runs are each under $0.05, but together over: each is refused now
        refused = await claude(gw, gw.token(first.run_id))
        assert refused.status_code == 402
        reason = ("@alice is over their daily budget: $0.06 spent of $0.05 today (UTC) "
                  "(PORTER_USER_DAILY_BUDGET_USD)")
        assert refused.json()["error"]["message"] == reason
        assert (await claude(gw, gw.token(second.run_id))).status_code == 402
        for task_id in (first_id, second_id):
            task = await gw.world.task(task_id)
            assert (task.state, task.stage, task.reason) == (TaskState.FAILED, Stage.BUDGET,
                                                             reason)
        # bob's own spending is his
        assert (await claude(gw, gw.token(bobs.run_id))).status_code == 200
        assert (await gw.world.task(bobs_id)).state is TaskState.RUNNING
        assert await gw.world.store.user_cost_since(alice, day_start(gw.world.clock.now)) \
            == pytest.approx(0.06)  # yesterday's $4 was yesterday's


# -- provider health --------------------------------------------------------------------------


def test_health_moves_with_errors_and_latency() -> None:
    clock = [1000.0]
    health = ProviderHealth(window_s=600, max_calls=5, clock=lambda: clock[0])
    for _ in range(4):
        health.record("openai", status=200, first_byte=0.2, duration=3)
    shot = health.snapshot("openai")
    assert (shot.calls, shot.errors, shot.error_rate, shot.p50) == (4, 0, 0.0, 0.2)
    health.record("openai", status=500, first_byte=0.05, duration=0.05)
    health.record("openai", status=429, first_byte=0.05, duration=0.05)
    health.record("openai", status=0, first_byte=9.0, duration=9.0)
    shot = health.snapshot("openai")
    assert shot.calls == 5  # the last 5 calls only
    assert (shot.errors, shot.last_error) == (3, 0)
    assert shot.error_rate == pytest.approx(0.6)
    assert shot.p95 == 9.0
    health.record("openai", status=404, first_byte=0.1, duration=0.1)  # the caller's fault
    shot = health.snapshot("openai")
    assert (shot.calls, shot.errors) == (5, 3)  # a 200 left the window, the 404 is no error
    clock[0] += 601  # the window moves on
    assert health.snapshot("openai").calls == 0
    [check] = [c for c in health_checks(health) if c.name == "LLM provider openai"]
    assert check.ok is None and not check.blocking


async def test_provider_health_shows_in_metrics_and_diagnostics(gw: GatewayWorld) -> None:
    _, caller = await gw.world.started()
    token = gw.token(caller.run_id)

    def slow(request: Recorded) -> Reply:
        time.sleep(0.3)  # the fake provider thinks before its first byte
        return Reply.sse(anthropic_events([Text("ok")], THREE_CENTS))

    gw.provider.push("anthropic", Reply.error("anthropic", 500), Reply.error("anthropic", 503),
                     slow)
    statuses = [(await gw.client.post(MESSAGES, headers={"x-api-key": token},
                                      json={"stream": True})).status_code for _ in range(3)]
    assert statuses == [500, 503, 200]
    await recorded(gw, 3)
    shot = PROVIDER_HEALTH.snapshot("anthropic")
    assert (shot.calls, shot.errors) == (3, 2)
    assert shot.p95 is not None and shot.p95 >= 0.3
    metrics = (await gw.world.client.get("/metrics")).text

    def sample(name: str, labels: str) -> float:
        found = re.search(rf"^{name}{{{labels}}} (\S+)$", metrics, re.MULTILINE)
        assert found, f"{name}{{{labels}}} not in /metrics"
        return float(found.group(1))

    assert sample("porter_llm_provider_error_ratio", 'provider="anthropic"') == \
        pytest.approx(2 / 3)
    assert sample("porter_llm_provider_window_calls", 'provider="anthropic"') == 3
    assert sample("porter_llm_provider_first_byte_seconds",
                  'provider="anthropic",quantile="0.95"') >= 0.3
    assert sample("porter_llm_calls_total", 'outcome="error",provider="anthropic"') == 2
    assert sample("porter_llm_calls_total", 'outcome="ok",provider="anthropic"') == 1
    assert sample("porter_llm_first_byte_seconds_count", 'provider="anthropic"') == 3
    assert sample("porter_llm_provider_window_calls", 'provider="gemini"') == 0
    # the diagnostics of a running server (the /setup page) show it, never as blocking
    checks = await diagnose(gw.world.settings, store=gw.world.store,
                            transport=httpx.MockTransport(lambda r: httpx.Response(503)),
                            sandbox=lambda s: None, network_timeout=1)
    by_name = {c.name: c for c in checks if c.area == "gateway"}
    anthropic = by_name["LLM provider anthropic"]
    assert anthropic.ok is False and not anthropic.blocking
    assert "3 calls in the last 15 minutes, 67% failed" in anthropic.detail
    assert by_name["LLM provider openai"].ok is None
    # `porter doctor` (no store: another process) has no gateway to speak of
    assert not [c for c in await diagnose(gw.world.settings, sandbox=lambda s: None,
                                          transport=httpx.MockTransport(
                                              lambda r: httpx.Response(503)),
                                          network_timeout=1) if c.area == "gateway"]
