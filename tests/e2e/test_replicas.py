"""Several `porter serve` replicas on one PostgreSQL database (issue 12), as an operator runs them:
real processes, the fake GitHub on real git, the fake Fly starting a machine process per task,
a load balancer in front for the machines' callbacks, and signed webhooks POSTed to the replicas
in turn. One replica is killed with SIGKILL while it holds work; every request still ends as
exactly one task with one machine, one pull request and no duplicate on GitHub.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path

import httpx
import psycopg

from porter.status import marker
from tests.e2e.served_world import ADMIN_TOKEN, REQUESTER, Delivery, Sample, World
from tests.loopback import until

PULLS = r"^/repos/[^/]+/[^/]+/pulls$"
INSTALLATIONS, ISSUES = 10, 10  # 100 tasks; 10 per installation stay inside GitHub's pacing
LIMITS = {"PORTER_MAX_LIVE_TASKS": "100", "PORTER_MAX_LIVE_PER_INSTALLATION": "10",
          # Short leases, so a replica's jobs that no other replica can see are gone (one on
          # another host) are taken over within seconds rather than the default 30.
          "PORTER_JOB_LEASE": "6", "PORTER_WATCHDOG_INTERVAL": "2"}


async def deliver_to_any(world: World, delivery: Delivery, first: int) -> Sample:
    """POST to replica `first`, and on to the next while one is down, as GitHub's redelivery
    of a failed delivery reaches whichever replica the balancer picks."""
    for offset in range(len(world.replicas)):
        replica = world.replicas[(first + offset) % len(world.replicas)]
        if not replica.up:
            continue
        try:
            return await world.deliver(delivery, replica=replica.index)
        except httpx.TransportError:
            continue
    raise AssertionError("no replica took the delivery")


def tasks_in(database: str) -> list[tuple[int, str, int, str, int | None]]:
    with psycopg.connect(database) as conn:
        return conn.execute(
            "SELECT id, delivery_id, comment_id, state, pr_number FROM tasks ORDER BY id"
        ).fetchall()


async def publishing(database: str, pid: int, *, within: float) -> int:
    """Wait until the replica with `pid` is publishing a pull request; that task's id."""
    def held() -> int | None:
        with psycopg.connect(database) as conn:
            row = conn.execute(
                "SELECT jobs.task_id FROM jobs JOIN processes ON processes.id = jobs.claimed_by"
                " WHERE jobs.kind = 'publish' AND jobs.state = 'running' AND processes.pid = %s",
                (pid,)).fetchone()
            return None if row is None else int(row[0])

    deadline = time.monotonic() + within
    while (task_id := await asyncio.to_thread(held)) is None:
        assert time.monotonic() < deadline, "the replica never published"
        await asyncio.sleep(0.05)
    return task_id


async def settled_jobs(database: str, *, within: float) -> list[tuple[str, str]]:
    """Wait until no job is pending or running; the jobs not done (none, or given up)."""
    def unfinished() -> list[tuple[str, str]]:
        with psycopg.connect(database) as conn:
            return conn.execute("SELECT key, state FROM jobs WHERE state != 'done'"
                                " ORDER BY id").fetchall()

    deadline = time.monotonic() + within
    while (left := await asyncio.to_thread(unfinished)) and time.monotonic() < deadline:
        if all(state == "given_up" for _, state in left):
            break
        await asyncio.sleep(0.25)
    return left


def reasons(database: str) -> Counter[str]:
    """Why tasks ended as they did, for a failure's message."""
    with psycopg.connect(database) as conn:
        return Counter(f"{state}: {reason}" for state, reason in
                       conn.execute("SELECT state, reason FROM tasks").fetchall())


