"""The publisher against a real store, the real job runner and the fake GitHub on loopback.

What is asserted is what a user would see: the commit, its tree and parent, the branch, the pull
requests, the comments on the issue, and the task's state and reason.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import random
import re
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from porter.changesets import Changeset, FileChange
from porter.github import GitHubApp
from porter.jobs import Backoff, JobRunner
from porter.models import Task
from porter.neutralize import close_fences
from porter.publisher import PUBLISH, Publisher, PublishJob, publish_job
from porter.pull_text import MAX_FILE_LINES, MAX_SUMMARY, branch_name, link_marker, pull_body
from porter.states import STATUS_JOB, TaskState
from porter.store import Store
from porter.webhooks import Trigger, decode_delivery
from tests.conftest import comment_payload
from tests.fakes import github_git as gitcmd
from tests.fakes.clock import Clock
from tests.fakes.github import FakeGitHub
from tests.fakes.world import in_process

REPO = "octo/hello"
PUBLIC_URL = "https://porter.example.com"
ISSUE_TITLE = "Add a --verbose flag to the CLI"
BINARY = bytes(range(256)) + b"\x00\xff\x00"
BASE_FILES: dict[str, Any] = {
    "README.md": b"hello\n",
    "src/cli.py": b"def main():\n    pass\n",
    "src/util.py": b"X = 1\n",
    "old.txt": b"obsolete\n",
    "bin/keep.sh": (b"#!/bin/sh\ntrue\n", 0o755),
}
PULLS = rf"/repos/{REPO}/pulls"
S = TaskState


@dataclass
class Env:
    fake: FakeGitHub
    db: Path
    clock: Clock
    store: Store
    issue: int
    base_sha: str
    comment_ids: Iterator[int] = field(default_factory=lambda: iter(range(9000, 10_000)))
    renders_at_publishing: dict[int, int] = field(default_factory=dict)
    loopback: bool = False  # GitHub on its own thread (see `served`), else answered in-process

    async def renders(self, task_id: int) -> int:
        """Status comment renders asked for since the task reached publishing: every state
        change re-arms the status job in its own transaction."""
        [status] = await self.store.jobs(kind=STATUS_JOB, task_id=task_id)
        return status.generation - self.renders_at_publishing[task_id]

    def runner(self, *, allow_workflows: bool = False, lease: float = 300.0,
               backoff: Backoff | None = None) -> JobRunner:
        github = (GitHubApp(app_id=self.fake.app_id, private_key=self.fake.private_key_pem,
                            api_url=self.fake.api_url, clock=self.clock)
                  if self.loopback else in_process(self.fake, clock=self.clock))
        publisher = Publisher(store=self.store, github=github, public_url=PUBLIC_URL,
                              allow_workflows=allow_workflows, clock=self.clock)
        return JobRunner(self.store, publisher.kinds(), clock=self.clock,
                         rng=random.Random(7), backoff=backoff or Backoff(), lease=lease)

    async def task(self, *, number: int | None = None, target_branch: str | None = None,
                   base_sha: str | None = None, base_ref: str = "main") -> Task:
        """A task from a real webhook payload, re-pointed at the fake, brought to `publishing`."""
        number = number or self.issue
        payload = comment_payload(body="@porter add a --verbose flag",
                                  name="created.with-installation", id=next(self.comment_ids))
        payload["issue"] = self.fake.json_issue(REPO, number)
        payload["repository"] = self.fake.json_repository(REPO)
        payload["installation"]["id"] = 42
        trigger = decode_delivery("issue_comment", f"delivery-{payload['comment']['id']}",
                                  payload, handle="porter", agents={"claude"})
        assert isinstance(trigger, Trigger)
        if target_branch is not None:
            trigger.context["target_branch"] = target_branch  # as the dispatcher records it
        [result] = await self.store.record_triggers([trigger], default_agent="claude")
        assert result.task_id is not None
        await self.store.update_task(result.task_id, base_ref=base_ref,
                                     base_sha=base_sha or self.base_sha)
        for expected, target in ((S.QUEUED, S.STARTING), (S.STARTING, S.RUNNING),
                                 (S.RUNNING, S.PUBLISHING)):
            assert await self.store.transition(result.task_id, expected=expected, target=target)
        task = await self.store.get_task(result.task_id)
        assert task is not None
        [status] = await self.store.jobs(kind=STATUS_JOB, task_id=task.id)
        self.renders_at_publishing[task.id] = status.generation
        return task

    async def publish(self, task: Task, files: list[dict[str, Any]], *,
                      base_sha: str | None = None, summary: str = "Added the flag.",
                      cost: float | None = 0.381, seconds: float | None = 252,
                      message: str = "Add --verbose") -> None:
        changeset = {"base_sha": base_sha or task.base_sha, "message": message, "files": files}
        payload = PublishJob(changeset=changeset, summary=summary, cost_usd=cost,
                             duration_s=seconds, attempt=task.attempt)
        await self.store.enqueue(*publish_job(task, payload), task_id=task.id,
                                 installation_id=task.installation_id)

    async def get(self, task_id: int) -> Task:
        task = await self.store.get_task(task_id)
        assert task is not None
        return task

    def head(self, branch: str | None) -> str:
        """Where a branch points in the fake (it must exist)."""
        sha = self.fake.ref_sha(REPO, f"heads/{branch}")
        assert sha is not None, f"no branch {branch}"
        return sha

    def link_comments(self, task: Task, number: int | None = None) -> list[str]:
        return [c.body for c in self.fake.comments(REPO, number or self.issue)
                if link_marker(task.id) in c.body]

    def writes(self) -> list[str]:
        """Every write Porter made to the repository's git data, pulls and comments."""
        return [f"{c.method} {c.path}" for c in self.fake.calls
                if c.method != "GET" and "/access_tokens" not in c.path]


