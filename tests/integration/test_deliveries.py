"""Lost deliveries: the reconciler asks the fake GitHub to redeliver what never reached Porter.

Porter is whole (tests/fakes/world.py) and served on a loopback socket; the fake GitHub keeps a
delivery log in GitHub's shapes and, asked to redeliver, really sends the stored payload, signed,
to that socket, recording the attempt with the status code Porter answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from porter.cli import main
from porter.deliveries import SPACING, WINDOW
from tests.conftest import WEBHOOK_SECRET
from tests.fakes.github_deliveries import DeliveryRecord
from tests.fakes.world import World, open_world
from tests.loopback import served, until

ATTEMPTS = r"/app/hook/deliveries/\d+/attempts"


@contextlib.asynccontextmanager
async def porter_online(tmp_path: Path, pem: str, database: Path | str | None = None
                        ) -> AsyncIterator[World]:
    """A World whose Porter listens on a real socket, set as the App's webhook URL (on
    `database`: the `store_database` fixture's SQLite file or PostgreSQL database)."""
    async with open_world(tmp_path, pem, database=database) as world, served(world.app) as url:
        world.fake.webhook_url = f"{url}/webhooks/github"
        world.fake.webhook_secret = WEBHOOK_SECRET
        yield world


async def deliver(world: World, body: str, **kwargs: Any) -> DeliveryRecord:
    """A comment, sent by the fake GitHub to Porter over HTTP (Porter's answer recorded)."""
    payload = world.payload(body)
    return await asyncio.to_thread(world.fake.deliver, "issue_comment", payload, **kwargs)


def failed(world: World, body: str, status_code: int = 502) -> DeliveryRecord:
    """A comment whose delivery failed before reaching Porter: GitHub logged it, Porter saw
    nothing."""
    return world.fake.add_delivery("issue_comment", world.payload(body), status_code=status_code)


def redelivered(world: World) -> list[int]:
    """The delivery ids Porter asked GitHub to redeliver, in order."""
    return [int(call.path.split("/")[-2]) for call in world.fake.calls_to("POST", ATTEMPTS)]


async def redeliveries_done(world: World, count: int) -> list[DeliveryRecord]:
    await until(lambda: len([d for d in world.fake.deliveries if d.redelivery]) >= count,
                f"{count} redeliveries to reach Porter")
    return [d for d in world.fake.deliveries if d.redelivery]


async def tasks_of(world: World, guids: list[str]) -> dict[str, int | None]:
    recorded = await world.store.recorded_deliveries(guids)
    return {guid: recorded[guid].task_id if guid in recorded else None for guid in guids}


async def test_a_pass_redelivers_exactly_the_failed_deliveries_once(
        tmp_path: Path, pem: str, store_database: Path | str) -> None:
    async with porter_online(tmp_path, pem, store_database) as world:
        fake = world.fake
        ok = [await deliver(world, f"@porter fix typo {n}") for n in (1, 2)]
        chatter = await deliver(world, "thanks, looks good")  # Porter ignores it: no row
        lost = [failed(world, "@porter fix typo 3", 502), failed(world, "@porter fix typo 4", 504),
                failed(world, "@porter fix typo 5", 0)]
        recovered = failed(world, "@porter fix typo 6", 503)
        again = await asyncio.to_thread(fake.deliver, "issue_comment", recovered.payload,
                                        guid=recovered.guid, redelivery=True)
        assert [d.status_code for d in (*ok, chatter, again)] == [202, 202, 202, 202]
        # Failures Porter would ignore anyway: another event, and an edited comment.
        fake.add_delivery("issues", {"action": "opened"}, status_code=500)
        edited = world.payload("@porter fix typo 7")
        fake.add_delivery("issue_comment", {**edited, "action": "edited"}, status_code=500)
        reconciler = world.runtime.deliveries
        assert reconciler is not None

        result = await reconciler.run_once()

        assert sorted(redelivered(world)) == sorted(d.id for d in lost)
        assert sorted(e.guid for e in result.requested) == sorted(d.guid for d in lost)
        sent = await redeliveries_done(world, 1 + len(lost))  # `again` was one too
        assert {d.guid: d.status_code for d in sent if d.guid != recovered.guid} == {
            d.guid: 202 for d in lost}
        made = await tasks_of(world, [d.guid for d in lost])
        assert all(made.values()) and len(set(made.values())) == 3
        instructions = {(await world.task(t)).instruction for t in made.values() if t}
        assert instructions == {"fix typo 3", "fix typo 4", "fix typo 5"}

        # A second pass finds nothing to ask for, and asking again makes no second task.
        assert (await reconciler.run_once()).requested == []
        assert len(redelivered(world)) == 3
        before = len(await world.store.list_tasks(limit=100))
        await world.runtime.github.redeliver(lost[0].id)  # type: ignore[union-attr]
        [*_, repeat] = await redeliveries_done(world, 1 + len(lost) + 1)
        assert repeat.guid == lost[0].guid and repeat.response_body == '{"status":"duplicate"}'
        assert len(await world.store.list_tasks(limit=100)) == before == 2 + 1 + 3