async def test_a_replica_killed_mid_way_loses_and_repeats_nothing(
        tmp_path: Path, postgres_database: str) -> None:
    world = World(tmp_path, installations=INSTALLATIONS, issues=ISSUES, replicas=3,
                  database=postgres_database, env=LIMITS)
    world.plan = {"agent_s": 2.0}  # machines are mid-run when the replica dies
    # Interleaved across installations, so every installation has work on every replica.
    deliveries = [world.comment(repo, number) for number in range(1, ISSUES + 1)
                  for repo in world.repos]
    async with world.running():
        # Pull requests land 3 s after they are asked for: the victim is killed while one of
        # its requests is in flight, and the PR it asked for appears after it died.
        world.fake.delay("POST", PULLS, 3.0, times=1000)
        acknowledged: list[Sample] = []
        for i, delivery in enumerate(deliveries[:50]):
            acknowledged.append(await deliver_to_any(world, delivery, i % 3))
        victim = world.replicas[1]
        held = await publishing(postgres_database, victim.process.pid, within=120)
        world.kill(1)
        world.fake.clear_delays()
        for i, delivery in enumerate(deliveries[50:], start=50):
            acknowledged.append(await deliver_to_any(world, delivery, i % 3))

        task_ids = [sample.task_id for sample in acknowledged]
        states = await world.settled(task_ids, within=420)
        assert Counter(states.values()) == {"succeeded": 100}, reasons(postgres_database)
        # Then the work that follows a task's end: final status, link comment, reactions.
        left = await settled_jobs(postgres_database, within=120)
        assert left == [], left
        assert world.balancer is not None
        answered_by = {url for url, count in world.balancer.answered.items() if count}

    # Every acknowledged delivery is exactly one task, whichever replica took it.
    rows = tasks_in(postgres_database)
    assert sorted(row[0] for row in rows) == sorted(task_ids)
    assert len({row[2] for row in rows}) == 100  # one task per comment
    by_comment = {row[2]: row for row in rows}
    # Each with one machine and one pull request.
    machines = Counter(int(m.metadata["porter_task_id"]) for m in world.fly.machines)
    assert machines == dict.fromkeys(task_ids, 1)
    pulls = {(repo, pull.number) for repo in world.repos for pull in world.fake.pulls(repo)}
    assert pulls == {(d.repo, by_comment[d.comment_id][4]) for d in deliveries}
    # Nothing on GitHub twice: one commit on each branch, one status comment and one link
    # comment per issue, each reaction once.
    for delivery in deliveries:
        task_id, _, _, _, pr_number = by_comment[delivery.comment_id]
        [pull] = [p for p in world.fake.pulls(delivery.repo) if p.number == pr_number]
        assert world.fake.commit_parents(delivery.repo, pull.head_sha) == [pull.base_sha]
        ours = [c for c in world.fake.comments(delivery.repo, delivery.number)
                if c.user != REQUESTER]
        assert len(ours) == 2, [c.body[:80] for c in ours]
        assert sum(marker(task_id) in c.body for c in ours) == 1
        reactions = [(r.content, r.user) for r in
                     world.fake.reactions(delivery.comment_id)]
        assert len(reactions) == len(set(reactions)), reactions
        assert ("eyes", world.fake.bot_login) in reactions
    # The dead replica had taken deliveries and served callbacks before it died; the others
    # finished its work.
    assert any(sample.delivery in deliveries[:50] for sample in acknowledged)
    assert victim.url in answered_by and len(answered_by) == 3
    assert held in {row[0] for row in rows}
    assert "Traceback" not in world.log_of(0) + world.log_of(2)


async def test_a_cancel_sent_to_one_replica_stops_a_machine_another_launched(
        tmp_path: Path, postgres_database: str) -> None:
    world = World(tmp_path, installations=1, issues=1, replicas=1, database=postgres_database,
                  env=LIMITS)
    world.plan = {"agent_s": 300.0}  # runs until stopped
    [repo] = world.repos
    async with world.running():
        launcher = world.replicas[0]  # alone: whatever launches the machine is this replica
        sample = await world.deliver(world.comment(repo, 1), replica=launcher.index)
        await until(lambda: any(m.state == "started" for m in world.fly.machines),
                    "the machine started", within=60)
        [machine] = world.fly.machines
        other = await world.add_replica()

        cancel = world.comment(repo, 1, "@porter cancel")
        answer = await other.client.post("/webhooks/github", content=cancel.raw,
                                         headers=cancel.headers)
        assert answer.status_code == 202, answer.text
        await until(lambda: machine.requested_stop or machine.state in ("stopped", "destroyed"),
                    "the machine stopped within 10 s of the cancel", within=10)
        states = await world.settled([sample.task_id], within=30)
    assert states == {sample.task_id: "cancelled"}


async def test_a_page_on_one_replica_follows_a_task_another_records(
        tmp_path: Path, postgres_database: str) -> None:
    world = World(tmp_path, installations=1, issues=1, replicas=2, database=postgres_database,
                  env=LIMITS)
    [repo] = world.repos
    async with world.running():
        page, other = world.replicas
        seen: dict[int, list[str]] = {}
        async with page.client.stream("GET", "/live/feed", headers={
                "Authorization": f"Bearer {ADMIN_TOKEN}", "Accept": "text/event-stream"}) as live:
            assert live.status_code == 200
            lines = live.aiter_lines()
            sample = await world.deliver(world.comment(repo, 1), replica=other.index)
            while "succeeded" not in seen.get(sample.task_id, []):
                line = await asyncio.wait_for(anext(lines), 30)
                if line.startswith("data: "):
                    data = json.loads(line[len("data: "):])
                    seen.setdefault(data["id"], []).append(data["state"])
    # The feed on the page's replica showed the task from its first state to its last, though
    # another replica recorded it (and either ran its jobs).
    assert seen[sample.task_id][0] in ("queued", "starting", "running")
    assert seen[sample.task_id][-1] == "succeeded"