@pytest.fixture
async def env(tmp_path: Path, pem: str) -> AsyncIterator[Env]:
    fake = FakeGitHub(tmp_path / "github", app_id="1", private_key_pem=pem)
    fake.add_installation(42, account="octo")
    fake.add_repo(REPO, files=BASE_FILES, installation_id=42)
    issue = fake.add_issue(REPO, title=ISSUE_TITLE, body="It should print more.")
    base_sha = fake.ref_sha(REPO, "heads/main")
    assert base_sha is not None
    clock = Clock()
    db = tmp_path / "porter.db"
    store = await Store.open(db, clock=clock)
    environment = Env(fake, db, clock, store, issue.number, base_sha)
    try:
        yield environment
    finally:
        await environment.store.close()


@pytest.fixture
async def served(env: Env) -> AsyncIterator[Env]:
    """For a test whose GitHub must go on with a request after Porter's side gave up on it (a
    process that died mid-request): the fake served on loopback by its own thread. In-process,
    cancelling the caller would cancel GitHub's handling of the request too."""
    async with env.fake.serve():
        env.loopback = True
        yield env


def write(path: str, content: bytes, mode: str = "100644") -> dict[str, Any]:
    return {"path": path, "mode": mode, "content_b64": base64.b64encode(content).decode()}


def delete(path: str) -> dict[str, Any]:
    return {"path": path, "deleted": True}


FIVE_CHANGES = [
    write("src/cli.py", b"def main(verbose=False):\n    print(verbose)\n"),
    write("src/util.py", b"X = 2\n"),
    write("bin/run.sh", b"#!/bin/sh\necho run\n", "100755"),
    write("assets/logo.bin", BINARY),
    delete("old.txt"),
]


async def drain(env: Env, runner: JobRunner, *, passes: int = 10, kind: str = PUBLISH) -> None:
    """Run passes, moving the clock to each retry's time, until no job of `kind` is left
    pending."""
    for _ in range(passes):
        await runner.run_due()
        pending = [j for j in await env.store.jobs(kind=kind) if j.state == "pending"]
        if not pending:
            return
        env.clock.now = max(env.clock.now, min(j.run_after for j in pending))
    raise AssertionError("jobs still pending")


async def until(condition: Callable[[], bool]) -> None:
    """Wait for the fake's server thread (see `served`) to reach a point.

    The fake records calls from its own thread and offers no event to await, so this polls a
    condition (never a fixed sleep) under a deadline.
    """
    async with asyncio.timeout(5):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


# -- pure parts -------------------------------------------------------------------------------


