"""Artifacts of a run: kept with their bytes intact, once per run and name, cut at the bound,
and gone after the retention period at the watchdog's next tick while newer ones stay.

A real store (a SQLite file, then a PostgreSQL database: `store_database`) on a clock the test
turns; retention through the watchdog of a running Porter (`open_world`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from porter.artifacts import MAX_BYTES, MEDIA_TYPES, ArtifactPruner
from porter.cli import main
from porter.models import AgentRun
from porter.store import Store
from porter.verification import CommandResult, Verification
from tests.conftest import trigger
from tests.fakes.clock import Clock
from tests.fakes.world import open_world

DAY = 86400.0
MiB = 1024 * 1024


class Runs:
    """Tasks started as Porter starts them, each with its run (artifacts belong to both)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.made = 0

    async def run(self) -> AgentRun:
        self.made += 1
        [result] = await self.store.record_triggers(
            [trigger(f"d-{self.made}", 2000 + self.made)], default_agent="claude")
        assert result.task_id is not None
        task = await self.store.get_task(result.task_id)
        assert task is not None
        run_id = f"run-{self.made}"
        assert await self.store.start_run(task, run_id=run_id, token_hash="h", runner="local",
                                          job=("machine.launch", f"launch:{run_id}", {}))
        run = await self.store.current_run(task.id)
        assert run is not None
        return run

    async def kept(self, run: AgentRun) -> list[str]:
        return [info.name for info in await self.store.artifacts(run.task_id)]


@pytest.fixture
async def store(store_database: Path | str) -> AsyncIterator[Store]:
    opened = await Store.open(store_database, clock=Clock())
    try:
        yield opened
    finally:
        await opened.close()


def verification_json() -> bytes:
    verification = Verification((CommandResult(
        phase="verify", command="python -m pytest -q", exit_code=1, duration_s=2.5,
        timed_out=False, output_tail="1 failed, 3 passed"),))
    return json.dumps(verification.dump()).encode()


async def test_a_runs_artifacts_are_listed_and_downloaded_byte_for_byte(store: Store) -> None:
    run = await Runs(store).run()
    log = b"agent started\n\xff\xfe\x00 not UTF-8 \x80\x81\ndone\n"
    changeset = "diff --git a/caf\u00e9.py b/caf\u00e9.py\n+print('\u00e9')\n".encode()
    verification = verification_json()
    ids = {name: await store.put_artifact(run.task_id, run.id, name, MEDIA_TYPES[name], body)
           for name, body in (("log", log), ("verification", verification),
                              ("changeset", changeset))}

    listed = await store.artifacts(run.task_id)
    assert [(i.id, i.name, i.run_id, i.size, i.truncated) for i in listed] == [
        (ids["log"], "log", run.id, len(log), False),
        (ids["verification"], "verification", run.id, len(verification), False),
        (ids["changeset"], "changeset", run.id, len(changeset), False)]
    assert {i.name: i.media_type for i in listed} == MEDIA_TYPES
    for info, body in zip(listed, (log, verification, changeset), strict=True):
        got = await store.artifact(info.id)
        assert got is not None
        assert type(got.content) is bytes and got.content == body
        assert got.info == info
        assert info.sha256 == hashlib.sha256(body).hexdigest()
    got = await store.artifact(ids["verification"])
    assert got is not None
    assert json.loads(got.content)["outcome"] == "failed"
    assert await store.artifact(max(ids.values()) + 100) is None
    assert await store.artifacts(run.task_id + 100) == []


async def test_a_resent_completion_adds_and_replaces_nothing(store: Store) -> None:
    run = await Runs(store).run()
    first = await store.put_artifact(run.task_id, run.id, "log", None, b"first\n")
    again = await store.put_artifact(run.task_id, run.id, "log", None, b"second, longer\n")
    assert again == first
    [info] = await store.artifacts(run.task_id)
    got = await store.artifact(first)
    assert got is not None and got.content == b"first\n" and info.size == len(b"first\n")


async def test_an_unknown_name_is_refused_and_an_unsafe_type_is_not_served(store: Store) -> None:
    runs = Runs(store)
    run = await runs.run()
    with pytest.raises(ValueError):
        await store.put_artifact(run.task_id, run.id, "secrets", None, b"x")  # type: ignore[arg-type]
    artifact_id = await store.put_artifact(run.task_id, run.id, "log", "text/html",
                                           b"<script>alert(1)</script>")
    got = await store.artifact(artifact_id)
    assert got is not None and got.info.media_type == "text/plain; charset=utf-8"
    assert await runs.kept(run) == ["log"]


