"""Which delivery, task and run the code running now belongs to, for every log line it writes.

Context variables follow each asyncio task (a task copies its creator's context), so a job run
or a callback binds its ids once and every line logged beneath it, in any module, carries them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

delivery_id: ContextVar[str | None] = ContextVar("porter_delivery_id", default=None)
task_id: ContextVar[int | None] = ContextVar("porter_task_id", default=None)
run_id: ContextVar[str | None] = ContextVar("porter_run_id", default=None)

_VARS: dict[str, ContextVar[object]] = {
    "delivery_id": delivery_id,  # type: ignore[dict-item]
    "task_id": task_id,  # type: ignore[dict-item]
    "run_id": run_id,  # type: ignore[dict-item]
}


@contextlib.contextmanager
def bound(**ids: object) -> Iterator[None]:
    """Bind the given ids (delivery_id, task_id, run_id) for the block; None leaves one as is."""
    tokens = []
    for name, value in ids.items():
        if name not in _VARS:
            raise TypeError(f"unknown log context {name!r}")
        if value is not None:
            tokens.append((_VARS[name], _VARS[name].set(value)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current() -> dict[str, object]:
    """The ids bound now, without the unset ones."""
    return {name: value for name, var in _VARS.items() if (value := var.get()) is not None}