@pytest.mark.parametrize(("title", "expected"), [
    ("Add a --verbose flag to the CLI!", "porter/7-add-a-verbose-flag-to-the-cli"),
    ("Café ünïcode — naïve résumé", "porter/7-cafe-unicode-naive-resume"),
    ("", "porter/7"),
    ("🚀🚀 ✨", "porter/7"),
    ("--- Fix: the `thing` ---", "porter/7-fix-the-thing"),
    ("Make the importer handle very long file names gracefully please", (
        "porter/7-make-the-importer-handle-very-long-file")),
    ("a" * 39 + " b", "porter/7-" + "a" * 39),  # cut at 40 would end on a dash
])
def test_branch_name(title: str, expected: str) -> None:
    name = branch_name(7, title)
    assert name == expected
    slug = name.removeprefix("porter/7").removeprefix("-")
    assert len(slug) <= 40 and set(slug) <= set("abcdefghijklmnopqrstuvwxyz0123456789-")
    assert not slug.startswith("-") and not slug.endswith("-")


ISSUE_TASK = Task(id=3, repo=REPO, installation_id=42, issue_number=5, is_pull_request=False,
                  comment_kind="issue", comment_id=1, comment_url="", requester="octocat",
                  requester_id=1, agent="claude", model=None, instruction="do it",
                  state=S.PUBLISHING, stage=None, reason=None, attempt=1, created_at=0.0,
                  updated_at=0.0, delivery_id="d")


def test_pull_body_bounds_summary_and_file_list() -> None:
    files = tuple(FileChange(f"f{i}.txt", "100644", b"x") for i in range(150))
    body = pull_body(ISSUE_TASK, Changeset("a" * 40, "m", (*files, FileChange("gone", None, None))),
                     summary="s" * (MAX_SUMMARY * 2), cost_usd=None, duration_s=None,
                     public_url=PUBLIC_URL)
    assert "s" * MAX_SUMMARY in body and "s" * (MAX_SUMMARY + 1) not in body
    assert "summary cut short" in body
    assert body.count("\n+ f") == MAX_FILE_LINES and "… and 51 more" in body
    assert "− gone" not in body and "(150 written, 1 deleted)" in body
    assert f"[#3]({PUBLIC_URL}/tasks/3)" in body and body.endswith("Closes #5")
    assert "$" not in body  # no cost known, none invented
    on_a_pull = pull_body(dataclasses.replace(ISSUE_TASK, is_pull_request=True),
                          Changeset("a" * 40, "m", files[:1]), summary="", cost_usd=1.5,
                          duration_s=61, public_url=PUBLIC_URL)
    assert "Closes" not in on_a_pull and "$1.50" in on_a_pull and "1m 01s" in on_a_pull


def test_a_fence_the_summary_leaves_open_does_not_swallow_the_rest() -> None:
    path = FileChange("@octocat fixes #9", "100644", b"x")
    body = pull_body(ISSUE_TASK, Changeset("a" * 40, "m", (path,)),
                     summary="Done.\n```python\nprint(1)", cost_usd=None, duration_s=None,
                     public_url=PUBLIC_URL)
    before, closes, _ = body.rpartition("\n\nCloses #5")
    assert closes and close_fences(before) == before  # no fence is open where Porter's line is
    assert "@octocat" not in body and "fixes #9" not in body


# -- publishing -------------------------------------------------------------------------------


