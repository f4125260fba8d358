"""The status comment, rendered from a task alone: every state, durations, cost, reasons."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from porter.models import Task
from porter.states import TaskState
from porter.status import duration, marker, render_status

S = TaskState
URL = "https://porter.example.com"
T0 = 1_700_000_000.0
LINK = f"{URL}/tasks/182"
JOINER = "\u2060"  # what breaks a mention or keyword without changing how the text reads

BASE = Task(
    id=182, repo="octo/hello", installation_id=42, issue_number=9, is_pull_request=False,
    comment_kind="issue", comment_id=5001, comment_url="https://github.com/octo/hello/issues/9#c",
    requester="wes", requester_id=7, agent="claude", model=None,
    instruction="add a --verbose flag to the CLI", state=S.QUEUED, stage=None, reason=None,
    attempt=1, created_at=T0, updated_at=T0, delivery_id="d-1",
    context={"title": "Add a --verbose flag"},
)


def task(**changes: Any) -> Task:
    return dataclasses.replace(BASE, **changes)


def render(t: Task, *, now: float = T0, mention: str = "porter") -> str:
    return render_status(t, public_url=URL, mention=mention, now=now)


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (0.9, "0s"), (59.99, "59s"), (60, "1m 00s"), (61, "1m 01s"), (252, "4m 12s"),
    (3599, "59m 59s"), (3600, "1h 00m"), (3661, "1h 01m"), (36_000 + 59 * 60, "10h 59m"),
    (-5, "0s"),
])
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_every_body_ends_with_the_hidden_marker_of_its_task() -> None:
    assert marker(182) == "<!-- porter:status task=182 -->"
    assert marker(18) not in marker(182) and marker(1) not in marker(18)
    for state in S:
        body = render(task(state=state, reason="why"))
        assert body.endswith("\n" + marker(182)), state
        assert body.count("<!--") == 1


@pytest.mark.parametrize(("state", "progress"), [
    (S.QUEUED, "**queued …** · machine started · agent running · publishing · done"),
    (S.STARTING, "queued ✓ · **machine started …** · agent running · publishing · done"),
    (S.RUNNING, "queued ✓ · machine started ✓ · **agent running …** · publishing · done"),
    (S.PUBLISHING, "queued ✓ · machine started ✓ · agent running ✓ · **publishing …** · done"),
])
def test_a_live_task_shows_its_progress(state: TaskState, progress: str) -> None:
    body = render(task(state=state, started_at=T0 + 10), now=T0 + 52)
    assert body == (
        "⏳ Porter is on it — claude · task #182 · started 42s ago\n"
        f"{progress}\n"
        f"Follow along: {LINK} · `@porter cancel` to stop\n{marker(182)}"
    )


def test_a_queued_task_counts_from_when_it_was_asked_for() -> None:
    assert "started 1m 30s ago" in render(task(), now=T0 + 90)


def test_the_model_is_named_beside_the_agent() -> None:
    assert "— codex (o3) · task #182" in render(task(agent="codex", model="o3"))


def test_the_mention_is_the_operators_handle() -> None:
    assert "`@robot cancel` to stop" in render(task(state=S.RUNNING), mention="robot")
    assert "`@robot retry` to try again" in render(task(state=S.FAILED), mention="robot")


def test_success_with_a_pull_request() -> None:
    done = task(state=S.SUCCEEDED, started_at=T0 + 8, finished_at=T0 + 8 + 252, pr_number=57,
                files_changed=3, cost_usd=0.3791)
    assert render(done, now=T0 + 9999) == (
        "✅ Opened #57 — Add a --verbose flag (3 files) · claude · 4m 12s · $0.38\n\n"
        f"[Task #182]({LINK})\n{marker(182)}"
    )


def test_success_without_a_title_uses_the_instruction_on_one_line() -> None:
    done = task(state=S.SUCCEEDED, context={}, pr_number=57, instruction="fix it\nplease",
                finished_at=T0 + 5)
    assert render(done).startswith("✅ Opened #57 — fix it please · claude · 5s\n")


def test_success_pushing_to_the_pull_requests_branch() -> None:
    pushed = task(state=S.SUCCEEDED, context={"target_branch": "feature"}, branch="feature",
                  commit_sha="0123456789abcdef", files_changed=1, finished_at=T0 + 61)
    assert render(pushed).startswith(
        "✅ Pushed 0123456 to `feature` (1 file) · claude · 1m 01s\n")


def test_success_with_nothing_to_link() -> None:
    assert render(task(state=S.SUCCEEDED, finished_at=T0)).startswith("✅ Done · claude · 0s\n")


@pytest.mark.parametrize(("cost", "shown"), [
    (None, ""), (0.0, " · $0.00"), (0.004, " · $0.00"), (0.3791, " · $0.38"), (12, " · $12.00"),
    (1234.5, " · $1234.50"),
])
def test_cost_formatting(cost: float | None, shown: str) -> None:
    body = render(task(state=S.SUCCEEDED, cost_usd=cost, finished_at=T0 + 5))
    assert body.split("\n")[0] == f"✅ Done · claude · 5s{shown}"


@pytest.mark.parametrize(("stage", "where"), [
    ("dispatch", "starting the machine"),
    ("agent", "running the agent"),
    ("publish", "publishing the result"),
    (None, "working on it"),
    ("something-new", "working on it"),
])
def test_a_failure_says_where(stage: str | None, where: str) -> None:
    body = render(task(state=S.FAILED, stage=stage, reason="exit status 2"))
    assert body == (f"❌ Failed while {where}: exit status 2\n\n"
                    f"Log: {LINK} · `@porter retry` to try again.\n{marker(182)}")


def test_a_failure_without_a_reason_says_so() -> None:
    assert "❌ Failed while running the agent: no reason was recorded\n" in render(
        task(state=S.FAILED, stage="agent"))


def test_a_long_multiline_reason_is_one_bounded_line() -> None:
    reason = "Traceback (most recent call last):\n" + "  File x.py, line 1\n" * 100 + "Boom"
    body = render(task(state=S.FAILED, stage="agent", reason=reason))
    head = body.split("\n")[0]
    shown = head.removeprefix("❌ Failed while running the agent: ")
    assert shown.startswith("Traceback (most recent call last): File x.py, line 1 File")
    assert len(shown) == 300
    assert shown.endswith("…")
    assert body.count("\n") == 3  # head, blank, log line, marker


def test_timed_out() -> None:
    body = render(task(state=S.TIMED_OUT, started_at=T0, finished_at=T0 + 3600,
                       reason="no heartbeat for 120s"))
    assert body == (f"⌛ Timed out after 1h 00m: no heartbeat for 120s\n\n"
                    f"Log: {LINK} · `@porter retry` to try again.\n{marker(182)}")
    assert "it ran past its time limit" in render(task(state=S.TIMED_OUT))


def test_cancelled() -> None:
    body = render(task(state=S.CANCELLED, started_at=T0, finished_at=T0 + 75,
                       reason="cancelled by @wes"))
    assert body == (f"🛑 Cancelled after 1m 15s: cancelled by @{JOINER}wes. Nothing was "
                    f"published.\n\nLog: {LINK}\n{marker(182)}")


def test_rejected() -> None:
    body = render(task(state=S.REJECTED, reason="@rea needs write access\n(GitHub reports read)"))
    assert body == (f"🚫 Not started: @{JOINER}rea needs write access (GitHub reports read)\n"
                    f"{marker(182)}")
    assert render(task(state=S.REJECTED)).startswith("🚫 Not started: not allowed\n")


UNTRUSTED = "boom @octocat `@admins <!-- Fixes #2 <img src=x onerror=alert(1)> &#64;team"


@pytest.mark.parametrize("state", [S.FAILED, S.TIMED_OUT, S.CANCELLED, S.REJECTED])
def test_a_reason_cannot_mention_close_or_hide_the_rest(state: TaskState) -> None:
    """Reasons carry the agent's own error output and GitHub's or Fly's messages verbatim."""
    body = render(task(state=state, stage="agent", reason=UNTRUSTED))
    assert "@octocat" not in body and "`@admins" not in body and "Fixes #2" not in body
    assert "<img" not in body and "&#64;" not in body
    assert body.count("<!--") == 1 and body.endswith("\n" + marker(182))
    assert UNTRUSTED in body.replace(JOINER, "")


