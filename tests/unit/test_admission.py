"""Which queued task may start: the one decision (porter/admission.py)."""

from __future__ import annotations

import dataclasses
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from porter.admission import Limits, Refuse, Start, Wait, decide
from porter.models import Task
from porter.states import TaskState

BASE = Task(
    id=1, repo="octo/hello", installation_id=42, issue_number=9, is_pull_request=False,
    comment_kind="issue", comment_id=5001, comment_url="https://github.com/octo/hello/issues/9#c",
    requester="wes", requester_id=7, agent="claude", model=None, instruction="fix it",
    state=TaskState.QUEUED, stage=None, reason=None, attempt=1, created_at=0.0, updated_at=0.0,
    delivery_id="d-1", context={},
)
ROOMY = Limits(total=10, per_installation=10)


def task(id: int, **changes: object) -> Task:
    return dataclasses.replace(BASE, id=id, **changes)  # type: ignore[arg-type]


def test_a_free_issue_starts_oldest_first() -> None:
    assert decide([task(3, issue_number=2), task(2, issue_number=1)], [], ROOMY) == [
        Start(task(2, issue_number=1)), Start(task(3, issue_number=2))]


def test_the_same_requester_waits_behind_their_live_task_and_others_are_refused() -> None:
    live = task(1, state=TaskState.RUNNING)
    mine, theirs = task(2), task(3, requester="ann")
    assert decide([mine, theirs], [live], ROOMY) == [Wait(mine, behind=live),
                                                     Refuse(theirs, holder=live)]


def test_a_task_started_in_this_pass_holds_its_issue_for_the_next() -> None:
    first, follow_up, stranger = task(1), task(2), task(3, requester="ann")
    assert decide([first, follow_up, stranger], [], ROOMY) == [
        Start(first), Wait(follow_up, behind=first), Refuse(stranger, holder=first)]


def test_past_the_limits_tasks_wait_in_order_and_other_installations_still_start() -> None:
    live = [task(1, issue_number=1, state=TaskState.RUNNING)]
    queued = [task(2, issue_number=2), task(3, issue_number=3, installation_id=7),
              task(4, issue_number=4)]
    decisions = decide(queued, live, Limits(total=3, per_installation=1))
    assert decisions == [Wait(queued[0]), Start(queued[1]), Wait(queued[2])]
    assert decide(queued, live, Limits(total=1, per_installation=5)) == [Wait(t) for t in queued]


def test_a_busy_issue_is_answered_even_when_every_slot_is_taken() -> None:
    live = task(1, issue_number=1)
    stranger = task(2, issue_number=1, requester="ann")
    assert decide([stranger], [live], Limits(total=1, per_installation=1)) == [
        Refuse(stranger, holder=live)]


tasks = st.lists(
    st.builds(lambda i, issue, inst, who: task(i, issue_number=issue, installation_id=inst,
                                               requester=who),
              st.integers(1, 10_000), st.integers(1, 4), st.sampled_from([1, 2, None]),
              st.sampled_from(["wes", "ann"])),
    max_size=12, unique_by=lambda t: t.id)


@given(queued=tasks, live=tasks, total=st.integers(0, 6), per=st.integers(0, 4))
def test_never_two_live_tasks_on_an_issue_nor_past_a_limit(
    queued: list[Task], live: list[Task], total: int, per: int
) -> None:
    live = [t for t in live if t.id not in {q.id for q in queued}]
    live = list({(t.repo, t.issue_number): t for t in live}.values())  # live tasks: one each
    decisions = decide(queued, live, Limits(total=total, per_installation=per))
    assert [d.task.id for d in decisions] == sorted(t.id for t in queued)
    started = [d.task for d in decisions if isinstance(d, Start)]
    holding = [*live, *started]
    assert len({(t.repo, t.issue_number) for t in holding}) == len(holding)
    if started:
        assert len(holding) <= total
        counts = Counter(t.installation_id or 0 for t in holding)
        for t in started:
            assert counts[t.installation_id or 0] <= per