async def test_publishes_a_verified_commit_a_pull_request_and_one_link_comment(env: Env) -> None:
    task = await env.task()
    await env.publish(task, FIVE_CHANGES)
    await env.runner().run_due()

    done = await env.get(task.id)
    assert done.state is S.SUCCEEDED, done.reason
    assert done.branch == f"porter/{task.id}-add-a-verbose-flag-to-the-cli"
    commit = env.head(done.branch)
    assert commit == done.commit_sha
    assert env.fake.commit_parents(REPO, commit) == [env.base_sha]
    assert env.fake.commit_verified(commit)
    assert env.fake.commit_info(REPO, commit).message.strip() == "Add --verbose"
    assert env.fake.read_tree(REPO, commit) == {
        "README.md": ("100644", b"hello\n"),
        "src/cli.py": ("100644", b"def main(verbose=False):\n    print(verbose)\n"),
        "src/util.py": ("100644", b"X = 2\n"),
        "bin/keep.sh": ("100755", b"#!/bin/sh\ntrue\n"),
        "bin/run.sh": ("100755", b"#!/bin/sh\necho run\n"),
        "assets/logo.bin": ("100644", BINARY),
    }
    assert env.fake.ref_sha(REPO, "heads/main") == env.base_sha  # the base is untouched

    [pull] = env.fake.pulls(REPO)
    assert (pull.head_ref, pull.base_ref, pull.head_sha) == (done.branch, "main", commit)
    assert pull.title == ISSUE_TITLE
    body = pull.issue.body or ""
    assert body.startswith("Added the flag.")
    assert f"Closes #{env.issue}" in body and f"{PUBLIC_URL}/tasks/{task.id}" in body
    assert "$0.38" in body and "4m 12s" in body
    assert "+ bin/run.sh" in body and "+ assets/logo.bin" in body and "− old.txt" in body
    assert (done.pr_number, done.files_changed) == (pull.number, 5)
    assert done.pr_url == f"{env.fake.web_url}/{REPO}/pull/{pull.number}"
    assert done.summary == "Added the flag." and done.cost_usd == pytest.approx(0.381)
    assert done.finished_at == env.clock.now

    [link] = env.link_comments(task)
    assert f"🚀 Opened #{pull.number} — {ISSUE_TITLE}" in link and done.pr_url in link
    assert await env.renders(task.id) == 1
    [job] = await env.store.jobs(kind=PUBLISH)
    assert job.state == "done" and job.result == {"pr_url": done.pr_url, "commit": commit}


async def test_a_file_can_become_a_directory(env: Env) -> None:
    task = await env.task()
    await env.publish(task, [write("old.txt/notes.md", b"notes\n"), delete("old.txt")])
    await env.runner().run_due()
    done = await env.get(task.id)
    assert done.state is S.SUCCEEDED and done.commit_sha is not None
    tree = env.fake.read_tree(REPO, done.commit_sha)
    assert tree["old.txt/notes.md"] == ("100644", b"notes\n") and "old.txt" not in tree


async def test_server_errors_on_pr_creation_are_retried_into_exactly_one_pr(env: Env) -> None:
    env.fake.fail("POST", PULLS, 500, times=2)
    task = await env.task()
    await env.publish(task, FIVE_CHANGES)
    await drain(env, env.runner())

    done = await env.get(task.id)
    assert done.state is S.SUCCEEDED
    assert [c.status for c in env.fake.calls_to("POST", PULLS)] == [500, 500, 201]
    assert len(env.fake.pulls(REPO)) == 1
    # The commit was checkpointed: retries did not make more commits or move the branch.
    assert len(env.fake.calls_to("POST", rf"/repos/{REPO}/git/commits")) == 1
    head = env.head(done.branch)
    assert head == done.commit_sha and env.fake.commit_parents(REPO, head) == [env.base_sha]
    assert len(env.link_comments(task)) == 1
    assert await env.renders(task.id) == 1


async def test_retry_after_on_pr_creation_is_obeyed_on_the_injected_clock(env: Env) -> None:
    env.fake.fail("POST", PULLS, 429, headers={"Retry-After": "3"})
    task = await env.task()
    await env.publish(task, FIVE_CHANGES)
    runner = env.runner()
    start = env.clock.now
    await runner.run_due()
    assert len(env.fake.calls_to("POST", PULLS)) == 1

    env.clock.now = start + 2.9
    assert await runner.run_due() == 0
    assert len(env.fake.calls_to("POST", PULLS)) == 1
    assert (await env.get(task.id)).state is S.PUBLISHING

    env.clock.now = start + 3.0
    assert await runner.run_due() == 3  # the publish, its link comment, its check run
    assert [c.status for c in env.fake.calls_to("POST", PULLS)] == [429, 201]
    assert (await env.get(task.id)).state is S.SUCCEEDED
    assert len(env.fake.pulls(REPO)) == 1