def test_a_title_or_branch_cannot_mention_close_or_hide_the_rest() -> None:
    title = task(state=S.SUCCEEDED, pr_number=57, context={"title": UNTRUSTED})
    branch = task(state=S.SUCCEEDED, context={"target_branch": "x`@octocat`<!--"},
                  branch="x`@octocat`<!--", commit_sha="0123456789abcdef")
    for body in (render(title), render(branch)):
        assert "@octocat" not in body and "Fixes #2" not in body and "<img" not in body
        assert body.count("<!--") == 1 and body.endswith("\n" + marker(182))
    assert render(branch).count("`") == 2


@pytest.mark.parametrize(("outcome", "said"), [
    ("passed", "verification ✅ passed"), ("failed", "verification ❌ failed"),
    ("error", "verification ⚠️ did not finish"), ("not_run", None), (None, None)])
def test_a_published_change_says_how_its_verification_went(outcome: str | None,
                                                          said: str | None) -> None:
    done = task(state=S.SUCCEEDED, pr_number=12, files_changed=1,
                context={"title": "Fix it", "verification": outcome})
    head = render(done).split("\n")[0]
    assert head.startswith("✅ Opened #12 — Fix it (1 file)")
    assert ("verification" in head) is (said is not None)
    if said:
        assert f"(1 file) · {said} · " in head


def test_every_problem_that_kept_a_task_from_starting_is_shown() -> None:
    problems = "; ".join(f"line {n}: timeout: \"{n} days\" is not a duration (use 30m, 2h or "
                         "seconds)" for n in range(1, 11))
    reason = f".porter.yml on the default branch is invalid: {problems}"
    body = render(task(state=S.FAILED, stage="dispatch", reason=reason))
    assert "line 1: timeout" in body and "line 10: timeout" in body
    assert "…" not in body.split("\n")[0]
