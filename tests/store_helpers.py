"""A task in the store the way intake records one, for tests of what follows."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from porter.models import Task
from porter.store import Store
from porter.webhooks import Trigger, decode_delivery
from tests.conftest import comment_payload
from tests.fakes.clock import Clock


async def queued(store: Store, comment_id: int = 77) -> Task:
    """A queued task for `@porter` in a fresh issue comment (`comment_id` keeps them apart)."""
    trigger = decode_delivery("issue_comment", f"d-{comment_id}",
                              comment_payload(id=comment_id), handle="porter", agents={"claude"})
    assert isinstance(trigger, Trigger)
    [result] = await store.record_triggers([trigger], default_agent="claude")
    assert result.task_id is not None
    task = await store.get_task(result.task_id)
    assert task is not None
    return task


@contextlib.asynccontextmanager
async def two_processes(database: Path | str,
                        clock: Clock | None = None) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one database, as two Porter processes: each its own connections and
    identity (on one clock, when given)."""
    opened = {} if clock is None else {"clock": clock}
    first = await Store.open(database, **opened)
    second = await Store.open(database, **opened)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()
