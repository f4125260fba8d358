"""The repository contents API of the fake (reading only), answered from the real git tree.

`GET /repos/{owner}/{repo}/contents/{path}?ref=…`: a file answers GitHub's file object (base64
wrapped at 60 columns; above 1 MB `content` is "" and `encoding` "none", as GitHub answers), a
directory the list of its entries. `ref` is a branch, tag or commit sha (default branch when
absent); a missing ref or path is GitHub's 404. Needs `contents: read`.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from tests.fakes import github_git as gitcmd
from tests.fakes.github_git import TreeEntry
from tests.fakes.github_http import ApiError, Ctx, not_found
from tests.fakes.github_routes import route
from tests.fakes.github_state import Repo

if TYPE_CHECKING:
    from tests.fakes.github import FakeGitHub

MAX_INLINE_BYTES = 1024 * 1024  # above this GitHub leaves `content` empty
_KINDS = {"blob": "file", "tree": "dir", "commit": "submodule"}


def commit_of(repo: Repo, ref: str) -> str | None:
    """The commit a branch, tag, full ref or commit sha names, or None."""
    if gitcmd.object_type(repo.path, ref) == "commit":
        return ref
    candidates = [ref] if ref.startswith("refs/") else [f"refs/heads/{ref}", f"refs/tags/{ref}"]
    for full in candidates:
        sha = gitcmd.ref_sha(repo.path, full)
        if sha is not None and gitcmd.object_type(repo.path, sha) == "commit":
            return sha
    return None


def _entry(repo: Repo, commit: str, path: str) -> TreeEntry | None:
    """The tree entry at `path` of `commit` (path "" is the root tree), or None."""
    if path == "":
        return TreeEntry("040000", "tree", gitcmd.read_commit(repo.path, commit).tree, None, "")
    parent, _, name = path.rpartition("/")
    try:
        entries = gitcmd.ls_tree(repo.path, f"{commit}:{parent}" if parent else commit)
    except gitcmd.GitError:
        return None  # the parent directory does not exist
    return next((e for e in entries if e.path == name), None)


def _item(gh: FakeGitHub, repo: Repo, ref: str, path: str, e: TreeEntry) -> dict[str, Any]:
    """The fields a file and a directory entry share."""
    kind = _KINDS[e.type]
    if e.mode == "120000":
        kind = "symlink"
    api = f"{gh.api_url}/repos/{repo.full_name}"
    quoted = quote(path)
    url = f"{api}/contents/{quoted}?ref={quote(ref, safe='')}"
    git_url = f"{api}/git/{'trees' if kind == 'dir' else 'blobs'}/{e.sha}"
    html_url = f"{gh.web_url}/{repo.full_name}/{'tree' if kind == 'dir' else 'blob'}/{ref}/{quoted}"
    download = f"{gh.web_url}/{repo.full_name}/raw/{ref}/{quoted}" if kind == "file" else None
    return {
        "type": kind,
        "size": e.size or 0,
        "name": path.rpartition("/")[2],
        "path": path,
        "sha": e.sha,
        "url": url,
        "git_url": None if kind == "submodule" else git_url,
        "html_url": None if kind == "submodule" else html_url,
        "download_url": download,
        "_links": {"self": url, "git": git_url, "html": html_url},
    }


def _file(gh: FakeGitHub, repo: Repo, ref: str, path: str, e: TreeEntry) -> dict[str, Any]:
    body = _item(gh, repo, ref, path, e)
    data = gitcmd.read_blobs(repo.path, [e.sha])[e.sha]
    if body["type"] == "symlink":
        return {**body, "target": data.decode(errors="replace")}
    if len(data) > MAX_INLINE_BYTES:
        return {**body, "type": "file", "content": "", "encoding": "none"}
    raw = base64.b64encode(data).decode()
    # GitHub wraps base64 at 60 columns, each line ending in a newline.
    wrapped = "".join(raw[i : i + 60] + "\n" for i in range(0, len(raw), 60))
    return {**body, "type": "file", "content": wrapped, "encoding": "base64"}


def _contents(ctx: Ctx, path: str) -> tuple[int, Any]:
    repo = ctx.repo()
    ctx.require(("contents", "read"))
    path = path.strip("/")
    if path and any(part in ("", ".", "..") for part in path.split("/")):
        raise not_found()
    ref = ctx.request.query_params.get("ref") or repo.default_branch
    commit = commit_of(repo, ref)
    if commit is None:
        # GitHub's answer for an unknown ref on this endpoint is a 404 with its own message.
        raise not_found() if ctx.request.query_params.get("ref") is None else _no_ref(ref)
    e = _entry(repo, commit, path)
    if e is None:
        raise not_found()
    if e.type == "tree":
        entries = gitcmd.ls_tree(repo.path, e.sha)
        listing = [
            _item(ctx.gh, repo, ref, f"{path}/{c.path}" if path else c.path, c) for c in entries
        ]
        return 200, listing
    if e.type == "commit":
        raise not_found()  # a submodule's own object is out of the fake's scope
    return 200, _file(ctx.gh, repo, ref, path, e)


def _no_ref(ref: str) -> ApiError:
    return ApiError(404, f"No commit found for the ref {ref}")


@route("GET", "/repos/{owner}/{repo}/contents/{path:path}")
def get_content(ctx: Ctx) -> tuple[int, Any]:
    return _contents(ctx, ctx.arg("path"))


@route("GET", "/repos/{owner}/{repo}/contents")
def get_root_content(ctx: Ctx) -> tuple[int, Any]:
    return _contents(ctx, "")