@pytest.mark.parametrize("pr_landed", [True, False], ids=["answer-lost", "never-created"])
async def test_a_crash_during_pr_creation_is_resumed_by_a_new_process(
    served: Env, pr_landed: bool
) -> None:
    env = served
    if not pr_landed:
        env.fake.fail("POST", PULLS, 500)
    env.fake.delay("POST", PULLS, 0.3)
    task = await env.task()
    await env.publish(task, FIVE_CHANGES)

    first = asyncio.create_task(env.runner(lease=5).run_due())
    await until(lambda: bool(env.fake.calls_to("POST", PULLS)))
    first.cancel()  # the process dies while GitHub is still working on the request
    with pytest.raises(asyncio.CancelledError):
        await first
    await until(lambda: env.fake.calls_to("POST", PULLS)[0].status != 0)
    assert len(env.fake.pulls(REPO)) == (1 if pr_landed else 0)
    await env.store.close()

    env.store = await Store.open(env.db, clock=env.clock)
    env.clock.now += 6  # past the dead runner's lease
    assert await env.runner(lease=5).run_due() == 3  # the publish, its link comment, its check run

    done = await env.get(task.id)
    assert done.state is S.SUCCEEDED, done.reason
    [pull] = env.fake.pulls(REPO)
    assert done.pr_number == pull.number
    assert len(env.fake.calls_to("POST", PULLS)) == (1 if pr_landed else 2)
    assert len(env.fake.calls_to("POST", rf"/repos/{REPO}/git/commits")) == 1
    head = env.head(done.branch)
    assert head == done.commit_sha == pull.head_sha
    assert env.fake.commit_parents(REPO, head) == [env.base_sha]
    assert len(env.link_comments(task)) == 1
    assert await env.renders(task.id) == 1


async def test_a_pr_that_lands_after_the_restart_looked_for_it_is_reused(served: Env) -> None:
    env = served
    # The dead process's request is still in flight when the new one looks for the PR, and lands
    # before the new one's own request does: GitHub answers that one 422 "already exists".
    # The first request lands 2 s after it was sent, long after the new process looked (at
    # once); the new one's own lands 6 s after, long after the first: the order is not luck.
    env.fake.delay("POST", PULLS, 2.0)
    env.fake.delay("POST", PULLS, 6.0)
    task = await env.task()
    await env.publish(task, FIVE_CHANGES)
    first = asyncio.create_task(env.runner(lease=5).run_due())
    await until(lambda: bool(env.fake.calls_to("POST", PULLS)))
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    env.clock.now += 6
    assert await env.runner(lease=5).run_due() == 3  # the publish, its link comment, its check run

    done = await env.get(task.id)
    assert done.state is S.SUCCEEDED, done.reason
    assert [c.status for c in env.fake.calls_to("POST", PULLS)] == [201, 422]
    [pull] = env.fake.pulls(REPO)
    assert done.pr_number == pull.number and len(env.link_comments(task)) == 1


async def test_a_lost_link_comment_checkpoint_does_not_post_it_twice(served: Env) -> None:
    env = served
    task = await env.task()
    await env.publish(task, FIVE_CHANGES)
    # The comment is created, but its answer is lost: the job sees an error and retries.
    env.fake.delay("POST", rf"/repos/{REPO}/issues/\d+/comments", 0.2)
    runner = env.runner()
    first = asyncio.create_task(runner.run_due())
    await until(lambda: bool(env.fake.calls_to("POST", rf"/repos/{REPO}/issues/\d+/comments")))
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await until(lambda: len(env.link_comments(task)) == 1)
    env.clock.now += 301
    await runner.run_due()
    assert (await env.get(task.id)).state is S.SUCCEEDED
    assert len(env.link_comments(task)) == 1


# -- refusals ---------------------------------------------------------------------------------


GOOD = write("README.md", b"changed\n")