async def test_a_delivery_that_keeps_failing_is_redelivered_a_few_times_then_reported(
        tmp_path: Path, pem: str, store_database: Path | str,
        caplog: pytest.LogCaptureFixture) -> None:
    async with porter_online(tmp_path, pem, store_database) as world:
        world.fake.webhook_secret = "not-the-secret-porter-has"  # every redelivery gets a 401
        # Hours pass for Porter only: GitHub keeps its own time, which the App's JWTs (signed
        # by githubkit with the real time) must agree with.
        world.fake.now = time.time
        lost = failed(world, "@porter fix the typo")
        reconciler = world.runtime.deliveries
        assert reconciler is not None
        caplog.set_level(logging.INFO, logger="porter.deliveries")

        for request, wait in enumerate((0, *SPACING), start=1):
            world.clock.advance(wait)
            assert [e.guid for e in (await reconciler.run_once()).requested] == [lost.guid]
            answers = await redeliveries_done(world, request)
            assert answers[-1].status_code == 401
            assert (await reconciler.run_once()).requested == []  # too soon to ask again
        world.clock.advance(SPACING[-1])
        result = await reconciler.run_once()
        assert result.requested == [] and [e.guid for e in result.given_up] == [lost.guid]
        assert (await reconciler.run_once()).given_up == []  # reported once

        assert len(redelivered(world)) == 3
        [report] = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert "webhook delivery lost" in report.getMessage()
        assert "PORTER_GITHUB_WEBHOOK_SECRET" in report.getMessage()
        assert "401" in report.getMessage()
        assert await world.store.list_tasks(limit=10) == []


async def test_a_pass_pages_through_the_log_and_stops_at_the_window(
        tmp_path: Path, pem: str, store_database: Path | str) -> None:
    async with porter_online(tmp_path, pem, store_database) as world:
        fake = world.fake
        too_old = fake.add_delivery("issue_comment", world.payload("@porter fix the old typo"),
                                    status_code=502, delivered_at=world.clock.now - WINDOW - 1)
        oldest_lost = failed(world, "@porter fix the typo")
        for n in range(230):  # other events GitHub sent meanwhile, all answered
            fake.add_delivery("issues", {"action": "opened", "n": n}, status_code=202)
        reconciler = world.runtime.deliveries
        assert reconciler is not None

        result = await reconciler.run_once()

        assert redelivered(world) == [oldest_lost.id]
        assert too_old.id not in redelivered(world)
        pages = fake.calls_to("GET", "/app/hook/deliveries")
        assert [c.query.get("cursor") is not None for c in pages] == [False, True, True]
        assert result.listed == 231 and not result.truncated
        await redeliveries_done(world, 1)
        assert (await tasks_of(world, [oldest_lost.guid]))[oldest_lost.guid]


