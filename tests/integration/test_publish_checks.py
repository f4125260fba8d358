"""Publishing under a repository's `.porter.yml` and reporting the task as a Check Run: the
branch prefix, draft pull requests, protected paths, the verification table in the body, and
the check run's life on Porter's commit, through the publisher's job against the fake GitHub."""

from __future__ import annotations

from typing import Any

from porter.check_runs import CHECKS_HELP
from porter.publisher import PublishJob, publish_job
from porter.states import TaskState
from porter.task_check import CHECK_JOB
from porter.verification import CommandResult, Verification
from tests.integration.test_publisher import (
    FIVE_CHANGES,
    PUBLIC_URL,
    REPO,
    Env,
    drain,
    env,
)

__all__ = ["env"]  # the fixture, shared with test_publisher
NO_CHECKS = {"contents": "write", "issues": "write", "metadata": "read", "pull_requests": "write"}


def verify(exit_code: int | None, *, tail: str = "", timed_out: bool = False) -> Verification:
    return Verification((CommandResult(phase="verify", command="python -m pytest -q",
                                       exit_code=exit_code, duration_s=4.2, timed_out=timed_out,
                                       output_tail=tail),))


async def configured(env: Env, **config: Any) -> Any:
    """A publishing task whose dispatch recorded this `.porter.yml` (as Launcher.start does)."""
    task = await env.task()
    await env.store.update_context(task.id, repo_config=config)
    return await env.get(task.id)


async def publish(env: Env, task: Any, *, verification: Verification | None = None,
                  files: list[dict[str, Any]] | None = None) -> None:
    payload = PublishJob(changeset={"base_sha": task.base_sha, "message": "Add --verbose",
                                    "files": files or FIVE_CHANGES},
                         summary="Added the flag.", cost_usd=0.381, duration_s=252,
                         attempt=task.attempt,
                         verification=verification.dump() if verification else None)
    await env.store.enqueue(*publish_job(task, payload), task_id=task.id,
                            installation_id=task.installation_id)
    runner = env.runner()
    await drain(env, runner)
    await drain(env, runner, kind=CHECK_JOB)  # then the check run's job, and any retry of it


async def test_a_failing_verification_marks_the_body_and_fails_the_check_on_porters_commit(
        env: Env) -> None:
    task = await configured(env, verify=["python -m pytest -q"])
    await publish(env, task, verification=verify(1, tail="E   assert -1 == 5\n1 failed"))

    done = await env.get(task.id)
    assert done.state is TaskState.SUCCEEDED
    [pull] = env.fake.pulls(REPO)
    assert "**Verification: ❌ failed**" in pull.body
    assert "| verify | `python -m pytest -q` | ❌ exit 1 |" in pull.body
    assert "assert -1 == 5" in pull.body
    [check] = env.fake.check_runs(REPO)
    assert check.head_sha == done.commit_sha == env.head(done.branch)
    assert check.history == [("queued", None), ("in_progress", None), ("completed", "failure")]
    assert check.external_id == str(task.id)
    assert check.details_url == f"{PUBLIC_URL}/tasks/{task.id}"
    assert check.output["title"] == "Verification ❌ failed: 0 of 1 verify commands passed"
    assert f"/tasks/{task.id}" in check.output["summary"]
    assert "Cost: $0.38" in check.output["summary"]
    assert f"/pull/{pull.number}" in check.output["summary"]
    assert "Added the flag." in check.output["summary"]
    assert "assert -1 == 5" in check.output["text"]


async def test_a_passing_verification_succeeds_and_none_configured_is_neutral(env: Env) -> None:
    passing = await configured(env, verify=["python -m pytest -q"])
    await publish(env, passing, verification=verify(0))
    plain = await env.task()
    await publish(env, plain)

    runs = {run.external_id: run for run in env.fake.check_runs(REPO)}
    assert runs[str(passing.id)].conclusion == "success"
    assert runs[str(plain.id)].conclusion == "neutral"
    assert runs[str(plain.id)].output["title"] == "No verification configured"
    bodies = {p.head_ref: p.body for p in env.fake.pulls(REPO)}
    assert "**Verification: ✅ passed**" in bodies[(await env.get(passing.id)).branch]
    assert "Verification" not in bodies[(await env.get(plain.id)).branch]


