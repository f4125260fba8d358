"""The fake GitHub's Check Runs and contents APIs, over real HTTP (httpx, and githubkit where its
strict parsing proves the shapes)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from githubkit import AppAuthStrategy, GitHub, TokenAuthStrategy
from githubkit.cache import MemCacheStrategy
from githubkit.exception import RequestFailed
from githubkit_schemas.latest.models import ContentFile

from tests.fakes.github import FakeGitHub

MAIN_CONFIG = b"verify:\n  command: make test\n"
FEATURE_CONFIG = b"verify:\n  command: make check\n"
BIG = b"x" * (1024 * 1024 + 1)  # just over GitHub's 1 MB inline limit


@pytest.fixture
def fake(tmp_path: Path, pem: str) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(tmp_path / "github", app_id="1", private_key_pem=pem)
    fake.add_installation(42, account="octo")
    fake.add_repo(
        "octo/hello",
        files={".porter.yml": MAIN_CONFIG, "docs/guide.md": b"guide\n", "big.bin": BIG},
        installation_id=42,
    )
    fake.commit_files("octo/hello", "feature", {".porter.yml": FEATURE_CONFIG})
    with fake.serve():
        yield fake


def installation_client(fake: FakeGitHub) -> GitHub[Any]:
    # Its own cache: githubkit would otherwise replay a token minted by an earlier test's fake.
    app_gh = GitHub(
        AppAuthStrategy(fake.app_id, fake.private_key_pem),
        base_url=fake.api_url,
        http_cache=False,
        auto_retry=False,
        cache_strategy=MemCacheStrategy(),
    )
    return app_gh.with_auth(app_gh.auth.as_installation(42))


def token_client(token: str, fake: FakeGitHub) -> GitHub[Any]:
    return GitHub(
        TokenAuthStrategy(token),
        base_url=fake.api_url,
        http_cache=False,
        auto_retry=False,
        cache_strategy=MemCacheStrategy(),
    )


def main_sha(fake: FakeGitHub) -> str:
    sha = fake.ref_sha("octo/hello", "heads/main")
    assert sha is not None
    return sha


def blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


async def get_file(gh: GitHub[Any], path: str, ref: str | None = None) -> ContentFile:
    """The file at path, parsed by githubkit as the file shape (not a listing or a symlink)."""
    answer = (await gh.rest.repos.async_get_content("octo", "hello", path, ref=ref)).parsed_data
    assert isinstance(answer, ContentFile)
    return answer


# --- check runs ----------------------------------------------------------------------------


async def test_check_run_goes_queued_in_progress_completed(fake: FakeGitHub) -> None:
    gh = installation_client(fake)
    sha = main_sha(fake)
    created = await gh.rest.checks.async_create(
        "octo",
        "hello",
        name="porter/verify",
        head_sha=sha,
        status="queued",
        external_id="task-7",
        details_url="https://porter.example/tasks/7",
    )
    assert created.status_code == 201
    run = created.parsed_data
    assert (run.status, run.conclusion, run.head_sha) == ("queued", None, sha)
    assert (run.external_id, run.details_url) == ("task-7", "https://porter.example/tasks/7")
    assert run.app is not None and run.app.slug == "porter"
    assert run.check_suite is not None and run.started_at is not None
    assert run.completed_at is None

    started = await gh.rest.checks.async_update("octo", "hello", run.id, status="in_progress")
    assert started.parsed_data.status == "in_progress"
    done = await gh.rest.checks.async_update(
        "octo",
        "hello",
        run.id,
        status="completed",
        conclusion="success",
        output={"title": "All green", "summary": "12 passed", "text": "details"},
    )
    finished = done.parsed_data
    assert (finished.status, finished.conclusion) == ("completed", "success")
    assert finished.completed_at is not None
    assert (finished.output.title, finished.output.summary) == ("All green", "12 passed")
    assert finished.output.annotations_count == 0

    fetched = (await gh.rest.checks.async_get("octo", "hello", run.id)).parsed_data
    assert (fetched.name, fetched.conclusion) == ("porter/verify", "success")
    listed = (await gh.rest.checks.async_list_for_ref("octo", "hello", "main")).parsed_data
    assert listed.total_count == 1 and [r.id for r in listed.check_runs] == [run.id]
    (recorded,) = fake.check_runs("octo/hello")
    assert recorded.history == [
        ("queued", None),
        ("in_progress", None),
        ("completed", "success"),
    ]
    assert recorded.output["summary"] == "12 passed"


async def test_a_conclusion_completes_and_latest_run_per_name_is_listed(fake: FakeGitHub) -> None:
    gh = installation_client(fake)
    sha = main_sha(fake)
    first = await gh.rest.checks.async_create("octo", "hello", name="verify", head_sha=sha)
    assert first.parsed_data.status == "queued"  # GitHub's default status
    second = await gh.rest.checks.async_create(
        "octo", "hello", name="verify", head_sha=sha, conclusion="failure"
    )
    assert (second.parsed_data.status, second.parsed_data.conclusion) == ("completed", "failure")
    assert second.parsed_data.check_suite == first.parsed_data.check_suite  # one suite per commit
    latest = (await gh.rest.checks.async_list_for_ref("octo", "hello", sha)).parsed_data
    assert [r.id for r in latest.check_runs] == [second.parsed_data.id]
    every = (
        await gh.rest.checks.async_list_for_ref("octo", "hello", sha, filter_="all")
    ).parsed_data
    assert every.total_count == 2
    feature = (await gh.rest.checks.async_list_for_ref("octo", "hello", "feature")).parsed_data
    assert feature.total_count == 0  # another commit, no runs


async def test_invalid_check_runs_are_refused_and_leave_nothing(fake: FakeGitHub) -> None:
    token = fake.mint_token(42).token
    auth = {"Authorization": f"token {token}"}
    sha = main_sha(fake)
    async with httpx.AsyncClient(base_url=fake.api_url, headers=auth) as http:
        no_conclusion = await http.post(
            "/repos/octo/hello/check-runs",
            json={"name": "verify", "head_sha": sha, "status": "completed"},
        )
        unknown_sha = await http.post(
            "/repos/octo/hello/check-runs", json={"name": "verify", "head_sha": "0" * 40}
        )
        no_name = await http.post("/repos/octo/hello/check-runs", json={"head_sha": sha})
        too_long = await http.post(
            "/repos/octo/hello/check-runs",
            json={
                "name": "verify",
                "head_sha": sha,
                "output": {"title": "t", "summary": "s" * 65536},
            },
        )
        assert fake.check_runs("octo/hello") == []
        ok = await http.post("/repos/octo/hello/check-runs", json={"name": "v", "head_sha": sha})
        run_id = ok.json()["id"]
        bad_update = await http.patch(
            f"/repos/octo/hello/check-runs/{run_id}", json={"status": "completed"}
        )
        missing = await http.get("/repos/octo/hello/check-runs/999")
    assert no_conclusion.status_code == 422
    assert no_conclusion.json()["message"] == "Validation Failed"
    assert no_conclusion.json()["errors"][0]["field"] == "conclusion"
    assert unknown_sha.status_code == 422
    assert unknown_sha.json()["message"] == f"No commit found for SHA: {'0' * 40}"
    assert (no_name.status_code, too_long.status_code) == (422, 422)
    assert bad_update.status_code == 422
    assert fake.check_runs("octo/hello")[0].status == "queued"  # the refused update changed nothing
    assert missing.status_code == 404


async def test_checks_need_checks_write_and_an_app(fake: FakeGitHub) -> None:
    sha = main_sha(fake)
    no_checks = token_client(fake.mint_token(42, permissions={"contents": "read"}).token, fake)
    with pytest.raises(RequestFailed) as refused:
        await no_checks.rest.checks.async_create("octo", "hello", name="v", head_sha=sha)
    assert refused.value.response.status_code == 403
    assert refused.value.response.json()["message"] == "Resource not accessible by integration"
    assert refused.value.response.headers["x-accepted-github-permissions"] == "checks=write"

    reader = token_client(fake.mint_token(42, permissions={"checks": "read"}).token, fake)
    listed = await reader.rest.checks.async_list_for_ref("octo", "hello", "main")
    assert listed.parsed_data.total_count == 0
    with pytest.raises(RequestFailed) as read_only:
        await reader.rest.checks.async_create("octo", "hello", name="v", head_sha=sha)
    assert read_only.value.response.status_code == 403

    user = token_client(fake.mint_user_token("octo").token, fake)
    with pytest.raises(RequestFailed) as not_an_app:
        await user.rest.checks.async_create("octo", "hello", name="v", head_sha=sha)
    assert not_an_app.value.response.status_code == 403
    assert fake.check_runs("octo/hello") == []


# --- contents ------------------------------------------------------------------------------


async def test_porter_yml_is_read_per_branch(fake: FakeGitHub) -> None:
    gh = installation_client(fake)
    on_main = await get_file(gh, ".porter.yml")
    on_feature = await get_file(gh, ".porter.yml", ref="feature")
    assert on_main.encoding == on_feature.encoding == "base64"
    assert base64.b64decode(on_main.content) == MAIN_CONFIG
    assert base64.b64decode(on_feature.content) == FEATURE_CONFIG
    assert (on_main.sha, on_feature.sha) == (blob_sha(MAIN_CONFIG), blob_sha(FEATURE_CONFIG))
    assert (on_main.name, on_main.path, on_main.size) == (
        ".porter.yml",
        ".porter.yml",
        len(MAIN_CONFIG),
    )
    by_sha = await get_file(gh, ".porter.yml", ref=main_sha(fake))
    assert by_sha.sha == on_main.sha


async def test_content_encoding_wraps_and_large_files_are_left_out(fake: FakeGitHub) -> None:
    token = fake.mint_token(42).token
    async with httpx.AsyncClient(
        base_url=fake.api_url, headers={"Authorization": f"token {token}"}
    ) as http:
        big = (await http.get("/repos/octo/hello/contents/big.bin")).json()
        fake.commit_files("octo/hello", "main", {"long.txt": b"y" * 200})
        long = (await http.get("/repos/octo/hello/contents/long.txt")).json()
    assert (big["encoding"], big["content"], big["size"]) == ("none", "", len(BIG))
    lines = long["content"].split("\n")
    assert lines[-1] == "" and all(len(line) == 60 for line in lines[:-2])
    assert base64.b64decode(long["content"]) == b"y" * 200


async def test_missing_paths_and_refs_are_404(fake: FakeGitHub) -> None:
    gh = installation_client(fake)
    for path, ref in (("nope.yml", None), ("docs/nope.md", None), ("x/y/z", None)):
        with pytest.raises(RequestFailed) as missing:
            await gh.rest.repos.async_get_content("octo", "hello", path, ref=ref)
        assert missing.value.response.status_code == 404
        assert missing.value.response.json()["message"] == "Not Found"
        assert "documentation_url" in missing.value.response.json()
    with pytest.raises(RequestFailed) as no_ref:
        await gh.rest.repos.async_get_content("octo", "hello", ".porter.yml", ref="gone")
    assert no_ref.value.response.status_code == 404

    no_contents = token_client(fake.mint_token(42, permissions={"checks": "write"}).token, fake)
    with pytest.raises(RequestFailed) as refused:
        await no_contents.rest.repos.async_get_content("octo", "hello", ".porter.yml")
    assert refused.value.response.status_code == 403


async def test_directories_list_their_entries(fake: FakeGitHub) -> None:
    gh = installation_client(fake)
    docs = (await gh.rest.repos.async_get_content("octo", "hello", "docs")).parsed_data
    assert isinstance(docs, list)
    assert [(e.type, e.path, e.size) for e in docs] == [("file", "docs/guide.md", 6)]
    root = (await gh.rest.repos.async_get_content("octo", "hello", "")).parsed_data
    assert isinstance(root, list)
    kinds = {e.name: e.type for e in root}
    assert kinds == {".porter.yml": "file", "big.bin": "file", "docs": "dir"}