async def test_an_artifact_over_the_bound_is_cut_with_a_marker_and_its_size_kept(
    store: Store,
) -> None:
    runs = Runs(store)
    run = await runs.run()
    big_log = b"early line\n" + b"x" * MAX_BYTES + b"\nthe test failed here\n"
    big_diff = b"diff --git a/a b/a\n" + b"+" * MAX_BYTES + b"\nthe last hunk\n"
    exact = b"y" * MAX_BYTES
    log_id = await store.put_artifact(run.task_id, run.id, "log", None, big_log)
    diff_id = await store.put_artifact(run.task_id, run.id, "changeset", None, big_diff)
    other = await runs.run()
    exact_id = await store.put_artifact(other.task_id, other.id, "log", None, exact)

    log, diff, whole = [await store.artifact(i) for i in (log_id, diff_id, exact_id)]
    assert log is not None and diff is not None and whole is not None
    assert len(log.content) <= MAX_BYTES and log.info.truncated
    assert log.info.size == len(big_log) and log.info.stored == len(log.content)
    assert log.content.startswith(b"[porter: cut to the last ")  # the end of a log matters
    assert log.content.endswith(b"the test failed here\n")
    assert str(len(big_log)).encode() in log.content.splitlines()[0]
    assert len(diff.content) <= MAX_BYTES and diff.info.truncated
    assert diff.content.startswith(b"diff --git a/a b/a\n")
    assert diff.content.rstrip().endswith(f"of {len(big_diff)} bytes]".encode())
    assert diff.info.sha256 == hashlib.sha256(diff.content).hexdigest()  # what is served
    assert whole.content == exact and not whole.info.truncated


async def test_the_watchdog_deletes_artifacts_older_than_the_retention_period(
    tmp_path: Path, pem: str, store_database: Path | str,
) -> None:
    async with open_world(tmp_path, pem, github=False, database=store_database,
                          env={"PORTER_ARTIFACT_RETENTION_DAYS": "30"}) as world:
        runs = Runs(world.store)
        old, recent = await runs.run(), await runs.run()
        old_ids = [await world.store.put_artifact(old.task_id, old.id, name, None, b"old")
                   for name in ("log", "verification", "changeset")]
        world.clock.advance(29 * DAY)
        recent_id = await world.store.put_artifact(recent.task_id, recent.id, "log", None,
                                                   b"recent")
        world.clock.advance(2 * DAY)  # the old ones are 31 days old, the recent one 2

        await world.runtime.watchdog.tick(world.clock.now)

        assert await runs.kept(old) == []
        assert [await world.store.artifact(i) for i in old_ids] == [None, None, None]
        assert await runs.kept(recent) == ["log"]
        kept = await world.store.artifact(recent_id)
        assert kept is not None and kept.content == b"recent"


async def test_zero_days_keeps_every_artifact(tmp_path: Path, pem: str,
                                              store_database: Path | str) -> None:
    async with open_world(tmp_path, pem, github=False, database=store_database,
                          env={"PORTER_ARTIFACT_RETENTION_DAYS": "0"}) as world:
        runs = Runs(world.store)
        run = await runs.run()
        await world.store.put_artifact(run.task_id, run.id, "log", None, b"kept")
        world.clock.advance(3650 * DAY)
        await world.runtime.watchdog.tick(world.clock.now)
        assert await runs.kept(run) == ["log"]


async def test_a_backlog_goes_a_few_artifacts_a_tick_and_passes_are_hourly(
    store: Store,
) -> None:
    runs = Runs(store)
    made = [await runs.run() for _ in range(5)]
    for run in made:
        await store.put_artifact(run.task_id, run.id, "log", None, b"old")
    clock = store.clock
    assert isinstance(clock, Clock)
    clock.advance(31 * DAY)
    pruner = ArtifactPruner(store, days=30, batch=2, batches=1)  # two per tick

    assert await pruner.tick(clock.now) == 2
    assert sum([len(await runs.kept(run)) for run in made]) == 3  # the pass goes on
    assert await pruner.tick(clock.advance(5)) == 2
    assert await pruner.tick(clock.advance(5)) == 1  # fewer than a batch: the pass is over
    assert all([await runs.kept(run) == [] for run in made])



async def test_a_pass_starts_at_the_first_tick_then_hourly(store: Store) -> None:
    runs = Runs(store)
    run = await runs.run()
    await store.put_artifact(run.task_id, run.id, "log", None, b"nearly old")
    clock = store.clock
    assert isinstance(clock, Clock)
    pruner = ArtifactPruner(store, days=30)

    assert await pruner.tick(clock.advance(30 * DAY - 600)) == 0  # ten minutes short
    assert await pruner.tick(clock.advance(1200)) == 0  # old now, but within the hour
    assert await runs.kept(run) == ["log"]
    assert await pruner.tick(clock.advance(3600)) == 1
    assert await runs.kept(run) == []


async def test_artifacts_move_with_the_database_to_postgresql_byte_for_byte(
    tmp_path: Path, postgres_database: str, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "porter.db"
    source = await Store.open(path)
    try:
        run = await Runs(source).run()
        body = b"\x00\xff\xfe binary \x80 log\n"
        artifact_id = await source.put_artifact(run.task_id, run.id, "log", None, body)
        [before] = await source.artifacts(run.task_id)
    finally:
        await source.close()
    assert main(["migrate-store", "--from", f"sqlite:{path}", "--to", postgres_database]) == 0
    capsys.readouterr()

    moved = await Store.open(postgres_database)
    try:
        got = await moved.artifact(artifact_id)
        assert got is not None and got.content == body and got.info == before
    finally:
        await moved.close()
