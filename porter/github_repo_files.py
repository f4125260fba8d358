"""A repository's `.porter.yml`, read from its default branch through the contents API.

Only the default branch is read, never a pull request's branch: anyone who can push to a PR
branch would otherwise choose the setup and verify commands Porter runs. The branch is pinned to
its commit first, so the file read and the commit recorded for the task are the same even if
someone pushes meanwhile. The answer is bounded before it is decoded: the file is untrusted.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

from porter.errors import GitHubError
from porter.github import InstallationClient
from porter.repo_config import FILE_NAME, MAX_FILE_BYTES

# base64 of MAX_FILE_BYTES wrapped at 60 columns (GitHub's answer), with room to spare: a longer
# `content` is refused before decoding, whatever `size` claims.
MAX_ENCODED_CHARS = MAX_FILE_BYTES * 3
# What a non-file answer is, in words ("file" here is a symlink GitHub followed).
_KINDS = {"symlink": "a symbolic link", "file": "a symbolic link", "submodule": "a submodule"}


@dataclass(frozen=True)
class ConfigFile:
    """The file's bytes, and where they came from (recorded with the task)."""

    content: bytes
    blob_sha: str
    branch: str
    commit: str


@dataclass(frozen=True)
class NoConfig:
    """The default branch has no such file (the operator's defaults apply); where it looked."""

    branch: str
    commit: str


@dataclass(frozen=True)
class UnreadableConfig:
    """The path exists but is not a file Porter reads; `message` is for the status comment."""

    message: str
    branch: str
    commit: str


async def read_config_file(client: InstallationClient, repo: str, *,
                           default_branch: str | None = None
                           ) -> ConfigFile | UnreadableConfig | NoConfig | None:
    """`.porter.yml` on the default branch (asked for when not given); NoConfig when the file
    does not exist, None when the branch does not either (an empty repository). Raises
    GitHubError as porter/github.py does, `retryable` when trying again may help."""
    branch = default_branch or await client.default_branch(repo)
    commit = await client.ref_sha(repo, f"heads/{branch}")
    if commit is None:  # an empty repository has a default branch name and no branch
        return None
    owner, name = repo.split("/", 1)
    try:
        # The commit, not the branch name: the file read is the one of the recorded commit.
        # Plain JSON: the answer is a union (file, listing, symlink, submodule) checked here.
        response = await client.call(
            lambda rest: rest.repos.async_get_content(owner, name, FILE_NAME, ref=commit))
    except GitHubError as exc:
        if exc.status == 404:
            return NoConfig(branch, commit)
        raise
    return config_file(response.json(), branch=branch, commit=commit)


def config_file(answer: Any, *, branch: str, commit: str) -> ConfigFile | UnreadableConfig:
    """The contents API's answer for FILE_NAME, checked and decoded. Pure."""

    def unreadable(why: str) -> UnreadableConfig:
        return UnreadableConfig(f"`{FILE_NAME}` on `{branch}` {why}", branch, commit)

    if isinstance(answer, list):
        return unreadable("is a directory; Porter reads a file of that name")
    if not isinstance(answer, dict):
        return unreadable("could not be read: GitHub answered something other than a file")
    kind = answer.get("type")
    # GitHub follows a symlink to a file in the repository and answers the target's path.
    if kind != "file" or answer.get("path") != FILE_NAME:
        shown = _KINDS.get(str(kind), "not a regular file")
        return unreadable(f"is {shown}; Porter reads only a regular file")
    size = answer.get("size")
    content = answer.get("content")
    sha = answer.get("sha")
    if isinstance(size, int) and size > MAX_FILE_BYTES:
        return unreadable(f"is {size:,} bytes; at most {MAX_FILE_BYTES:,}")
    if answer.get("encoding") != "base64" or not isinstance(content, str):
        return unreadable("could not be read: GitHub did not send its content")
    if len(content) > MAX_ENCODED_CHARS or not isinstance(sha, str):
        return unreadable(f"is larger than {MAX_FILE_BYTES:,} bytes")
    try:
        data = base64.b64decode(content)
    except (binascii.Error, ValueError):
        return unreadable("could not be read: its content is not valid base64")
    if len(data) > MAX_FILE_BYTES:
        return unreadable(f"is {len(data):,} bytes; at most {MAX_FILE_BYTES:,}")
    return ConfigFile(data, sha, branch, commit)
