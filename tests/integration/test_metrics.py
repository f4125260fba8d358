"""/metrics as an operator reads it: what a task's life implies, bounded label sets, and the
shipped Grafana dashboard querying only metrics Porter exports.

Porter runs whole and in-process (tests/fakes/world.py) on an injected clock, so the latencies
observed are the clock steps the test takes, not wall time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from porter.api_metrics import GITHUB
from porter.commands import Run
from porter.metrics import Metrics
from porter.models import Job
from porter.states import JobState, TaskState
from porter.store import Store
from tests.conftest import ROOT, trigger
from tests.fakes.world import REPO, World, open_world

DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"


def samples(text: str) -> dict[str, float]:
    """`name{labels}` → value, for every sample line of an exposition."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            found[series] = float(value)
    return found


def series(name: str, **labels: str) -> str:
    """A sample's key as prometheus_client writes it (labels sorted by name)."""
    inner = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return f"{name}{{{inner}}}" if labels else name


async def scrape(world: World) -> dict[str, float]:
    response = await world.client.get("/metrics")
    assert response.status_code == 200
    return samples(response.text)


async def test_a_task_to_its_pull_request_shows_in_metrics(tmp_path: Path, pem: str) -> None:
    async with open_world(tmp_path, pem) as world:
        # GitHub fails the first try at opening the pull request: the publish job retries.
        world.fake.fail("POST", f"/repos/{REPO}/pulls", 502)
        task_id = await world.request("@porter fix the typo")
        world.clock.now += 1.5
        await world.settle()  # 👀, the status comment, the machine
        machine = await world.machine(task_id)
        assert (await machine.spec()).status_code == 200
        assert (await scrape(world))["porter_live_machines"] == 1
        world.clock.now += 60
        done = await machine.complete({"status": "succeeded", "summary": "Fixed.",
                                       "exit_code": 0, "cost_usd": 0.12,
                                       "changeset": world.changeset()})
        assert done.status_code == 200
        world.clock.now += 3
        await world.settle()
        deadline = world.clock.now + 600  # the publish job's backoff, on the test's clock
        while (await world.task(task_id)).state is not TaskState.SUCCEEDED:
            assert world.clock.now < deadline, (await world.task(task_id)).reason
            await world.advance(5)

        found = await scrape(world)

    agent = {"agent": "tester"}
    assert found[series("porter_webhook_deliveries_total", outcome="recorded")] == 1
    assert found[series("porter_tasks", state="succeeded", agent="tester")] == 1
    assert found[series("porter_tasks", state="running", agent="tester")] == 0
    assert found["porter_live_machines"] == 0
    assert found[series("porter_task_cost_usd", agent="tester")] == 0.12
    # One observation each, of the clock steps taken: 👀 and the machine 1.5 s after the
    # comment, the run 60 s, the PR opened once the retry went through.
    assert found[series("porter_comment_to_reaction_seconds_count", **agent)] == 1
    assert found[series("porter_comment_to_reaction_seconds_sum", **agent)] == 1.5
    assert found[series("porter_comment_to_reaction_seconds_bucket", **agent, le="2.0")] == 1
    assert found[series("porter_comment_to_reaction_seconds_bucket", **agent, le="1.0")] == 0
    assert found[series("porter_comment_to_machine_seconds_count", **agent)] == 1
    assert found[series("porter_comment_to_machine_seconds_sum", **agent)] == 1.5
    assert found[series("porter_run_seconds_count", **agent)] == 1
    assert found[series("porter_run_seconds_sum", **agent)] == 60
    assert found[series("porter_publish_seconds_count", **agent)] == 1
    publish = found[series("porter_publish_seconds_sum", **agent)]
    assert publish >= 3
    assert found[series("porter_comment_to_pr_seconds_count", **agent)] == 1
    assert found[series("porter_comment_to_pr_seconds_sum", **agent)] == pytest.approx(
        1.5 + 60 + publish)
    # The failed try is a retry of the publish job after its branch was pushed.
    assert found[series("porter_job_retries_total", kind="publish", stage="pushed")] == 1
    assert found[series("porter_job_seconds_count", kind="publish")] == 1
    assert not any(key.startswith("porter_job_give_ups_total") for key in found)
    # GitHub's calls under their templates, with GitHub's statuses.
    pulls = {"service": "github", "method": "POST", "route": "/repos/{owner}/{repo}/pulls"}
    assert found[series("porter_api_calls_total", **pulls, status="502")] == 1
    assert found[series("porter_api_calls_total", **pulls, status="201")] == 1
    assert found[series("porter_api_call_seconds_count", **pulls)] == 2
    reactions = {"service": "github", "method": "POST",
                 "route": "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions"}
    assert found[series("porter_api_calls_total", **reactions, status="201")] == 2  # 👀, 🚀
    comments = {"service": "github", "method": "GET",
                "route": "/repos/{owner}/{repo}/issues/{number}/comments"}
    assert found[series("porter_api_calls_total", **comments, status="200")] >= 1
    assert not any('route="other"' in key for key in found)
    checks = {"service": "github", "route": "/repos/{owner}/{repo}/check-runs"}
    assert found[series("porter_api_calls_total", **checks, method="POST", status="201")] == 1
    # Nothing names the repository, the requester or the task.
    assert not any("octo" in key or "hello" in key or "alice" in key for key in found)