async def test_a_delivery_github_says_succeeded_but_porter_never_recorded(
        tmp_path: Path, pem: str, store_database: Path | str) -> None:
    async with porter_online(tmp_path, pem, store_database) as world:
        fake = world.fake
        # A proxy in front of Porter answered 200 to all three; Porter saw none of them.
        swallowed = fake.add_delivery("issue_comment", world.payload("@porter fix the typo"),
                                      status_code=200, response_body="ok")
        chatter = fake.add_delivery("issue_comment", world.payload("nice work"),
                                    status_code=200, response_body="ok")
        first = await deliver(world, "@porter fix the other typo")
        duplicate = fake.add_delivery("issue_comment", first.payload, status_code=200)  # new guid
        reconciler = world.runtime.deliveries
        assert reconciler is not None

        result = await reconciler.run_once()

        assert redelivered(world) == [swallowed.id]
        assert result.checked == 3
        await redeliveries_done(world, 1)
        assert (await tasks_of(world, [swallowed.guid]))[swallowed.guid]
        assert (await tasks_of(world, [chatter.guid, duplicate.guid])) == {
            chatter.guid: None, duplicate.guid: None}
        # Verdicts are kept: the next pass reads no payload again.
        reads = len(fake.calls_to("GET", r"/app/hook/deliveries/\d+"))
        assert (await reconciler.run_once()).requested == []
        assert len(fake.calls_to("GET", r"/app/hook/deliveries/\d+")) == reads == 3


async def test_the_deliveries_command_shows_what_became_of_each(
        tmp_path: Path, pem: str, capsys: pytest.CaptureFixture[str]) -> None:
    async with porter_online(tmp_path, pem) as world:
        taken = await deliver(world, "@porter fix the typo")
        chatter = await deliver(world, "thanks")
        lost = failed(world, "@porter fix the other typo", 502)
        async with world.fake.serve() as urls:  # the command reaches GitHub over HTTP
            key = tmp_path / "app.pem"
            key.write_text(world.fake.private_key_pem)
            env = tmp_path / "cli.env"
            env.write_text("\n".join([
                f"PORTER_DATABASE={world.settings.database}",
                "PORTER_GITHUB_APP_ID=1",
                f"PORTER_GITHUB_PRIVATE_KEY_FILE={key}",
                f"PORTER_GITHUB_API_URL={urls.api_url}",
            ]) + "\n")
            code = await asyncio.to_thread(
                main, ["--env-file", str(env), "deliveries", "--redeliver"])
            assert code == 0
            first = capsys.readouterr().out
            await redeliveries_done(world, 1)
            assert await asyncio.to_thread(main, ["--env-file", str(env), "deliveries"]) == 0
            second = capsys.readouterr().out
        made = await tasks_of(world, [taken.guid, lost.guid])

    assert "asked GitHub to redeliver 1" in first
    assert f"redeliver {lost.id} {lost.guid} issue_comment.created" in first
    rows = {line.split()[2]: line for line in second.splitlines()[1:]}  # by delivery id
    assert second.splitlines()[0].split() == [
        "delivered", "id", "guid", "event", "GitHub", "Porter"]
    assert "202 OK" in rows[str(taken.id)]
    assert rows[str(taken.id)].endswith(f"task {made[taken.guid]} (queued)")
    assert rows[str(chatter.id)].endswith("ignored")
    assert "502 Invalid HTTP Response: 502" in rows[str(lost.id)]
    [again] = [d for d in world.fake.deliveries if d.redelivery]
    assert "202 OK (redelivery)" in rows[str(again.id)]
    for delivery in (lost, again):  # one event: both attempts say what became of it
        assert rows[str(delivery.id)].endswith(
            f"task {made[lost.guid]} (queued), redelivery requested 1x")


async def test_the_deliveries_command_needs_the_app(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = tmp_path / "cli.env"
    env.write_text(f"PORTER_DATABASE={tmp_path / 'porter.db'}\n")
    assert main(["--env-file", str(env), "deliveries"]) == 1
    error = capsys.readouterr().err
    assert "not configured" in error and "PORTER_GITHUB_APP_ID" in error