@pytest.mark.parametrize(("files", "reason"), [
    ([GOOD, write("../outside.txt", b"x")], "climbs out of the repository"),
    ([GOOD, write("/etc/passwd", b"x")], "is absolute"),
    ([GOOD, write(".git/config", b"[core]\n")], "inside .git"),
    ([GOOD, write(".github/workflows/ci.yml", b"on: push\n")], "GitHub Actions workflow"),
    ([write("src/cli.py", BASE_FILES["src/cli.py"])], "nothing to commit"),
], ids=["dotdot", "absolute", "dotgit", "workflow", "unchanged"])
async def test_refused_changesets_fail_the_task_and_write_nothing(
    env: Env, files: list[dict[str, Any]], reason: str
) -> None:
    task = await env.task()
    await env.publish(task, files)
    await env.runner().run_due()

    failed = await env.get(task.id)
    assert (failed.state, failed.stage) == (S.FAILED, "publish")
    assert failed.reason is not None and reason in failed.reason and "\n" not in failed.reason
    assert not [w for w in env.writes() if "/git/commits" in w or "/git/refs" in w
                or "/pulls" in w or "/comments" in w]
    assert env.fake.pulls(REPO) == []
    assert await env.renders(task.id) == 1
    [job] = await env.store.jobs(kind=PUBLISH)
    assert job.state == "done"  # a refusal is final, not retried


async def test_a_changeset_on_another_base_is_refused(env: Env) -> None:
    task = await env.task()
    await env.publish(task, FIVE_CHANGES, base_sha="b" * 40)
    await env.runner().run_due()
    failed = await env.get(task.id)
    assert failed.state is S.FAILED and failed.reason is not None
    assert "based on commit bbbbbbbbbbbb" in failed.reason
    assert env.writes() == []


async def test_workflow_changes_are_published_when_the_operator_allows_them(env: Env) -> None:
    task = await env.task()
    await env.publish(task, [write(".github/workflows/ci.yml", b"on: push\n")])
    await env.runner(allow_workflows=True).run_due()
    done = await env.get(task.id)
    assert done.state is S.SUCCEEDED, done.reason
    assert done.commit_sha is not None
    tree = env.fake.read_tree(REPO, done.commit_sha)
    assert tree[".github/workflows/ci.yml"] == ("100644", b"on: push\n")
    assert len(env.fake.pulls(REPO)) == 1


async def test_giving_up_fails_the_task_with_the_reason(env: Env) -> None:
    env.fake.fail("POST", PULLS, 502, times=2)
    task = await env.task()
    await env.publish(task, FIVE_CHANGES)
    await drain(env, env.runner(backoff=Backoff(max_attempts=2)))
    failed = await env.get(task.id)
    assert (failed.state, failed.stage) == (S.FAILED, "publish")
    assert failed.reason == "GitHub answered 502: Server Error (gave up after 2 attempts)"
    assert await env.renders(task.id) == 1
    assert env.fake.pulls(REPO) == [] and env.link_comments(task) == []


# -- on a pull request's own branch -----------------------------------------------------------


async def test_on_a_same_repo_pull_request_the_commit_fast_forwards_its_branch(env: Env) -> None:
    head = env.fake.commit_files(REPO, "feature", {"src/cli.py": b"# feature\n"},
                                 message="Feature work", author="octocat")
    pull = env.fake.add_pull(REPO, head_ref="feature", title="Feature work")
    task = await env.task(number=pull.number, target_branch="feature", base_sha=head,
                          base_ref="feature")
    assert task.is_pull_request
    await env.publish(task, [write("src/cli.py", b"# feature, verbose\n")])
    await env.runner().run_due()

    done = await env.get(task.id)
    assert done.state is S.SUCCEEDED, done.reason
    commit = env.head("feature")
    assert commit == done.commit_sha and env.fake.commit_parents(REPO, commit) == [head]
    assert env.fake.read_tree(REPO, commit)["src/cli.py"] == ("100644", b"# feature, verbose\n")
    assert [p.number for p in env.fake.pulls(REPO)] == [pull.number]  # no new PR
    assert env.fake.calls_to("POST", PULLS) == []
    assert [c.json["force"] for c in env.fake.calls_to("PATCH", r".*/git/refs/heads/feature")] \
        == [False]
    assert (done.branch, done.pr_number) == ("feature", pull.number)
    assert done.pr_url == f"{env.fake.web_url}/{REPO}/pull/{pull.number}"
    assert env.link_comments(task, pull.number) == []
    assert await env.renders(task.id) == 1


