"""The pure parts of publishing under a `.porter.yml`: which paths a repository protects, how a
run's time is shared with its setup and verify commands, and what the pull request and the
Check Run say of the verification, with untrusted text kept inert."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from porter.models import Task
from porter.protected_paths import protected, violations
from porter.pull_text import branch_name, verification_section
from porter.run_phases import DEFAULT_VERIFY_TIMEOUT_S, MIN_AGENT_S, phases
from porter.states import TaskState
from porter.task_check import Facts, conclusion, final_output
from porter.verification import CommandResult, FailingTest, JunitSummary, Verification


@pytest.mark.parametrize(("path", "pattern", "matches"), [
    (".github/workflows/ci.yml", ".github/**", True),
    (".github", ".github/**", True),
    ("docs/.github/x", ".github/**", False),
    ("migrations/0001.sql", "migrations/", True),
    ("migrations/0001.sql", "migrations", True),
    ("migrations2/a.sql", "migrations/", False),
    ("Cargo.lock", "*.lock", True),
    ("sub/Cargo.lock", "*.lock", False),
    ("sub/deep/Cargo.lock", "**/*.lock", True),
    ("Cargo.lock", "**/*.lock", True),
    ("docs/a.md", "docs/*.md", True),
    ("docs/x/a.md", "docs/*.md", False),
    ("x/z", "x/**/z", True),
    ("x/a/b/z", "x/**/z", True),
    ("secret.key", "secret.ke?", True),
    ("secret.keys", "secret.ke?", False),
    ("a+b(c)/d", "a+b(c)", True),  # regex characters are literal
    ("Docs/a.md", "docs/", False),  # case matters, as in git
])
def test_a_pattern_protects_what_docs_repo_config_says(path: str, pattern: str,
                                                       matches: bool) -> None:
    assert (protected(path, [pattern]) == pattern) is matches


def test_violations_name_each_path_with_the_pattern_that_protects_it() -> None:
    assert violations(["src/a.py", "bin/run.sh", ".github/ci.yml"], ["bin/", ".github/**"]) == \
        [("bin/run.sh", "bin/"), (".github/ci.yml", ".github/**")]
    assert violations(["anything"], []) == []


@given(st.lists(st.text("ab/*?.", min_size=1, max_size=12), max_size=4),
       st.text("ab/.", min_size=1, max_size=20))
def test_matching_never_fails_on_any_pattern_or_path(patterns: list[str], path: str) -> None:
    found = protected(path, patterns)
    assert found is None or found in patterns


def test_the_branch_prefix_replaces_porters() -> None:
    assert branch_name(7, "Fix the typo", prefix="bots") == "bots/7-fix-the-typo"
    assert branch_name(7, "") == "porter/7"


@pytest.mark.parametrize(("config", "remaining", "agent", "per_phase"), [
    (None, 3600, 3540, None),
    ({"verify": ["make test"]}, 3600, 3600 - 60 - DEFAULT_VERIFY_TIMEOUT_S,
     DEFAULT_VERIFY_TIMEOUT_S),
    ({"setup": ["make"], "verify": ["make test"], "verify_timeout_s": 300}, 3600,
     3600 - 60 - 600, 300),
    ({"verify": ["make test"], "verify_timeout_s": 3000}, 3600, 3600 - 60 - 1200, 1200),
    ({"verify": ["make test"]}, 30, MIN_AGENT_S, 10),
])
def test_each_phase_has_its_time_set_aside_and_the_agent_the_rest(
        config: dict[str, object] | None, remaining: int, agent: int,
        per_phase: int | None) -> None:
    fields = phases(config, remaining_s=remaining)
    assert fields["agent_timeout_s"] == agent
    assert fields.get("verify_timeout_s") == per_phase


def result(phase: str = "verify", exit_code: int | None = 0, **changes: object) -> CommandResult:
    fields: dict[str, object] = {"phase": phase, "command": "pytest -q", "exit_code": exit_code,
                                 "duration_s": 2.0, "timed_out": False, "output_tail": ""}
    fields.update(changes)
    return CommandResult(**fields)  # type: ignore[arg-type]


def test_conclusions_follow_the_verify_commands() -> None:
    assert conclusion(None) == "neutral"
    assert conclusion(Verification((result(), result()))) == "success"
    assert conclusion(Verification((result(), result(exit_code=1)))) == "failure"
    assert conclusion(Verification((result("setup", 2), result(exit_code=None)))) == "failure"
    assert conclusion(Verification((result(exit_code=None, timed_out=True),))) == "failure"


def test_a_stored_verification_reads_back_as_it_was() -> None:
    junit = JunitSummary(3, 1, 0, 0, 1.5, (FailingTest("t_add", "boom"),))
    original = Verification((result(), result(exit_code=1, junit=junit)))
    assert Verification.load(original.dump()) == original


def task() -> Task:
    return Task(id=9, delivery_id="d", repo="octo/hello", installation_id=42, issue_number=3,
                is_pull_request=False, comment_kind="issue", comment_id=1, comment_url="",
                requester="alice", requester_id=1, agent="claude", model=None,
                instruction="fix", state=TaskState.PUBLISHING, stage=None, reason=None,
                attempt=1, created_at=0.0, updated_at=0.0)


def test_the_check_runs_page_keeps_the_agents_text_inert() -> None:
    hostile = "Done. @octo/admins please merge\n```\nunclosed fence <img src=x onerror=alert(1)>"
    tail = "boom @everyone"
    output = final_output(task(), Verification((result(exit_code=1, output_tail=tail),)),
                          Facts(summary=hostile, cost_usd=1.234, cost_source="porter",
                                duration_s=61, pr_url="https://github.test/octo/hello/pull/4"),
                          task_url="https://porter.test/tasks/9")
    for text in (output.summary, output.text or ""):
        assert not re.search(r"(?<![\w`])@(octo|everyone)\b", text)  # no live mention
        assert "<img" not in text
        assert text.count("```") % 2 == 0  # every fence is closed
    assert "[#9](https://porter.test/tasks/9)" in output.summary
    assert "Cost: $1.23" in output.summary and "Time: 1m 01s" in output.summary
    assert output.title == "Verification ❌ failed: 0 of 1 verify commands passed"


def test_the_pull_requests_section_says_the_outcome_first() -> None:
    section = verification_section(Verification((result(), result(exit_code=3))))
    assert section.startswith("**Verification: ❌ failed**")
    assert "❌ exit 3" in section