async def test_the_branch_prefix_and_draft_come_from_the_repository(env: Env) -> None:
    task = await configured(env, branch_prefix="bots", draft=True)
    await publish(env, task)

    done = await env.get(task.id)
    assert done.branch is not None and done.branch.startswith(f"bots/{task.id}-")
    [pull] = env.fake.pulls(REPO)
    assert (pull.head_ref, pull.draft) == (done.branch, True)


async def test_a_change_to_a_protected_path_is_refused_before_anything_is_written(
        env: Env) -> None:
    task = await configured(env, protected_paths=["bin/", "docs/**"])
    await publish(env, task)

    done = await env.get(task.id)
    assert done.state is TaskState.FAILED
    assert done.reason is not None and "`bin/run.sh` (`bin/`)" in done.reason
    assert "protects" in done.reason
    assert env.writes() == [] and env.fake.check_runs(REPO) == []
    # The same change without the protected file publishes.
    allowed = await configured(env, protected_paths=["bin/", "docs/**"])
    await publish(env, allowed, files=[f for f in FIVE_CHANGES if f["path"] != "bin/run.sh"])
    assert (await env.get(allowed.id)).state is TaskState.SUCCEEDED


async def test_without_the_checks_permission_the_pull_request_still_opens(env: Env) -> None:
    env.fake.add_installation(42, account="octo", permissions=NO_CHECKS)
    task = await env.task()
    await publish(env, task, verification=verify(0))

    done = await env.get(task.id)
    assert done.state is TaskState.SUCCEEDED and len(env.fake.pulls(REPO)) == 1
    assert env.fake.check_runs(REPO) == []
    [skipped] = [e for e in await env.store.task_events(task.id) if e.kind == "check.skipped"]
    assert CHECKS_HELP in skipped.message


async def test_a_retried_publish_updates_its_one_check_run(env: Env) -> None:
    env.fake.fail("POST", rf"/repos/{REPO}/pulls", 502, times=2)
    task = await env.task()
    await publish(env, task, verification=verify(0))

    [check] = env.fake.check_runs(REPO)
    assert check.history[-1] == ("completed", "success")
    assert len(env.fake.pulls(REPO)) == 1


async def test_a_check_run_whose_answer_was_lost_is_found_not_made_twice(env: Env) -> None:
    task = await env.task()
    # The create reaches GitHub but its answer is lost (GitHub answered 502 after making it).
    env.fake.fail("POST", rf"/repos/{REPO}/check-runs", 502, lost=True)
    await publish(env, task, verification=verify(0))

    [check] = env.fake.check_runs(REPO)
    assert check.history[-1] == ("completed", "success")


async def test_a_publish_that_fails_leaves_no_check_run(env: Env) -> None:
    env.fake.fail("POST", rf"/repos/{REPO}/pulls", 422, times=5,
                  body={"message": "Validation Failed"})
    task = await env.task()
    await publish(env, task, verification=verify(0))

    assert (await env.get(task.id)).state is TaskState.FAILED
    assert env.fake.check_runs(REPO) == []  # no pull request shows that commit


async def test_the_pull_request_is_opened_before_github_hears_of_the_check(env: Env) -> None:
    task = await env.task()
    await publish(env, task, verification=verify(0))

    paths = [(c.method, c.path) for c in env.fake.calls if c.method != "GET"]
    pull = paths.index(("POST", f"/repos/{REPO}/pulls"))
    check = paths.index(("POST", f"/repos/{REPO}/check-runs"))
    assert pull < check
