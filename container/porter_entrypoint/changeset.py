"""Collecting the agent's changes against the base commit, as a changeset Porter can commit.

Read from the index after `git add -A`, with exact modes, binary content and symlinks; git runs
inside the agent's sandbox, as the agent, because the repository's config is the agent's.
"""

from __future__ import annotations

import base64
import os
import subprocess
from typing import Any

from porter_entrypoint.git import git_env
from porter_entrypoint.processes import DEFAULT_PATH
from porter_entrypoint.result import StageFailure
from porter_entrypoint.sandbox import Jail
from porter_entrypoint.streams import Transcript

CHANGESET_MODES = {"100644", "100755", "120000"}
MAX_PATCH_BYTES = 2 * 1024 * 1024  # the diff kept for the task page; the changeset is the truth


class GitAs:
    """Runs git in the checkout inside the agent's sandbox, so repo config the agent wrote
    (filters, fsmonitor) can never run with the entrypoint's privileges or see its secrets."""

    def __init__(self, jail: Jail) -> None:
        self._jail = jail
        self._env = git_env(
            home=jail.home,
            extra_config={
                "core.hooksPath": "/dev/null",
                "core.fsmonitor": "false",
            },
        )
        self._env["PATH"] = DEFAULT_PATH if jail.policy else self._env["PATH"]

    def __call__(self, args: list[str], stdin: bytes | None = None) -> bytes:
        result = subprocess.run(
            self._jail.argv(["git", *args]),
            cwd=self._jail.mounts.checkout,
            env=self._env,
            input=stdin,
            capture_output=True,
            timeout=600,
            check=False,
            start_new_session=True,
        )
        if result.returncode != 0:
            message = result.stderr.decode("utf-8", "replace").strip().splitlines() or ["failed"]
            raise StageFailure("collect", f"git {args[0]} failed: {message[-1]}")
        return bytes(result.stdout)


def collect_changeset(
    *,
    jail: Jail,
    base_sha: str,
    max_bytes: int,
    message: str,
    transcript: Transcript,
) -> dict[str, Any] | None:
    """The changes against base_sha (committed or not), read from the index; None if none."""
    if not os.path.isdir(os.path.join(jail.mounts.checkout, ".git")):
        raise StageFailure("collect", "the checkout's .git directory is gone")
    git = GitAs(jail)
    git(["add", "-A"])
    raw = git(["diff-index", "--cached", "--raw", "-z", "--no-renames", "--no-abbrev", base_sha])
    fields = raw.split(b"\0")
    entries: list[tuple[str, str, str | None]] = []  # (path, mode, blob sha | None = deleted)
    for meta, raw_path in zip(fields[0:-1:2], fields[1::2], strict=False):
        _, new_mode, _, new_sha, status = meta.decode().lstrip(":").split(" ")
        try:
            path = raw_path.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StageFailure("collect", f"a changed path is not UTF-8: {raw_path!r}") from exc
        if status.startswith("D"):
            entries.append((path, "", None))
        elif new_mode == "160000":
            transcript.note(f"skipped {path}: nested repositories and submodules are not collected")
        elif new_mode in CHANGESET_MODES:
            entries.append((path, new_mode, new_sha))
        else:
            raise StageFailure("collect", f"unsupported file mode {new_mode} for {path}")
    if not entries:
        return None
    blobs = [sha for _, _, sha in entries if sha]
    sizes = _blob_sizes(git, blobs)
    total = sum(sizes[sha] for sha in blobs)  # each file is sent whole, even if identical
    if total > max_bytes:
        raise StageFailure(
            "collect",
            f"the changes are too large: {total} bytes in {len(entries)} files "
            f"(the limit is {max_bytes} bytes)",
        )
    contents = _blob_contents(git, blobs)
    files: list[dict[str, Any]] = []
    for path, mode, sha in entries:
        if sha is None:
            files.append({"path": path, "deleted": True})
        else:
            content = base64.b64encode(contents[sha]).decode()
            files.append({"path": path, "mode": mode, "content_b64": content})
    transcript.note(f"collected {len(files)} changed files ({total} bytes)")
    return {"base_sha": base_sha, "message": message, "files": files}


def changeset_patch(jail: Jail, base_sha: str, *, limit: int = MAX_PATCH_BYTES) -> str:
    """The staged changes as a unified diff, for people to read (the task's changeset artifact),
    cut to `limit` bytes. Never through a diff driver or text filter the agent configured: those
    would run programs of its choosing."""
    out = GitAs(jail)(["diff", "--cached", "--no-ext-diff", "--no-textconv", "--no-color",
                       "--no-renames", "--full-index", base_sha])
    if len(out) <= limit:
        return out.decode("utf-8", "replace")
    kept = out[:limit].decode("utf-8", "ignore")
    return kept + f"\n[porter: the diff is cut here; {len(out) - limit} more bytes]\n"


def _blob_sizes(git: GitAs, shas: list[str]) -> dict[str, int]:
    out = git(["cat-file", "--batch-check"], stdin="".join(f"{s}\n" for s in shas).encode())
    sizes: dict[str, int] = {}
    for line in out.decode().splitlines():
        sha, _, size = line.split(" ")
        sizes[sha] = int(size)
    return sizes


def _blob_contents(git: GitAs, shas: list[str]) -> dict[str, bytes]:
    unique = list(dict.fromkeys(shas))
    out = git(["cat-file", "--batch"], stdin="".join(f"{s}\n" for s in unique).encode())
    contents: dict[str, bytes] = {}
    pos = 0
    for _ in unique:
        header_end = out.index(b"\n", pos)
        sha, kind, size = out[pos:header_end].decode().split(" ")
        if kind != "blob":
            raise StageFailure("collect", f"object {sha} is a {kind}, not a file")
        start = header_end + 1
        contents[sha] = out[start : start + int(size)]
        pos = start + int(size) + 1
    return contents
