"""Git Data API endpoints of the fake, writing real objects and refs into the bare repository."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any, TypeGuard

from tests.fakes import github_git as gitcmd
from tests.fakes import github_shapes as shapes
from tests.fakes.github_git import Ident
from tests.fakes.github_http import ApiError, Ctx, not_found
from tests.fakes.github_routes import route
from tests.fakes.github_state import Repo

MODES = {"100644": "blob", "100755": "blob", "120000": "blob", "040000": "tree", "160000": "commit"}
GITHUB_COMMITTER = ("GitHub", "noreply@github.com")


def _read(ctx: Ctx) -> Repo:
    repo = ctx.repo()
    ctx.require(("contents", "read"))
    return repo


def _write(ctx: Ctx) -> Repo:
    repo = ctx.repo()
    ctx.require(("contents", "write"))
    return repo


# --- blobs ---------------------------------------------------------------------------------


@route("POST", "/repos/{owner}/{repo}/git/blobs")
def create_blob(ctx: Ctx) -> tuple[int, Any]:
    repo = _write(ctx)
    content = ctx.field("content")
    encoding = ctx.field("encoding", required=False) or "utf-8"
    if encoding == "base64":
        try:
            data = base64.b64decode(content, validate=False)
        except binascii.Error:
            raise ApiError(422, "Invalid base64 content") from None
    elif encoding in ("utf-8", "utf8"):
        data = content.encode()
    else:
        raise ApiError(422, f"encoding must be 'utf-8' or 'base64', not {encoding!r}")
    sha = gitcmd.hash_blob(repo.path, data)
    return 201, shapes.short_blob(ctx.gh, repo, sha)


@route("GET", "/repos/{owner}/{repo}/git/blobs/{sha}")
def get_blob(ctx: Ctx) -> tuple[int, Any]:
    repo = _read(ctx)
    sha = ctx.arg("sha")
    if gitcmd.object_type(repo.path, sha) != "blob":
        raise not_found()
    data = gitcmd.read_blobs(repo.path, [sha])[sha]
    return 200, shapes.blob(ctx.gh, repo, sha, data)


# --- trees ---------------------------------------------------------------------------------


def _valid_path(path: object) -> TypeGuard[str]:
    if not isinstance(path, str) or not path or path.startswith("/") or path.endswith("/"):
        return False
    return all(part not in ("", ".", "..", ".git") for part in path.split("/"))


def _apply(repo: Repo, files: dict[str, tuple[str, str]], entry: Any) -> None:
    """Apply one `tree` item of POST git/trees to a flat path -> (mode, sha) map."""
    if not isinstance(entry, dict):
        raise ApiError(422, "Invalid tree info")
    path, mode, kind = entry.get("path"), entry.get("mode"), entry.get("type")
    if not _valid_path(path):
        raise ApiError(422, f"tree.path contains a malformed path component: {path!r}")
    if mode not in MODES or kind != MODES[mode]:
        raise ApiError(422, f"Must supply a valid tree.mode/tree.type pair for {path}")
    inside = f"{path}/"
    for existing in [p for p in files if p == path or p.startswith(inside)]:
        del files[existing]
    if "content" in entry and entry["content"] is not None:
        if "sha" in entry and entry["sha"] is not None:
            raise ApiError(422, "Must supply either tree.sha or tree.content, not both")
        if kind != "blob" or not isinstance(entry["content"], str):
            raise ApiError(422, "tree.content is only valid for blobs")
        files[path] = (mode, gitcmd.hash_blob(repo.path, entry["content"].encode()))
    elif entry.get("sha") is None:
        if "sha" not in entry:
            raise ApiError(422, "Must supply either tree.sha or tree.content")
        return  # sha: null deletes the path (and everything below it)
    else:
        sha = entry["sha"]
        actual = gitcmd.object_type(repo.path, sha)
        if kind != "commit" and actual != kind:
            raise ApiError(422, f"GitRPC::BadObjectState: tree.sha {sha} is not a valid {kind}")
        if kind == "tree":
            for sub, (sub_mode, sub_sha) in gitcmd.flat_tree(repo.path, sha).items():
                files[f"{inside}{sub}"] = (sub_mode, sub_sha)
        else:
            files[path] = (mode, sha)
    # A file where a directory is needed (or the reverse) is replaced, as GitHub does.
    parts = path.split("/")
    for i in range(1, len(parts)):
        files.pop("/".join(parts[:i]), None)


@route("POST", "/repos/{owner}/{repo}/git/trees")
def create_tree(ctx: Ctx) -> tuple[int, Any]:
    repo = _write(ctx)
    items = ctx.field("tree", list)
    base = ctx.field("base_tree", required=False)
    files: dict[str, tuple[str, str]] = {}
    if base is not None:
        if gitcmd.object_type(repo.path, base) not in ("tree", "commit"):
            raise ApiError(422, f"base_tree {base} is not a valid tree")
        files = gitcmd.flat_tree(repo.path, base)
    for entry in items:
        _apply(repo, files, entry)
    sha = gitcmd.write_tree(repo.path, files)
    return 201, shapes.tree(ctx.gh, repo, sha, gitcmd.ls_tree(repo.path, sha))


@route("GET", "/repos/{owner}/{repo}/git/trees/{sha}")
def get_tree(ctx: Ctx) -> tuple[int, Any]:
    repo = _read(ctx)
    sha = ctx.arg("sha")
    kind = gitcmd.object_type(repo.path, sha)
    if kind == "commit":
        sha = gitcmd.read_commit(repo.path, sha).tree
    elif kind != "tree":
        raise not_found()
    recursive = ctx.request.query_params.get("recursive") not in (None, "", "0", "false")
    return 200, shapes.tree(ctx.gh, repo, sha, gitcmd.ls_tree(repo.path, sha, recursive=recursive))


# --- commits -------------------------------------------------------------------------------


def _ident(ctx: Ctx, key: str, default: tuple[str, str]) -> Ident | None:
    value = ctx.field(key, dict, required=False)
    if value is None:
        return None
    name, email = value.get("name", default[0]), value.get("email", default[1])
    if not isinstance(name, str) or not isinstance(email, str):
        raise ApiError(422, f"Invalid {key}")
    when = int(ctx.gh.now())
    if value.get("date"):
        try:
            when = int(datetime.fromisoformat(value["date"]).timestamp())
        except (TypeError, ValueError):
            raise ApiError(422, f"Invalid {key}.date") from None
    return Ident(name, email, when)


@route("POST", "/repos/{owner}/{repo}/git/commits")
def create_commit(ctx: Ctx) -> tuple[int, Any]:
    gh = ctx.gh
    repo = _write(ctx)
    message = ctx.field("message")
    tree = ctx.field("tree")
    parents = ctx.field("parents", list, required=False) or []
    if gitcmd.object_type(repo.path, tree) != "tree":
        raise ApiError(422, "Tree SHA does not exist")
    for parent in parents:
        if not isinstance(parent, str) or gitcmd.object_type(repo.path, parent) != "commit":
            raise ApiError(422, "Parent SHA does not exist or is not a commit object")
    bot = gh.user(gh.bot_login)
    bot_ident = (bot.login, f"{bot.id}+{bot.login}@users.noreply.github.com")
    now = int(gh.now())
    author = _ident(ctx, "author", bot_ident) or Ident(*bot_ident, now)
    committer = _ident(ctx, "committer", (author.name, author.email))
    # With no committer given GitHub commits as itself and signs the commit ("Verified").
    verified = committer is None
    committer = committer or Ident(*GITHUB_COMMITTER, now)
    sha = gitcmd.commit_tree(repo.path, tree, parents, message, author=author, committer=committer)
    if verified:
        gh.signed_commits.add(sha)
    info = gitcmd.read_commit(repo.path, sha)
    return 201, shapes.git_commit(gh, repo, info, verified=verified)


@route("GET", "/repos/{owner}/{repo}/git/commits/{sha}")
def get_commit(ctx: Ctx) -> tuple[int, Any]:
    repo = _read(ctx)
    sha = ctx.arg("sha")
    if gitcmd.object_type(repo.path, sha) != "commit":
        raise not_found()
    info = gitcmd.read_commit(repo.path, sha)
    return 200, shapes.git_commit(ctx.gh, repo, info, verified=sha in ctx.gh.signed_commits)


# --- refs ----------------------------------------------------------------------------------


def _ref_json(ctx: Ctx, repo: Repo, ref: str, sha: str) -> dict[str, Any]:
    kind = gitcmd.object_type(repo.path, sha) or "commit"
    return shapes.git_ref(ctx.gh, repo, ref, sha, kind)


@route("GET", "/repos/{owner}/{repo}/git/ref/{ref:path}")
def get_ref(ctx: Ctx) -> tuple[int, Any]:
    repo = _read(ctx)
    ref = f"refs/{ctx.arg('ref')}"
    sha = gitcmd.ref_sha(repo.path, ref)
    if sha is None:
        raise not_found()
    return 200, _ref_json(ctx, repo, ref, sha)


@route("GET", "/repos/{owner}/{repo}/git/matching-refs/{ref:path}")
def matching_refs(ctx: Ctx) -> tuple[int, Any]:
    repo = _read(ctx)
    prefix = f"refs/{ctx.arg('ref')}"
    return 200, [
        _ref_json(ctx, repo, name, sha)
        for name, sha in gitcmd.list_refs(repo.path)
        if name.startswith(prefix)
    ]


@route("POST", "/repos/{owner}/{repo}/git/refs")
def create_ref(ctx: Ctx) -> tuple[int, Any]:
    repo = _write(ctx)
    ref = ctx.field("ref")
    sha = ctx.field("sha")
    if not ref.startswith("refs/") or ref.count("/") < 2:
        raise ApiError(422, "Reference name must start with 'refs/' and have at least two slashes.")
    if gitcmd.object_type(repo.path, sha) is None:
        raise ApiError(422, "Object does not exist")
    if gitcmd.ref_sha(repo.path, ref) is not None:
        raise ApiError(422, "Reference already exists")
    try:
        gitcmd.update_ref(repo.path, ref, sha, None)
    except gitcmd.GitError:
        raise ApiError(422, f"{ref} is not a valid ref name.") from None
    return 201, _ref_json(ctx, repo, ref, sha)


@route("PATCH", "/repos/{owner}/{repo}/git/refs/{ref:path}")
def update_ref(ctx: Ctx) -> tuple[int, Any]:
    repo = _write(ctx)
    ref = f"refs/{ctx.arg('ref')}"
    sha = ctx.field("sha")
    force = bool(ctx.field("force", bool, required=False))
    current = gitcmd.ref_sha(repo.path, ref)
    if current is None:
        raise ApiError(422, "Reference does not exist")
    if gitcmd.object_type(repo.path, sha) is None:
        raise ApiError(422, "Object does not exist")
    if not force and not gitcmd.is_ancestor(repo.path, current, sha):
        raise ApiError(422, "Update is not a fast forward")
    try:
        gitcmd.update_ref(repo.path, ref, sha, current)
    except gitcmd.GitError:
        # Someone moved the ref between our read and write: GitHub reports the same refusal.
        raise ApiError(422, "Update is not a fast forward") from None
    return 200, _ref_json(ctx, repo, ref, sha)


@route("DELETE", "/repos/{owner}/{repo}/git/refs/{ref:path}")
def delete_ref(ctx: Ctx) -> tuple[int, Any]:
    repo = _write(ctx)
    ref = f"refs/{ctx.arg('ref')}"
    if gitcmd.ref_sha(repo.path, ref) is None:
        raise ApiError(422, "Reference does not exist")
    gitcmd.delete_ref(repo.path, ref)
    return 204, None
