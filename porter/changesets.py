"""The changeset: the only thing the untrusted agent hands back, validated before Porter commits it.

Contract (docs/design.md): ``{base_sha, message, files: [{path, mode, content_b64} | {path, deleted:
true}]}`` with a size cap. The agent may be prompt-injected, so every field is treated as hostile:
a refusal is one sentence that is safe to post on a public issue (paths are truncated, control
characters escaped, and shown in a code span so they cannot mention anyone or render links).
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from porter.errors import ChangesetError
from porter.symlinks import LinkError, resolve_links

__all__ = [
    "DEFAULT_MESSAGE",
    "EXECUTABLE",
    "MODES",
    "REGULAR",
    "SYMLINK",
    "Changeset",
    "ChangesetStats",
    "FileChange",
    "changeset_to_json",
    "code_span",
    "parse_changeset",
]

REGULAR, EXECUTABLE, SYMLINK = "100644", "100755", "120000"
MODES = frozenset({REGULAR, EXECUTABLE, SYMLINK})
DEFAULT_MESSAGE = "Changes by Porter"
MAX_MESSAGE_BYTES = 64 * 1024
MAX_PATH_BYTES = 4096
_SHA = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
_DRIVE = re.compile(r"[A-Za-z]:")
_FILE_FIELDS = frozenset({"path", "mode", "content_b64", "deleted"})
# Invisible characters that can make two different names look the same in a PR file list
# (Trojan Source, CVE-2021-42574) or that HFS+ ignores when comparing names (git's protectHFS).
_INVISIBLE = frozenset("\u061c\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e") | (
    frozenset("\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\u206a\u206b\u206c\u206d")
    | frozenset("\u206e\u206f\ufeff")
)
# Names git itself refuses to track as a symlink (verify_path in git's read-cache.c).
_NO_SYMLINK_NAMES = frozenset({".gitmodules", ".gitattributes", ".gitignore", ".mailmap"})


@dataclass(frozen=True)
class FileChange:
    """One path written (``content`` is the new bytes, or a symlink's target) or deleted."""

    path: str
    mode: str | None
    content: bytes | None

    @property
    def deleted(self) -> bool:
        return self.content is None


@dataclass(frozen=True)
class ChangesetStats:
    files: int
    written: int
    deleted: int
    bytes: int


@dataclass(frozen=True)
class Changeset:
    base_sha: str
    message: str
    files: tuple[FileChange, ...]

    @property
    def added_bytes(self) -> int:
        return sum(len(f.content) for f in self.files if f.content is not None)

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(f.path for f in self.files)

    def stats(self) -> ChangesetStats:
        # Lines added/removed need the base tree; the publisher can compute them after committing.
        deleted = sum(1 for f in self.files if f.deleted)
        return ChangesetStats(
            files=len(self.files),
            written=len(self.files) - deleted,
            deleted=deleted,
            bytes=self.added_bytes,
        )


def code_span(text: str, *, limit: int = 80) -> str:
    """``text`` as a code span that is safe to post publicly: escaped, truncated, inert."""
    shown = "".join(f"\\u{ord(c):04x}" if _is_hidden(c) or c == "`" else c for c in text[:limit])
    return f"`{shown}…`" if len(text) > limit else f"`{shown}`"


def _is_hidden(char: str) -> bool:
    return unicodedata.category(char) in {"Cc", "Cs", "Zl", "Zp"} or char in _INVISIBLE


def parse_changeset(
    data: object,
    *,
    max_bytes: int = 10 * 2**20,
    max_files: int = 2000,
    allow_workflows: bool = False,
) -> Changeset:
    """Validate the agent's changeset, or raise :class:`ChangesetError` with one public reason."""
    if not isinstance(data, Mapping):
        raise ChangesetError("the changeset is not a JSON object")
    base_sha = data.get("base_sha")
    if not isinstance(base_sha, str) or not _SHA.fullmatch(base_sha):
        raise ChangesetError("the changeset's base_sha is not a 40- or 64-character hex commit id")
    message = _message(data.get("message"))
    entries = data.get("files")
    if not isinstance(entries, list):
        raise ChangesetError("the changeset's files is not a list")
    if not entries:
        raise ChangesetError("the changeset changes no files")
    if len(entries) > max_files:
        raise ChangesetError(
            f"the changeset changes {len(entries)} files; the limit is {max_files}"
        )

    files: list[FileChange] = []
    seen: set[str] = set()
    total = 0
    for index, entry in enumerate(entries, start=1):
        change = _file(entry, index, allow_workflows=allow_workflows, used=total, limit=max_bytes)
        if change.path in seen:
            raise ChangesetError(f"path {code_span(change.path)} appears more than once")
        seen.add(change.path)
        total += len(change.content or b"")
        files.append(change)
    _refuse_file_directory_clashes(files)
    _check_links(files, allow_workflows=allow_workflows)
    return Changeset(base_sha=base_sha.lower(), message=message, files=tuple(files))


def _message(value: object) -> str:
    if value is None:
        return DEFAULT_MESSAGE
    if not isinstance(value, str):
        raise ChangesetError("the changeset's commit message is not text")
    encoded = _utf8(value)
    if encoded is None:
        raise ChangesetError("the changeset's commit message is not valid UTF-8")
    if len(encoded) > MAX_MESSAGE_BYTES:
        raise ChangesetError(
            f"the changeset's commit message is longer than {MAX_MESSAGE_BYTES} bytes"
        )
    if "\x00" in value:
        raise ChangesetError("the changeset's commit message contains a NUL character")
    return value if value.strip() else DEFAULT_MESSAGE


def _utf8(text: str) -> bytes | None:
    try:
        return text.encode()
    except UnicodeEncodeError:  # lone surrogates, which JSON allows and git cannot store
        return None


def _file(entry: object, index: int, *, allow_workflows: bool, used: int, limit: int) -> FileChange:
    if not isinstance(entry, Mapping):
        raise ChangesetError(f"file entry {index} is not an object")
    path = entry.get("path")
    if not isinstance(path, str) or not path:
        raise ChangesetError(f"file entry {index} has no path")
    _check_path(path)
    for key in entry:
        if key not in _FILE_FIELDS:
            field = code_span(key) if isinstance(key, str) else "a non-text key"
            raise ChangesetError(f"path {code_span(path)} has an unexpected field {field}")
    if not allow_workflows and _is_dot_github(path.split("/", 1)[0]):
        raise _dot_github(f"path {code_span(path)} changes")

    deleted = entry.get("deleted", False)
    if deleted is True:
        if entry.get("mode") is not None or entry.get("content_b64") is not None:
            raise ChangesetError(
                f"path {code_span(path)} is marked deleted but also has a mode or content"
            )
        return FileChange(path=path, mode=None, content=None)
    if deleted is not False:
        raise ChangesetError(
            f"path {code_span(path)} has a deleted field that is not true or false"
        )

    mode = entry.get("mode")
    if not isinstance(mode, str) or mode not in MODES:
        raise ChangesetError(
            f"path {code_span(path)} has an invalid mode; allowed are 100644, 100755 and 120000"
        )
    encoded = entry.get("content_b64")
    if not isinstance(encoded, str):
        raise ChangesetError(f"path {code_span(path)} has no content_b64")
    # Checked before decoding too, so an oversized blob is refused without being copied.
    if used + len(encoded) // 4 * 3 - 2 > limit:
        raise _too_large(path, limit)
    try:
        content = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ChangesetError(
            f"path {code_span(path)} has content_b64 that is not valid base64"
        ) from None
    if used + len(content) > limit:
        raise _too_large(path, limit)
    if mode == SYMLINK:
        top = _check_symlink(path, content)
        if not allow_workflows and _is_dot_github(top):
            raise _dot_github(f"symlink {code_span(path)} leads into")
    return FileChange(path=path, mode=mode, content=content)


def _too_large(path: str, limit: int) -> ChangesetError:
    size = f"{limit / 2**20:g} MiB" if limit >= 2**20 else f"{limit} bytes"
    return ChangesetError(
        f"the changeset is too large: its files exceed {size} (limit reached at {code_span(path)})"
    )


def _normalize(segment: str) -> str:
    # What a case-insensitive filesystem may take the name to be: Windows drops trailing dots
    # and spaces and treats "name:stream" as "name"; HFS+ ignores invisible characters.
    visible = "".join(c for c in segment if c not in _INVISIBLE)
    return visible.split(":", 1)[0].lower().rstrip(" .")


def _is_git_dir(segment: str) -> bool:
    return _normalize(segment) in {".git", "git~1"}


def _check_path(path: str) -> None:
    encoded = _utf8(path)
    if encoded is None:
        raise ChangesetError(f"path {code_span(path)} is not valid UTF-8")
    if len(encoded) > MAX_PATH_BYTES:
        raise ChangesetError(f"path {code_span(path)} is longer than {MAX_PATH_BYTES} bytes")
    if any(_is_hidden(c) for c in path):
        raise ChangesetError(f"path {code_span(path)} contains a control or invisible character")
    if "\\" in path:
        raise ChangesetError(f"path {code_span(path)} contains a backslash")
    if path.startswith("/") or _DRIVE.match(path):
        raise ChangesetError(
            f"path {code_span(path)} is absolute; paths must be relative to the repo"
        )
    for segment in path.split("/"):
        if segment == "..":
            raise ChangesetError(f"path {code_span(path)} climbs out of the repository with '..'")
        if segment in {"", "."}:
            raise ChangesetError(f"path {code_span(path)} has an empty or '.' segment")
        if _is_git_dir(segment):
            raise ChangesetError(
                f"path {code_span(path)} is inside .git, which Porter never changes"
            )


def _is_dot_github(top: str | None) -> bool:
    # Everything under .github, not only workflows: composite actions (.github/actions/*) run
    # with the repository's secrets too. Compared case-insensitively because macOS and Windows
    # runners read actions from a checkout whose filesystem ignores case.
    return top is not None and _normalize(top) == ".github"


def _dot_github(what: str) -> ChangesetError:
    return ChangesetError(
        f"{what} `.github`, where GitHub Actions workflows and actions live; Porter commits "
        "changes there only if the operator allows them (PORTER_ALLOW_WORKFLOW_CHANGES)"
    )


def _check_symlink(path: str, target: bytes) -> str | None:
    """Check the target on its face; return the top-level name it names (None: the root)."""
    name = path.rsplit("/", 1)[-1]
    if _normalize(name) in _NO_SYMLINK_NAMES:
        raise ChangesetError(f"path {code_span(path)} may not be a symlink")
    if not target:
        raise ChangesetError(f"symlink {code_span(path)} has an empty target")
    if len(target) > MAX_PATH_BYTES:  # longer than symlink(2) accepts, and costly to resolve
        raise ChangesetError(
            f"symlink {code_span(path)} has a target longer than {MAX_PATH_BYTES} bytes"
        )
    if b"\x00" in target or b"\\" in target:
        raise ChangesetError(f"symlink {code_span(path)} has a target with a NUL byte or backslash")
    try:
        text = target.decode()
    except UnicodeDecodeError:  # could not be compared with the changeset's own (UTF-8) paths
        raise ChangesetError(
            f"symlink {code_span(path)} has a target that is not valid UTF-8"
        ) from None
    if text.startswith("/") or _DRIVE.match(text):
        raise ChangesetError(f"symlink {code_span(path)} points to an absolute path")
    segments = text.split("/")
    # Only text that could spell ".git" (in any case, or with invisible characters) is looked
    # at segment by segment: a target may have thousands of them.
    if (not text.isascii() or "git" in text.lower()) and any(map(_is_git_dir, segments)):
        raise ChangesetError(f"symlink {code_span(path)} points into .git")
    # Read as plain text too (as a tool that normalises paths would): "d/../.." leaves the tree
    # even where "d" is a link that leads deeper.
    depth = path.count("/")  # directories between the repository root and the link
    top = path.split("/", 1)[0] if depth else None
    for segment in segments:
        if segment == "..":
            depth -= 1
            if depth < 0:
                raise ChangesetError(f"symlink {code_span(path)} points outside the repository")
            top = top if depth else None
        elif segment not in {"", "."}:
            top = top if depth else segment
            depth += 1
    return top


def _check_links(files: list[FileChange], *, allow_workflows: bool) -> None:
    """Follow every link through the others, as a checkout of the new tree would: on Linux, and
    on a filesystem that ignores case (macOS, Windows), where "up" may be the link "Up"."""
    links = {f.path: f.content.decode() for f in files if f.mode == SYMLINK and f.content}
    for fold in (None, _normalize):
        try:
            tops = resolve_links(links, fold=fold)
        except LinkError as exc:
            raise ChangesetError(f"symlink {code_span(exc.path)} {exc.reason}") from None
        if not allow_workflows:
            for path, top in tops.items():
                if _is_dot_github(top):
                    raise _dot_github(f"symlink {code_span(path)} leads into")


def _refuse_file_directory_clashes(files: list[FileChange]) -> None:
    # Deleting "a" while writing "a/b" (or the reverse) is a legitimate file<->directory swap;
    # writing both "a" and "a/b" asks for a tree that cannot exist (and, were "a" a symlink,
    # would write through it).
    written = {f.path: f.mode for f in files if not f.deleted}
    for path in sorted(written):
        parts = path.split("/")
        for end in range(1, len(parts)):
            parent = "/".join(parts[:end])
            if parent in written:
                kind = "symlink" if written[parent] == SYMLINK else "file"
                raise ChangesetError(
                    f"path {code_span(parent)} is written as a {kind} but {code_span(path)} "
                    "needs it to be a directory"
                )


def changeset_to_json(cs: Changeset) -> dict[str, object]:
    """The wire form of ``cs``; ``parse_changeset(changeset_to_json(cs)) == cs`` for valid ones."""
    files: list[dict[str, object]] = []
    for change in cs.files:
        if change.content is None:
            files.append({"path": change.path, "deleted": True})
        else:
            files.append(
                {
                    "path": change.path,
                    "mode": change.mode,
                    "content_b64": base64.b64encode(change.content).decode(),
                }
            )
    return {"base_sha": cs.base_sha, "message": cs.message, "files": files}