@pytest.mark.parametrize("how", ["pushed-before", "pushed-during", "reset-backwards"])
async def test_a_pull_request_branch_that_moved_is_never_force_pushed(env: Env, how: str) -> None:
    head = env.fake.commit_files(REPO, "feature", {"src/cli.py": b"# feature\n"})
    pull = env.fake.add_pull(REPO, head_ref="feature")
    task = await env.task(number=pull.number, target_branch="feature", base_sha=head,
                          base_ref="feature")
    theirs = head
    if how == "pushed-before":
        theirs = env.fake.commit_files(REPO, "feature", {"NOTES.md": b"mine\n"},
                                       author="octocat")
    elif how == "reset-backwards":
        # The owner dropped their last commit; a fast-forward from there would bring it back.
        theirs = env.base_sha
        gitcmd.git(env.fake.repo(REPO).path, "update-ref", "refs/heads/feature", theirs)
    else:  # between Porter reading the branch and writing it: GitHub refuses the fast-forward
        env.fake.fail("PATCH", r".*/git/refs/heads/feature", 422,
                      body={"message": "Update is not a fast forward"})
    await env.publish(task, [write("src/cli.py", b"# feature, verbose\n")])
    await env.runner().run_due()

    failed = await env.get(task.id)
    assert (failed.state, failed.stage) == (S.FAILED, "publish")
    assert failed.reason == ("the branch `feature` moved while the agent worked; Porter never "
                             "force-pushes — `@porter retry` to start from its new head")
    assert env.fake.ref_sha(REPO, "heads/feature") == theirs
    assert all(c.json["force"] is False
               for c in env.fake.calls_to("PATCH", r".*/git/refs/heads/feature"))
    assert await env.renders(task.id) == 1


# -- retries ----------------------------------------------------------------------------------


async def test_a_retried_task_reuses_its_open_pull_request(env: Env) -> None:
    task = await env.task()
    # Attempt 1 pushes its branch, then gives up on opening the PR; the PR lands after all
    # (a request whose answer was lost), open on Porter's branch.
    env.fake.fail("POST", PULLS, 403, body={"message": "Resource not accessible by integration"})
    await env.publish(task, FIVE_CHANGES)
    await env.runner().run_due()
    first = await env.get(task.id)
    assert first.state is S.FAILED and first.reason is not None and "403" in first.reason
    assert first.branch is not None and first.commit_sha is not None  # still shown
    first_commit = first.commit_sha
    pull = env.fake.add_pull(REPO, head_ref=first.branch, title="fix the thing")

    assert await env.store.retry(task.id) == 2
    # Attempt 2's base, resolved again at its launch: main has not moved.
    await env.store.update_task(task.id, base_ref="main", base_sha=env.base_sha)
    for expected, target in ((S.QUEUED, S.STARTING), (S.STARTING, S.RUNNING),
                             (S.RUNNING, S.PUBLISHING)):
        assert await env.store.transition(task.id, expected=expected, target=target)
    again = await env.get(task.id)
    await env.publish(again, [write("src/cli.py", b"def main(verbose=True):\n    pass\n")])
    await env.runner().run_due()

    done = await env.get(task.id)
    assert done.state is S.SUCCEEDED, done.reason
    assert [p.number for p in env.fake.pulls(REPO)] == [pull.number]
    # Refused on attempt 1; attempt 2 found the open PR on its branch and asked for none.
    assert [c.status for c in env.fake.calls_to("POST", PULLS)] == [403]
    assert done.pr_number == pull.number and done.branch == first.branch
    head = env.head(done.branch)
    assert head == done.commit_sha != first_commit
    assert env.fake.commit_parents(REPO, head) == [env.base_sha]  # replaced, not stacked
    assert env.fake.read_tree(REPO, head)["src/cli.py"][1].startswith(b"def main(verbose=True)")
    assert len(env.link_comments(task)) == 1
    # failed, queued again, starting, running, publishing, succeeded
    assert await env.renders(task.id) == 6


