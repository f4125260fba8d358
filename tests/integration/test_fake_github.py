"""The fake GitHub, driven through githubkit and real git exactly as Porter drives GitHub."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from githubkit import AppAuthStrategy, GitHub, TokenAuthStrategy
from githubkit.cache import MemCacheStrategy
from githubkit.exception import (
    PrimaryRateLimitExceeded,
    RequestFailed,
    RequestTimeout,
    SecondaryRateLimitExceeded,
)

from tests.fakes.github import FakeGitHub
from tests.fakes.github_auth import generate_private_key_pem

BINARY = bytes(range(256)) + b"\x00\xff\x00"
README = b"hi\n"
RUN_SH = b"#!/bin/sh\necho run\n"



@pytest.fixture
def fake(tmp_path: Path, pem: str) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(tmp_path / "github", app_id="1", private_key_pem=pem)
    fake.add_installation(42, account="octo")
    fake.add_repo(
        "octo/hello",
        files={"README.md": README, "bin/run.sh": (RUN_SH, 0o755), "docs/guide.md": b"guide\n"},
        installation_id=42,
    )
    fake.add_repo("octo/other", files={"x.txt": b"x\n"}, installation_id=42)
    fake.add_installation(7, account="stranger")
    fake.add_repo("stranger/elsewhere", files={"y.txt": b"y\n"}, installation_id=7)
    with fake.serve():
        yield fake


def app_client(fake: FakeGitHub, pem: str | None = None, app_id: str | None = None) -> GitHub[Any]:
    # githubkit caches JWTs and installation tokens process-wide by issuer unless given its own
    # cache; a token from an earlier test's fake would otherwise be replayed here.
    return GitHub(
        AppAuthStrategy(app_id or fake.app_id, pem or fake.private_key_pem),
        base_url=fake.api_url,
        http_cache=False,
        auto_retry=False,
        cache_strategy=MemCacheStrategy(),
    )


def installation_client(fake: FakeGitHub) -> GitHub[Any]:
    app_gh = app_client(fake)
    return app_gh.with_auth(app_gh.auth.as_installation(42))


def token_client(fake: FakeGitHub, token: str, timeout: httpx.Timeout | None = None) -> GitHub[Any]:
    return GitHub(
        TokenAuthStrategy(token),
        base_url=fake.api_url,
        http_cache=False,
        auto_retry=False,
        timeout=timeout,
        cache_strategy=MemCacheStrategy(),
    )


# --- auth ----------------------------------------------------------------------------------


async def test_app_jwt_must_be_signed_by_the_app_key_and_current(fake: FakeGitHub) -> None:
    app_gh = app_client(fake)
    ok = await app_gh.rest.apps.async_get_repo_installation("octo", "hello")
    assert ok.parsed_data.id == 42
    assert ok.parsed_data.app_slug == "porter"

    with pytest.raises(RequestFailed) as wrong_key:
        stranger = app_client(fake, pem=generate_private_key_pem())
        await stranger.rest.apps.async_get_authenticated()
    assert wrong_key.value.response.status_code == 401

    with pytest.raises(RequestFailed) as wrong_issuer:
        impostor = app_client(fake, app_id="999")
        await impostor.rest.apps.async_get_authenticated()
    assert wrong_issuer.value.response.status_code == 401

    # githubkit signs with the real clock; moving the fake's clock past exp makes the JWT stale.
    fake.now = lambda: time.time() + 601
    with pytest.raises(RequestFailed) as expired:
        await app_gh.rest.apps.async_create_installation_access_token(42)
    assert expired.value.response.status_code == 401
    assert "Expiration time" in expired.value.response.parsed_data.message

    statuses = [(c.auth, c.status) for c in fake.calls]
    assert statuses == [("jwt", 200), ("jwt", 401), ("jwt", 401), ("jwt", 401)]


async def test_installation_token_scope_is_enforced(fake: FakeGitHub) -> None:
    app_gh = app_client(fake)
    minted = await app_gh.rest.apps.async_create_installation_access_token(
        42, repositories=["hello"], permissions={"contents": "read"}
    )
    assert minted.status_code == 201
    data = minted.parsed_data
    assert data.token.startswith("ghs_")
    assert data.repository_selection == "selected"
    assert [r.full_name for r in data.repositories or []] == ["octo/hello"]
    assert data.permissions and data.permissions.contents == "read"
    assert time.strptime(data.expires_at, "%Y-%m-%dT%H:%M:%SZ")
    recorded = fake.minted_tokens[-1]
    assert recorded.repositories == frozenset({"octo/hello"})
    assert recorded.permissions == {"contents": "read", "metadata": "read"}
    assert recorded.expires_at - recorded.created_at == 3600  # GitHub's one-hour tokens

    gh = token_client(fake, data.token)
    assert (await gh.rest.repos.async_get("octo", "hello")).parsed_data.full_name == "octo/hello"
    for owner, repo in (("octo", "other"), ("stranger", "elsewhere")):
        with pytest.raises(RequestFailed) as hidden:
            await gh.rest.repos.async_get(owner, repo)
        assert hidden.value.response.status_code == 404

    fake.add_issue("octo/hello", 1, "Bug", "body", user="alice")
    with pytest.raises(RequestFailed) as read_only:
        await gh.rest.issues.async_create_comment("octo", "hello", 1, body="hello")
    assert read_only.value.response.status_code == 403
    assert read_only.value.response.parsed_data.message == "Resource not accessible by integration"

    with pytest.raises(RequestFailed) as not_granted:
        await app_gh.rest.apps.async_create_installation_access_token(
            42, repositories=["elsewhere"]
        )
    assert not_granted.value.response.status_code == 422

    fake.now = lambda: time.time() + 3601
    with pytest.raises(RequestFailed) as expired:
        await gh.rest.repos.async_get("octo", "hello")
    assert expired.value.response.status_code == 401


async def test_bad_credentials_unknown_routes_and_headers(fake: FakeGitHub) -> None:
    token = fake.mint_token(42).token
    async with httpx.AsyncClient(base_url=fake.api_url) as http:
        missing = await http.get("/repos/octo/hello")
        bogus = await http.get("/repos/octo/hello", headers={"Authorization": "token ghs_nope"})
        bearer = await http.get("/repos/octo/hello", headers={"Authorization": f"Bearer {token}"})
        unknown = await http.get("/no/such/endpoint", headers={"Authorization": f"token {token}"})
    assert (missing.status_code, bogus.status_code, bearer.status_code) == (401, 401, 200)
    assert bogus.json()["message"] == "Bad credentials"
    assert "documentation_url" in bogus.json()
    assert unknown.status_code == 404
    assert unknown.json()["message"] == "Not Found"
    assert bearer.headers["content-type"] == "application/json; charset=utf-8"
    assert bearer.headers["x-ratelimit-limit"] == "5000"
    assert int(bearer.headers["x-ratelimit-remaining"]) < 5000
    assert bearer.headers["x-ratelimit-resource"] == "core"
    assert fake.calls[-1].auth == "installation"
    assert fake.calls[-2].token_id == fake.minted_tokens[-1].id


async def test_serve_as_async_context_stops_cleanly(tmp_path: Path, pem: str) -> None:
    fake = FakeGitHub(tmp_path, private_key_pem=pem)
    async with fake.serve() as urls:
        assert urls.api_url == f"{urls.web_url}/api/v3"
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{urls.api_url}/users/porter[bot]")).status_code == 200
    port = int(urls.web_url.rsplit(":", 1)[1])
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


# --- repository, users, permissions --------------------------------------------------------


async def test_permission_endpoint_folds_roles(fake: FakeGitHub) -> None:
    for login, role in [
        ("ann", "admin"),
        ("max", "maintain"),
        ("wes", "write"),
        ("tri", "triage"),
        ("rea", "read"),
    ]:
        fake.set_permission("octo/hello", login, role)
    fake.add_user("nobody")
    gh = installation_client(fake)
    seen = {}
    for login in ("ann", "max", "wes", "tri", "rea", "nobody", "octo"):
        data = (
            await gh.rest.repos.async_get_collaborator_permission_level("octo", "hello", login)
        ).parsed_data
        assert data.user is not None and data.user.login == login
        seen[login] = (data.permission, data.role_name)
    assert seen == {
        "ann": ("admin", "admin"),
        "max": ("write", "maintain"),
        "wes": ("write", "write"),
        "tri": ("read", "triage"),
        "rea": ("read", "read"),
        "nobody": ("none", "none"),
        "octo": ("admin", "admin"),
    }
    bot = (await gh.rest.users.async_get_by_username("porter[bot]")).parsed_data
    assert (bot.login, bot.type) == ("porter[bot]", "Bot")
    repo = (await gh.rest.repos.async_get("octo", "hello")).parsed_data
    assert (repo.default_branch, repo.owner.login, repo.clone_url) == (
        "main",
        "octo",
        f"{fake.web_url}/octo/hello.git",
    )


# --- issues, comments, reactions -----------------------------------------------------------


async def test_issue_comments_create_edit_and_list(fake: FakeGitHub) -> None:
    fake.add_issue("octo/hello", 5, "Add a flag", "please", user="alice")
    first = fake.add_issue_comment("octo/hello", 5, "@porter add --verbose", user="alice")
    gh = installation_client(fake)

    created = await gh.rest.issues.async_create_comment("octo", "hello", 5, body="⏳ on it")
    assert created.status_code == 201
    comment = created.parsed_data
    assert comment.user is not None and comment.user.login == "porter[bot]"
    via = comment.performed_via_github_app
    assert via and via.slug == "porter"

    edited = await gh.rest.issues.async_update_comment("octo", "hello", comment.id, body="✅ done")
    assert edited.parsed_data.body == "✅ done"
    fetched = await gh.rest.issues.async_get_comment("octo", "hello", comment.id)
    assert fetched.parsed_data.body == "✅ done"
    listed = await gh.rest.issues.async_list_comments("octo", "hello", 5)
    listed_comments: list[Any] = listed.parsed_data
    assert [c.id for c in listed_comments] == [first.id, comment.id]
    issue = (await gh.rest.issues.async_get("octo", "hello", 5)).parsed_data
    assert (issue.title, issue.comments) == ("Add a flag", 2)
    assert not issue.pull_request
    assert [c.body for c in fake.comments("octo/hello", 5)] == ["@porter add --verbose", "✅ done"]

    with pytest.raises(RequestFailed) as missing:
        await gh.rest.issues.async_create_comment("octo", "hello", 99, body="x")
    assert missing.value.response.status_code == 404


async def test_reactions_are_created_once(fake: FakeGitHub) -> None:
    fake.add_issue("octo/hello", 1, "Bug", "", user="alice")
    comment = fake.add_issue_comment("octo/hello", 1, "@porter fix it", user="alice")
    gh = installation_client(fake)

    first = await gh.rest.reactions.async_create_for_issue_comment(
        "octo", "hello", comment.id, content="eyes"
    )
    again = await gh.rest.reactions.async_create_for_issue_comment(
        "octo", "hello", comment.id, content="eyes"
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.parsed_data.id == again.parsed_data.id
    assert first.parsed_data.user is not None
    assert (first.parsed_data.user.login, first.parsed_data.user.type) == ("porter[bot]", "Bot")
    rocket = await gh.rest.reactions.async_create_for_issue_comment(
        "octo", "hello", comment.id, content="rocket"
    )
    assert rocket.status_code == 201
    assert [r.content for r in fake.reactions(comment.id)] == ["eyes", "rocket"]
    rollup = (await gh.rest.issues.async_get_comment("octo", "hello", comment.id)).parsed_data
    assert rollup.reactions and rollup.reactions.eyes == 1

    # githubkit refuses an unknown content client-side, so send it raw.
    token = fake.mint_token(42).token
    async with httpx.AsyncClient(base_url=fake.api_url) as http:
        bad = await http.post(
            f"/repos/octo/hello/issues/comments/{comment.id}/reactions",
            json={"content": "thumbsup"},
            headers={"Authorization": f"token {token}"},
        )
    assert bad.status_code == 422


async def test_review_comment_reply_and_reaction(fake: FakeGitHub) -> None:
    sha = fake.commit_files("octo/hello", "feature", {"README.md": b"hello\n"})
    pull = fake.add_pull("octo/hello", head_ref="feature", head_sha=sha, user="alice")
    parent = fake.add_review_comment(
        "octo/hello", pull.number, "@porter reword", user="alice", path="README.md", line=1
    )
    gh = installation_client(fake)

    reaction = await gh.rest.reactions.async_create_for_pull_request_review_comment(
        "octo", "hello", parent.id, content="eyes"
    )
    assert reaction.status_code == 201
    reply = await gh.rest.pulls.async_create_reply_for_review_comment(
        "octo", "hello", pull.number, parent.id, body="on it"
    )
    assert reply.status_code == 201
    assert reply.parsed_data.in_reply_to_id == parent.id
    assert reply.parsed_data.path == "README.md"
    got = (await gh.rest.pulls.async_get_review_comment("octo", "hello", parent.id)).parsed_data
    assert got.reactions and got.reactions.eyes == 1
    assert [r.content for r in fake.reactions(parent.id, subject="review_comment")] == ["eyes"]


# --- Git Data API --------------------------------------------------------------------------


def git_out(repo: Path, *args: str) -> bytes:
    return subprocess.run(
        ["git", f"--git-dir={repo}", *args], check=True, capture_output=True
    ).stdout


async def test_git_data_flow_writes_a_real_commit(fake: FakeGitHub) -> None:
    gh = installation_client(fake)
    base = (await gh.rest.git.async_get_ref("octo", "hello", "heads/main")).parsed_data
    base_sha = base.object_.sha
    base_commit = (await gh.rest.git.async_get_commit("octo", "hello", base_sha)).parsed_data

    readme = await gh.rest.git.async_create_blob(
        "octo", "hello", content="hello world\n", encoding="utf-8"
    )
    binary = await gh.rest.git.async_create_blob(
        "octo", "hello", content=base64.b64encode(BINARY).decode(), encoding="base64"
    )
    assert readme.status_code == binary.status_code == 201
    tree = await gh.rest.git.async_create_tree(
        "octo",
        "hello",
        base_tree=base_commit.tree.sha,
        tree=[
            {"path": "README.md", "mode": "100644", "type": "blob", "sha": readme.parsed_data.sha},
            {
                "path": "assets/logo.bin",
                "mode": "100644",
                "type": "blob",
                "sha": binary.parsed_data.sha,
            },
            {"path": "src/pkg/tool.sh", "mode": "100755", "type": "blob", "content": "#!/bin/sh\n"},
            {"path": "latest", "mode": "120000", "type": "blob", "content": "README.md"},
            {"path": "bin/run.sh", "mode": "100755", "type": "blob", "sha": None},
        ],
    )
    assert tree.status_code == 201
    assert {e.path for e in tree.parsed_data.tree} == {
        "README.md",
        "assets",
        "docs",
        "latest",
        "src",
    }  # bin/ went with its only file

    commit = await gh.rest.git.async_create_commit(
        "octo",
        "hello",
        message="Add things\n\nBody.",
        tree=tree.parsed_data.sha,
        parents=[base_sha],
    )
    assert commit.status_code == 201
    made = commit.parsed_data
    assert [p.sha for p in made.parents] == [base_sha]
    assert made.verification.verified is True
    assert made.author.name == "porter[bot]"
    assert made.message == "Add things\n\nBody."

    ref = await gh.rest.git.async_create_ref(
        "octo", "hello", ref="refs/heads/porter/task-1", sha=made.sha
    )
    assert ref.status_code == 201
    assert fake.ref_sha("octo/hello", "heads/porter/task-1") == made.sha
    matching = await gh.rest.git.async_list_matching_refs("octo", "hello", "heads/porter/")
    assert [r.ref for r in matching.parsed_data] == ["refs/heads/porter/task-1"]

    # Verify with git itself, independently of the fake's helpers.
    bare = fake.root / "octo" / "hello.git"
    assert git_out(bare, "rev-parse", f"{made.sha}^@").decode().split() == [base_sha]
    listing = git_out(bare, "ls-tree", "-r", made.sha).decode()
    modes = {line.split("\t")[1]: line.split()[0] for line in listing.splitlines()}
    assert modes == {
        "README.md": "100644",
        "assets/logo.bin": "100644",
        "docs/guide.md": "100644",
        "latest": "120000",
        "src/pkg/tool.sh": "100755",
    }
    assert git_out(bare, "cat-file", "blob", f"{made.sha}:assets/logo.bin") == BINARY
    assert fake.read_tree("octo/hello", made.sha) == {
        "README.md": ("100644", b"hello world\n"),
        "assets/logo.bin": ("100644", BINARY),
        "docs/guide.md": ("100644", b"guide\n"),
        "latest": ("120000", b"README.md"),
        "src/pkg/tool.sh": ("100755", b"#!/bin/sh\n"),
    }
    assert fake.commit_parents("octo/hello", made.sha) == [base_sha]

    blob = (await gh.rest.git.async_get_blob("octo", "hello", binary.parsed_data.sha)).parsed_data
    assert base64.b64decode(blob.content) == BINARY
    full = (await gh.rest.git.async_get_tree("octo", "hello", made.sha, recursive="1")).parsed_data
    assert "src/pkg/tool.sh" in {e.path for e in full.tree}
    with pytest.raises(RequestFailed) as missing:
        await gh.rest.git.async_get_ref("octo", "hello", "heads/nope")
    assert missing.value.response.status_code == 404


async def test_ref_updates_must_fast_forward_unless_forced(fake: FakeGitHub) -> None:
    gh = installation_client(fake)
    base = fake.ref_sha("octo/hello", "heads/main")
    assert base is not None
    tree = fake.commit_info("octo/hello", base).tree
    ahead = (
        await gh.rest.git.async_create_commit(
            "octo", "hello", message="a", tree=tree, parents=[base]
        )
    ).parsed_data.sha
    sibling = (
        await gh.rest.git.async_create_commit(
            "octo", "hello", message="b", tree=tree, parents=[base]
        )
    ).parsed_data.sha

    moved = await gh.rest.git.async_update_ref(
        "octo", "hello", "heads/main", sha=ahead, force=False
    )
    assert moved.parsed_data.object_.sha == ahead
    with pytest.raises(RequestFailed) as refused:
        await gh.rest.git.async_update_ref("octo", "hello", "heads/main", sha=sibling, force=False)
    assert refused.value.response.status_code == 422
    assert refused.value.response.parsed_data.message == "Update is not a fast forward"
    assert fake.ref_sha("octo/hello", "heads/main") == ahead
    forced = await gh.rest.git.async_update_ref(
        "octo", "hello", "heads/main", sha=sibling, force=True
    )
    assert forced.parsed_data.object_.sha == sibling

    with pytest.raises(RequestFailed) as exists:
        await gh.rest.git.async_create_ref("octo", "hello", ref="refs/heads/main", sha=base)
    assert exists.value.response.parsed_data.message == "Reference already exists"


# --- pull requests -------------------------------------------------------------------------


async def test_pull_requests_create_duplicate_and_list_by_head(fake: FakeGitHub) -> None:
    fake.add_issue("octo/hello", 1, "Add a flag", "", user="alice")
    head = fake.commit_files(
        "octo/hello", "porter/task-1", {"README.md": b"hi there\n", "new.txt": b"new\n"}
    )
    fake.commit_files("octo/hello", "someone-else", {"other.txt": b"o\n"})
    other = fake.add_pull("octo/hello", head_ref="someone-else", user="bob")
    gh = installation_client(fake)

    created = await gh.rest.pulls.async_create(
        "octo", "hello", title="Add a flag", head="porter/task-1", base="main", body="Closes #1"
    )
    assert created.status_code == 201
    pr = created.parsed_data
    assert pr.number == 3  # shared numbering: issue #1, PR #2 (bob's), then this one
    assert (pr.head.ref, pr.head.sha, pr.base.ref) == ("porter/task-1", head, "main")
    assert (pr.commits, pr.changed_files, pr.additions) == (1, 2, 2)
    assert pr.user is not None and pr.user.login == "porter[bot]"

    with pytest.raises(RequestFailed) as duplicate:
        await gh.rest.pulls.async_create(
            "octo", "hello", title="again", head="porter/task-1", base="main"
        )
    assert duplicate.value.response.status_code == 422
    assert "A pull request already exists for octo:porter/task-1." in (
        duplicate.value.response.text
    )
    with pytest.raises(RequestFailed) as no_head:
        await gh.rest.pulls.async_create("octo", "hello", title="x", head="missing", base="main")
    assert no_head.value.response.status_code == 422

    by_head = await gh.rest.pulls.async_list(
        "octo", "hello", head="octo:porter/task-1", state="open"
    )
    head_pulls: list[Any] = by_head.parsed_data
    assert [p.number for p in head_pulls] == [pr.number]
    # Like GitHub, a head filter without "owner:" is ignored.
    unqualified = await gh.rest.pulls.async_list("octo", "hello", head="porter/task-1")
    all_pulls: list[Any] = unqualified.parsed_data
    assert sorted(p.number for p in all_pulls) == [other.number, pr.number]
    closed = await gh.rest.pulls.async_list(
        "octo", "hello", head="octo:porter/task-1", state="closed"
    )
    assert closed.parsed_data == []

    fetched = (await gh.rest.pulls.async_get("octo", "hello", pr.number)).parsed_data
    assert fetched.body == "Closes #1"
    as_issue = (await gh.rest.issues.async_get("octo", "hello", pr.number)).parsed_data
    assert as_issue.pull_request is not None
    assert [(p.number, p.head_ref) for p in fake.pulls("octo/hello")] == [
        (2, "someone-else"),
        (3, "porter/task-1"),
    ]
    assert len(fake.calls_to("POST", "/repos/octo/hello/pulls")) == 3


# --- faults --------------------------------------------------------------------------------


async def test_injected_faults_are_consumed_in_order(fake: FakeGitHub) -> None:
    gh = installation_client(fake)
    fake.fail("GET", "/repos/octo/hello", 500, times=2)
    for _ in range(2):
        with pytest.raises(RequestFailed) as failed:
            await gh.rest.repos.async_get("octo", "hello")
        assert failed.value.response.status_code == 500
    assert (await gh.rest.repos.async_get("octo", "hello")).status_code == 200
    assert [c.status for c in fake.calls_to("GET", "/repos/octo/hello")] == [500, 500, 200]

    fake.rate_limit("GET", "/repos/octo/.*", status=429, retry_after=3)
    with pytest.raises(SecondaryRateLimitExceeded) as secondary:
        await gh.rest.repos.async_get("octo", "hello")
    assert secondary.value.retry_after.total_seconds() == 3
    fake.rate_limit("GET", "/repos/octo/.*")
    with pytest.raises(PrimaryRateLimitExceeded):
        await gh.rest.repos.async_get("octo", "hello")

    fake.delay("GET", "/repos/octo/hello", 0.5)
    impatient = token_client(fake, fake.mint_token(42).token, timeout=httpx.Timeout(0.1))
    with pytest.raises(RequestTimeout):
        await impatient.rest.repos.async_get("octo", "hello")


# --- git smart HTTP ------------------------------------------------------------------------


def run_git(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(cwd or Path.cwd()),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Agent",
        "GIT_AUTHOR_EMAIL": "agent@example.com",
        "GIT_COMMITTER_NAME": "Agent",
        "GIT_COMMITTER_EMAIL": "agent@example.com",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=30
    )


def basic(token: str) -> str:
    return "Authorization: Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()


def test_clone_with_header_token_and_read_only_push_is_refused(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    read = fake.mint_token(
        42,
        repositories=frozenset({"octo/hello"}),
        permissions={"contents": "read", "metadata": "read"},
    ).token
    url = f"{fake.web_url}/octo/hello.git"
    work = tmp_path / "work"

    cloned = run_git("-c", f"http.extraHeader={basic(read)}", "clone", url, str(work))
    assert cloned.returncode == 0, cloned.stderr
    assert (work / "README.md").read_bytes() == README
    assert os.access(work / "bin" / "run.sh", os.X_OK)
    assert read not in (work / ".git" / "config").read_text()
    assert {c.auth for c in fake.calls_to("*", "/octo/hello.git/.*")} == {"installation"}

    (work / "README.md").write_bytes(b"changed\n")
    assert run_git("commit", "-qam", "change", cwd=work).returncode == 0
    pushed = run_git(
        "-c", f"http.extraHeader={basic(read)}", "push", "origin", "HEAD:main", cwd=work
    )
    assert pushed.returncode != 0
    assert "403" in pushed.stderr
    assert fake.read_tree("octo/hello", fake.ref_sha("octo/hello", "heads/main") or "")[
        "README.md"
    ] == ("100644", README)

    write = fake.mint_token(42).token
    bearer = f"http.extraHeader=Authorization: Bearer {write}"
    pushed = run_git("-c", bearer, "push", "origin", "HEAD:refs/heads/agent", cwd=work)
    assert pushed.returncode == 0, pushed.stderr
    head = run_git("rev-parse", "HEAD", cwd=work).stdout.strip()
    assert fake.ref_sha("octo/hello", "heads/agent") == head


def test_clone_requires_a_token_for_that_repository(fake: FakeGitHub, tmp_path: Path) -> None:
    url = f"{fake.web_url}/octo/hello.git"
    anonymous = run_git("clone", url, str(tmp_path / "anon"))
    assert anonymous.returncode != 0
    assert fake.calls[-1].status == 401

    elsewhere = fake.mint_token(42, repositories=frozenset({"octo/other"})).token
    refused = run_git(
        "-c", f"http.extraHeader={basic(elsewhere)}", "clone", url, str(tmp_path / "other")
    )
    assert refused.returncode != 0
    assert fake.calls[-1].status == 404

    # Credentials in the URL: git retries with Basic auth after the 401 challenge.
    token = fake.mint_token(42).token
    with_url = run_git(
        "clone", url.replace("http://", f"http://x-access-token:{token}@"), str(tmp_path / "url")
    )
    assert with_url.returncode == 0, with_url.stderr
    assert [c.status for c in fake.calls_to("GET", "/octo/hello.git/info/refs")][-2:] == [401, 200]


def test_fetch_with_gzipped_request_body(fake: FakeGitHub, tmp_path: Path) -> None:
    token = fake.mint_token(42).token
    header = f"http.extraHeader={basic(token)}"
    work = tmp_path / "work"
    cloned = run_git("-c", header, "clone", f"{fake.web_url}/octo/hello.git", str(work))
    assert cloned.returncode == 0
    # git gzips protocol-v0 fetch requests over 1 KiB; 300 local commits make enough "have"
    # lines in every negotiation round, however git splits them.
    for i in range(300):
        made = run_git("commit", "-q", "--allow-empty", "-m", f"local {i}", cwd=work)
        assert made.returncode == 0
    upstream = fake.commit_files("octo/hello", "main", {"later.txt": b"later\n"})
    fetched = run_git("-c", header, "-c", "protocol.version=0", "fetch", "origin", cwd=work)
    assert fetched.returncode == 0, fetched.stderr
    assert run_git("rev-parse", "origin/main", cwd=work).stdout.strip() == upstream
    posts = fake.calls_to("POST", "/octo/hello.git/git-upload-pack")
    assert any(c.headers.get("content-encoding") == "gzip" for c in posts)


async def test_stateless_format_tokens_work_for_rest_and_git(tmp_path: Path, pem: str) -> None:
    fake = FakeGitHub(tmp_path / "github", private_key_pem=pem, stateless_tokens=True)
    fake.add_repo("octo/hello", files={"README.md": README}, installation_id=42)
    with fake.serve():
        app_gh = app_client(fake)
        minted = await app_gh.rest.apps.async_create_installation_access_token(42)
        token = minted.parsed_data.token
        assert token.startswith("ghs_1_") and len(token) > 500 and "." in token
        gh = token_client(fake, token)
        assert (await gh.rest.repos.async_get("octo", "hello")).status_code == 200
        url = f"{fake.web_url}/octo/hello.git"
        cloned = run_git(
            "-c", f"http.extraHeader={basic(token)}", "clone", url, str(tmp_path / "w")
        )
        assert cloned.returncode == 0, cloned.stderr
