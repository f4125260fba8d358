"""Real git behind the fake: plumbing commands on bare repositories and `git http-backend` as CGI.

Everything goes through the `git` binary so objects, refs and packs are exactly what GitHub's git
would hold; the fake never writes git objects itself.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ZERO_SHA = "0" * 40
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


class GitError(Exception):
    """A git command failed."""


def _env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    # Ignore the developer's ~/.gitconfig (signing, hooks, templates): results must be reproducible.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "LC_ALL": "C",
        "TZ": "UTC",
    }
    env.update(extra or {})
    return env


def git(
    repo: Path, *args: str, input: bytes | None = None, env: Mapping[str, str] | None = None
) -> bytes:
    proc = subprocess.run(
        ["git", f"--git-dir={repo}", *args],
        input=input,
        capture_output=True,
        env=_env(env),
        check=False,
    )
    if proc.returncode != 0:
        raise GitError(f"git {args[0]} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


@dataclass(frozen=True)
class Ident:
    name: str
    email: str
    when: int  # unix seconds
    tz: str = "+0000"

    def git_date(self) -> str:
        return f"@{self.when} {self.tz}"


@dataclass(frozen=True)
class TreeEntry:
    mode: str
    type: str
    sha: str
    size: int | None
    path: str


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    tree: str
    parents: list[str]
    author: Ident
    committer: Ident
    message: str


def init_bare(path: Path, default_branch: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["git", "init", "--quiet", "--bare", f"--initial-branch={default_branch}", str(path)],
        check=True,
        env=_env(),
        capture_output=True,
    )
    # http-backend only serves receive-pack to authenticated users unless this is set; the fake
    # does its own auth in front of it.
    git(path, "config", "http.receivepack", "true")


def hash_blob(repo: Path, data: bytes) -> str:
    return git(repo, "hash-object", "-w", "--no-filters", "--stdin", input=data).decode().strip()


def object_type(repo: Path, sha: str) -> str | None:
    if not _is_sha(sha):
        return None
    try:
        return git(repo, "cat-file", "-t", sha).decode().strip()
    except GitError:
        return None


def _is_sha(value: str) -> bool:
    return len(value) == 40 and all(c in "0123456789abcdef" for c in value)


def ref_sha(repo: Path, ref: str) -> str | None:
    """The object a full ref name (refs/heads/main) points at, or None; no abbreviation."""
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)", ref)
    for line in out.decode().splitlines():
        name, sha = line.split(" ", 1)
        if name == ref:
            return sha
    return None


def list_refs(repo: Path) -> list[tuple[str, str]]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
    return [(name, sha) for name, sha in (line.split(" ", 1) for line in out.decode().splitlines())]


def update_ref(repo: Path, ref: str, new: str, old: str | None) -> None:
    """Compare-and-set: old=None means 'must not exist yet'."""
    git(repo, "update-ref", ref, new, old if old is not None else ZERO_SHA)


def delete_ref(repo: Path, ref: str) -> None:
    git(repo, "update-ref", "-d", ref)


def is_ancestor(repo: Path, ancestor: str, descendant: str) -> bool:
    proc = subprocess.run(
        ["git", f"--git-dir={repo}", "merge-base", "--is-ancestor", ancestor, descendant],
        env=_env(),
        capture_output=True,
        check=False,
    )
    return proc.returncode == 0


def ls_tree(repo: Path, tree: str, *, recursive: bool = False) -> list[TreeEntry]:
    args = ["ls-tree", "-l", "-z", "--full-tree"]
    if recursive:
        args += ["-r", "-t"]
    out = git(repo, *args, tree)
    entries = []
    for record in out.split(b"\0"):
        if not record:
            continue
        meta, path = record.split(b"\t", 1)
        mode, type_, sha, size = meta.decode().split()
        entries.append(
            TreeEntry(mode, type_, sha, None if size == "-" else int(size), path.decode())
        )
    return entries


def flat_tree(repo: Path, tree: str) -> dict[str, tuple[str, str]]:
    """path -> (mode, sha) for every blob and submodule, at any depth."""
    return {
        e.path: (e.mode, e.sha) for e in ls_tree(repo, tree, recursive=True) if e.type != "tree"
    }


def write_tree(repo: Path, entries: Mapping[str, tuple[str, str]]) -> str:
    """Build a tree from flat path entries via a throwaway index; directories follow from paths.."""
    with tempfile.TemporaryDirectory(prefix="fakegh-index-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        lines = b"".join(
            f"{mode} {sha}\t".encode() + path.encode() + b"\0"
            for path, (mode, sha) in sorted(entries.items())
        )
        if lines:
            git(repo, "update-index", "--add", "-z", "--index-info", input=lines, env=env)
        return git(repo, "write-tree", env=env).decode().strip()


def commit_tree(
    repo: Path, tree: str, parents: list[str], message: str, *, author: Ident, committer: Ident
) -> str:
    args = ["commit-tree", tree]
    for parent in parents:
        args += ["-p", parent]
    env = {
        "GIT_AUTHOR_NAME": author.name,
        "GIT_AUTHOR_EMAIL": author.email,
        "GIT_AUTHOR_DATE": author.git_date(),
        "GIT_COMMITTER_NAME": committer.name,
        "GIT_COMMITTER_EMAIL": committer.email,
        "GIT_COMMITTER_DATE": committer.git_date(),
    }
    return git(repo, *args, input=message.encode(), env=env).decode().strip()


def _parse_ident(value: str) -> Ident:
    name, rest = value.split(" <", 1)
    email, rest = rest.split("> ", 1)
    when, tz = rest.split(" ")
    return Ident(name, email, int(when), tz)


def read_commit(repo: Path, sha: str) -> CommitInfo:
    raw = git(repo, "cat-file", "commit", sha).decode()
    header, _, message = raw.partition("\n\n")
    tree = ""
    parents: list[str] = []
    author = committer = None
    for line in header.splitlines():
        key, _, value = line.partition(" ")
        if key == "tree":
            tree = value
        elif key == "parent":
            parents.append(value)
        elif key == "author":
            author = _parse_ident(value)
        elif key == "committer":
            committer = _parse_ident(value)
    assert author is not None and committer is not None
    return CommitInfo(sha, tree, parents, author, committer, message)


def read_blobs(repo: Path, shas: list[str]) -> dict[str, bytes]:
    if not shas:
        return {}
    out = git(repo, "cat-file", "--batch", input="".join(f"{s}\n" for s in shas).encode())
    blobs: dict[str, bytes] = {}
    pos = 0
    for _ in shas:
        eol = out.index(b"\n", pos)
        sha, _type, size = out[pos:eol].decode().split()
        start = eol + 1
        blobs[sha] = out[start : start + int(size)]
        pos = start + int(size) + 1
    return blobs


def diff_stats(repo: Path, base: str, head: str) -> tuple[int, int, int, int]:
    """(commits, additions, deletions, changed_files) of head against base, as a PR shows them."""
    merge_base = git(repo, "merge-base", base, head).decode().strip()
    commits = int(git(repo, "rev-list", "--count", f"{base}..{head}").decode().strip())
    out = git(repo, "diff", "--numstat", "-z", merge_base, head).decode()
    additions = deletions = files = 0
    for record in out.split("\0"):
        parts = record.split("\t")
        if len(parts) >= 2:
            files += 1
            additions += int(parts[0]) if parts[0].isdigit() else 0
            deletions += int(parts[1]) if parts[1].isdigit() else 0
    return commits, additions, deletions, files


@dataclass(frozen=True)
class CgiResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


async def http_backend(
    root: Path,
    *,
    method: str,
    path_info: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    remote_user: str,
) -> CgiResponse:
    """Run one smart-HTTP request through `git http-backend` (CGI/1.1)."""
    if headers.get("content-encoding", "").lower() == "gzip":
        # git compresses large upload-pack requests; http-backend would inflate them too, but doing
        # it here keeps CONTENT_LENGTH truthful.
        body = gzip.decompress(body)
    env = _env(
        {
            "GIT_PROJECT_ROOT": str(root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path_info,
            "QUERY_STRING": query,
            "REQUEST_METHOD": method,
            "CONTENT_TYPE": headers.get("content-type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": remote_user,
            "REMOTE_ADDR": "127.0.0.1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
    )
    if "git-protocol" in headers:
        env["HTTP_GIT_PROTOCOL"] = headers["git-protocol"]
        env["GIT_PROTOCOL"] = headers["git-protocol"]
    proc = await asyncio.create_subprocess_exec(
        "git",
        "http-backend",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, _err = await proc.communicate(body)
    return parse_cgi(out)


def parse_cgi(out: bytes) -> CgiResponse:
    head_end = out.find(b"\r\n\r\n")
    sep = 4
    lf_end = out.find(b"\n\n")
    if head_end == -1 or (lf_end != -1 and lf_end < head_end):
        head_end, sep = lf_end, 2
    if head_end == -1:
        return CgiResponse(502, [], b"bad CGI response")
    status = 200
    headers: list[tuple[str, str]] = []
    for line in out[:head_end].decode("latin-1").splitlines():
        name, _, value = line.partition(":")
        if name.lower() == "status":
            status = int(value.strip().split()[0])
        elif name:
            headers.append((name.strip(), value.strip()))
    return CgiResponse(status, headers, out[head_end + sep :])