@pytest.mark.parametrize("enqueued_by", ["publish_job", "key-only"])
async def test_a_stale_attempts_job_changes_nothing(env: Env, enqueued_by: str) -> None:
    task = await env.task()
    if enqueued_by == "publish_job":
        await env.publish(task, FIVE_CHANGES)
    else:  # as the run service enqueues it, with the attempt only in the key
        await env.store.enqueue(PUBLISH, f"publish:{task.id}:{task.attempt}", {
            "changeset": {"base_sha": env.base_sha, "files": FIVE_CHANGES}, "summary": "s",
            "cost_usd": None, "duration_s": None}, task_id=task.id, installation_id=42)
    assert await env.store.transition(task.id, expected=S.PUBLISHING, target=S.FAILED,
                                      stage="publish", reason="stopped")
    assert await env.store.retry(task.id) == 2
    for expected, target in ((S.QUEUED, S.STARTING), (S.STARTING, S.RUNNING),
                             (S.RUNNING, S.PUBLISHING)):
        assert await env.store.transition(task.id, expected=expected, target=target)
    await env.runner().run_due()  # attempt 1's job: the task is publishing attempt 2
    assert (await env.get(task.id)).state is S.PUBLISHING
    # failed, queued, starting, running, publishing: this test's own moves; none from the job
    assert env.writes() == [] and await env.renders(task.id) == 5


# What GitHub would act on, read generously (tests/unit/test_neutralize.py has every form).
MENTION = re.compile(r"(?<![A-Za-z0-9])@[A-Za-z0-9]")
CLOSING = re.compile(r"(?i)(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)[^A-Za-z0-9]{0,20}"
                     r"(?:#\d+|gh-\d|[\w.-]+/[\w.-]+#\d|https?://)")
TRICKS = ("cc @octocat `@admins. **Closes** #5, Closes GH-6, closes: #7, Resolves owner/repo#8, "
          "fixes https://github.com/octo/hello/issues/9 <!-- everything after this is hidden")


async def test_the_agents_words_cannot_mention_close_or_hide_anything(env: Env) -> None:
    issue = env.fake.add_issue(REPO, title=f"Tidy up {TRICKS}", body="", user="outsider")
    task = await env.task(number=issue.number)
    await env.publish(task, [write("fixes #3 @octocat.txt", b"x\n"), *FIVE_CHANGES],
                      summary=f"Done. {TRICKS}", message=f"Fixes #2 for @octocat\n\n{TRICKS}")
    await env.runner().run_due()

    done = await env.get(task.id)
    assert done.state is S.SUCCEEDED, done.reason
    assert done.commit_sha is not None
    message = env.fake.commit_info(REPO, done.commit_sha).message
    [pull] = env.fake.pulls(REPO)
    body = pull.issue.body or ""
    [link] = env.link_comments(task, issue.number)
    assert MENTION.search(message) is None
    for text in (pull.title, body, link):
        assert MENTION.search(text) is None, text
        assert "<!--" not in text.replace(link_marker(task.id), ""), text
    assert CLOSING.search(message) is None and CLOSING.search(pull.title) is None
    # Porter's own line is the only one that closes anything.
    assert [m.group() for m in CLOSING.finditer(body)] == [f"Closes #{issue.number}"]
    assert message.replace("\u2060", "").startswith("Fixes #2 for @octocat")
    assert f"Done. {TRICKS}" in body.replace("\u2060", "")
    assert link.endswith(link_marker(task.id))


@pytest.mark.parametrize("planter", ["mallory", "dependabot[bot]"])
async def test_a_planted_link_marker_does_not_stop_the_link_comment(env: Env,
                                                                   planter: str) -> None:
    task = await env.task()
    # The PR's number and URL are easy to guess, and so is the task's marker.
    guessed = f"{env.fake.web_url}/{REPO}/pull/{env.issue + 1}"
    bait = env.fake.add_issue_comment(REPO, env.issue, f"{guessed}\n{link_marker(task.id)}",
                                      user=planter)
    await env.publish(task, FIVE_CHANGES)
    await env.runner().run_due()

    done = await env.get(task.id)
    assert done.state is S.SUCCEEDED and done.pr_url == guessed
    mine = [c for c in env.fake.comments(REPO, env.issue) if c.user == env.fake.bot_login]
    [link] = [c.body for c in mine if link_marker(task.id) in c.body]
    assert link.startswith(f"🚀 Opened #{done.pr_number}")
    assert env.fake.comments(REPO, env.issue)[0].body == bait.body
