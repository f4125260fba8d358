from __future__ import annotations

import itertools

from porter.states import RETRYABLE, TERMINAL, TRANSITIONS, TaskState, can_transition


def test_every_state_has_a_row() -> None:
    assert set(TRANSITIONS) == set(TaskState)


def test_terminal_states_are_final() -> None:
    for state in TERMINAL:
        assert TRANSITIONS[state] == frozenset()
        assert state.terminal and not state.live


def test_every_live_state_can_reach_an_end() -> None:
    for start in TaskState:
        seen, frontier = {start}, [start]
        while frontier:
            for nxt in TRANSITIONS[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert seen & TERMINAL, start


def test_the_happy_path() -> None:
    path = ["queued", "starting", "running", "publishing", "succeeded"]
    for a, b in itertools.pairwise(path):
        assert can_transition(TaskState(a), TaskState(b))
    assert not can_transition(TaskState.QUEUED, TaskState.SUCCEEDED)
    assert not can_transition(TaskState.SUCCEEDED, TaskState.QUEUED)


def test_only_failures_are_retryable() -> None:
    assert {TaskState.FAILED, TaskState.CANCELLED, TaskState.TIMED_OUT} == RETRYABLE
