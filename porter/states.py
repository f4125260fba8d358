"""Task, run and job states, their groups and the task transitions: data, not code paths.

Each group is defined here once; the store binds a group's values into its SQL, so a query and
the Python that reads its result cannot disagree on what, say, "live" means.
"""

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
        """Holding a machine (LIVE); a queued task is neither live nor terminal."""
        return self in LIVE


class RunState(StrEnum):
    """The stored strings of a run's state (one attempt of a task on a machine)."""

    LAUNCHING = "launching"  # the machine is being made; it has not called back yet
    RUNNING = "running"  # the machine has called back at least once
    COMPLETED = "completed"  # the machine reported its result
    ABANDONED = "abandoned"  # the machine is gone or its task ended; nothing from it counts


class JobState(StrEnum):
    """The stored strings of a job's state."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    GIVEN_UP = "given_up"


class Stage(StrEnum):
    """Where a failed task failed."""

    DISPATCH = "dispatch"
    AGENT = "agent"
    PUBLISH = "publish"
    BUDGET = "budget"  # the run went over a spending budget (porter/gateway/budgets.py)


S = TaskState

TERMINAL = frozenset({S.SUCCEEDED, S.REJECTED, S.FAILED, S.CANCELLED, S.TIMED_OUT})
# A machine is held for the task: what the concurrency limits count, one per issue.
LIVE = frozenset({S.STARTING, S.RUNNING, S.PUBLISHING})
# The task's run is on its machine: the run's completion, or its silence, ends the task.
ON_MACHINE = frozenset({S.STARTING, S.RUNNING})
# What `@porter cancel` can stop; a task publishing is past that point.
CANCELLABLE = frozenset({S.QUEUED, S.STARTING, S.RUNNING})

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

# Runs whose machine may still call back and be accepted.
LIVE_RUN = frozenset({RunState.LAUNCHING, RunState.RUNNING})
# Jobs that will not run again unless asked anew.
FINISHED_JOB = frozenset({JobState.DONE, JobState.GIVEN_UP})


# What every state change owes the requester, enqueued in the same transaction as the change
# (porter/store/tasks.py), so a crash between the two cannot leave a stale status comment: the
# status comment re-rendered, and on a final state the final reaction on the triggering comment.
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
