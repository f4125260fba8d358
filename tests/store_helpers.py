"""A task in the store the way intake records one, for tests of what follows."""

from __future__ import annotations

from porter.models import Task
from porter.store import Store
from porter.webhooks import Trigger, decode_delivery
from tests.conftest import comment_payload


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
