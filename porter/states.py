"""Task states and the transitions between them: data, not code paths."""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    """The stored strings of a task's state."""

    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    PUBLISHING = "publishing"
    SUCCEEDED = "succeeded"
    REJECTED = "rejected"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def live(self) -> bool:
        return self not in TERMINAL


class Stage(StrEnum):
    """Where a failed task failed."""

    DISPATCH = "dispatch"
    AGENT = "agent"
    PUBLISH = "publish"


S = TaskState

TERMINAL = frozenset({S.SUCCEEDED, S.REJECTED, S.FAILED, S.CANCELLED, S.TIMED_OUT})

# Every edge a task may take. Terminal states have none: `@porter retry` starts a new attempt
# (see RETRYABLE), it does not resurrect the old one.
TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    S.QUEUED: frozenset({S.STARTING, S.REJECTED, S.FAILED, S.CANCELLED}),
    S.STARTING: frozenset({S.RUNNING, S.FAILED, S.CANCELLED, S.TIMED_OUT, S.QUEUED}),
    S.RUNNING: frozenset({S.PUBLISHING, S.FAILED, S.CANCELLED, S.TIMED_OUT}),
    S.PUBLISHING: frozenset({S.SUCCEEDED, S.FAILED}),
    S.SUCCEEDED: frozenset(),
    S.REJECTED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
    S.TIMED_OUT: frozenset(),
}

# Terminal states from which `@porter retry` may start attempt n+1, back at `queued`.
RETRYABLE = frozenset({S.FAILED, S.CANCELLED, S.TIMED_OUT})


# What every state change owes the requester, enqueued in the same transaction as the change
# (porter/store.py), so a crash between the two cannot leave a stale status comment: the status
# comment re-rendered, and on a final state the final reaction on the triggering comment.
STATUS_JOB = "status"
REACT_JOB = "react"
FINAL_REACTION = {
    S.SUCCEEDED: "rocket",
    S.FAILED: "confused",
    S.TIMED_OUT: "confused",
}


def can_transition(current: TaskState, target: TaskState) -> bool:
    return target in TRANSITIONS[current]


def can_retry(current: TaskState) -> bool:
    return current in RETRYABLE


def event_kind(target: TaskState) -> str:
    """The task_events kind recorded for entering a state."""
    return f"state.{target.value}"