async def test_the_watchdog_ending_a_silent_run_is_counted(tmp_path: Path, pem: str) -> None:
    async with open_world(tmp_path, pem) as world:
        task_id, _ = await world.started()
        assert (await scrape(world))["porter_live_machines"] == 1
        world.clock.now += world.settings.heartbeat_timeout + 1
        await world.runtime.watchdog.tick()

        found = await scrape(world)
        assert (await world.task(task_id)).state is TaskState.FAILED

    assert found[series("porter_watchdog_actions_total", action="silent")] == 1
    assert found["porter_live_machines"] == 0
    assert found[series("porter_tasks", state="failed", agent="tester")] == 1


async def test_label_sets_stay_bounded_across_a_thousand_tasks(
        store_database: Path | str) -> None:
    """Tasks with their own repository, agent, installation and ids, and GitHub calls on
    their own paths, answered in every way: the series after 1,000 are those after 10."""
    metrics = Metrics()
    store = await Store.open(store_database)
    metrics.attach(store, agents={"claude", "codex"})
    statuses = [200, 201, 404, 502, 0]  # 0: no answer at all

    def answer(request: httpx.Request) -> httpx.Response:
        number = re.search(r"/repo(\d+)/", request.url.path)
        assert number is not None
        status = statuses[int(number[1]) % len(statuses)]
        if not status:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(status, json={})

    transport = metrics.api.transport(GITHUB, "https://api.github.com",
                                      httpx.MockTransport(answer))
    progress = [{}, {"commit": "c"}, {"commit": "c", "pushed": True}, {"unheard": 1}]
    seen: list[set[str]] = []
    try:
        async with httpx.AsyncClient(transport=transport,
                                     base_url="https://api.github.com") as http:
            for start, end in ((0, 10), (10, 1000)):
                made = [dataclasses.replace(
                    trigger(f"d{i}", 10_000 + i, repo=f"owner{i}/repo{i}"),
                    command=Run(f"task {i}", agent=("claude", "codex", f"agent{i}")[i % 3]),
                    installation_id=i) for i in range(start, end)]
                results = await store.record_triggers(made, default_agent="claude")
                for i, result in zip(range(start, end), results, strict=True):
                    assert result.task_id is not None
                    if i % 50 == 0:  # a write each, and one agent's cost is as good as all
                        await store.update_task(result.task_id, cost_usd=i / 100)
                    await drive(metrics, result.task_id, i, progress[i % len(progress)])
                    for path in (f"/repos/owner{i}/repo{i}/issues/{i}/comments",
                                 f"/repos/owner{i}/repo{i}/unknown/{i}"):
                        with contextlib.suppress(httpx.ConnectError):  # counted as `error`
                            await http.post(path)
                await metrics.refresh()
                text = generate_latest(metrics.registry).decode()
                seen.append(set(samples(text)))
    finally:
        await store.close()

    after_ten, after_thousand = seen
    assert after_thousand == after_ten
    assert series("porter_tasks", state="queued", agent="other") in after_ten
    assert series("porter_api_calls_total", service="github", method="POST", route="other",
                  status="error") in after_ten
    assert not any(re.search(r"owner\d|repo\d|agent\d", key) for key in after_thousand)


async def drive(metrics: Metrics, task_id: int, i: int, progress: dict[str, object]) -> None:
    """What the job runner and the watchdog would tell about task `i`."""

    def job(kind: str, payload: dict[str, object]) -> Job:
        return Job(id=i, kind=kind, key=f"{kind}:{i}", task_id=task_id, installation_id=i,
                   payload=payload, state=JobState.RUNNING, attempts=i % 5, run_after=0.0,
                   last_error=None, result=None, progress=dict(progress))

    await metrics.job_finished(job("react", {"content": "eyes", "comment_id": i}), i / 1000)
    await metrics.job_finished(job("machine.launch", {"run_id": f"run-{i}"}), 0.5)
    await metrics.job_retried(job("publish", {}), f"error {i} on owner{i}/repo{i}")
    await metrics.job_given_up(job("status", {}), f"gave up on task {task_id}")
    metrics.paced(i, i / 10, ("bucket", "retry_after", f"reason{i}")[i % 3])
    metrics.watchdog_action(("silent", "orphan", f"action{i}")[i % 3])


async def test_the_dashboard_queries_only_metrics_porter_exports(tmp_path: Path,
                                                                 pem: str) -> None:
    async with open_world(tmp_path, pem) as world:
        response = await world.client.get("/metrics")
    exported: set[str] = set()
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    for family in text_string_to_metric_families(response.text):
        exported.update(family.name + s for s in suffixes.get(family.type, ("",)))

    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    queries = [target["expr"] for panel in dashboard["panels"]
               for target in panel.get("targets", [])]
    used = {name for query in queries for name in re.findall(r"\bporter_[a-z_]+", query)}

    assert len(queries) >= 10
    assert used - exported == set()
    assert any(v["type"] == "datasource" and v["query"] == "prometheus"
               for v in dashboard["templating"]["list"])
    # Every group of metrics has a panel.
    for family in ("porter_tasks", "porter_comment_to_reaction_seconds_bucket",
                   "porter_comment_to_machine_seconds_bucket",
                   "porter_comment_to_pr_seconds_bucket", "porter_run_seconds_bucket",
                   "porter_publish_seconds_bucket", "porter_job_retries_total",
                   "porter_job_give_ups_total", "porter_api_calls_total",
                   "porter_api_call_seconds_bucket", "porter_rate_limit_waits_total",
                   "porter_watchdog_actions_total", "porter_live_machines",
                   "porter_task_cost_usd", "porter_webhook_deliveries_total"):
        assert family in used, family
