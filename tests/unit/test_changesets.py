from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from porter.changesets import (
    DEFAULT_MESSAGE,
    Changeset,
    ChangesetStats,
    FileChange,
    changeset_to_json,
    parse_changeset,
)
from porter.errors import ChangesetError
from tests.fakes.changesets import SHA, changeset, refusal, written


def test_accepts_added_modified_deleted_executable_binary_and_symlink() -> None:
    binary = bytes(range(256))
    cs = parse_changeset(
        changeset(
            written("README.md", b"# hi\n"),
            written("bin/run", b"#!/bin/sh\necho hi\n", mode="100755"),
            written("assets/logo.png", binary),
            written("docs/current", b"../README.md", mode="120000"),
            written("empty.txt", b""),
            {"path": "old/file.py", "deleted": True},
        )
    )
    assert cs.base_sha == SHA
    assert cs.message == "Add a thing"
    assert cs.paths == (
        "README.md",
        "bin/run",
        "assets/logo.png",
        "docs/current",
        "empty.txt",
        "old/file.py",
    )
    by_path = {f.path: f for f in cs.files}
    assert by_path["bin/run"].mode == "100755"
    assert by_path["assets/logo.png"].content == binary
    assert by_path["docs/current"] == FileChange("docs/current", "120000", b"../README.md")
    assert by_path["empty.txt"].content == b"" and not by_path["empty.txt"].deleted
    assert by_path["old/file.py"].deleted and by_path["old/file.py"].mode is None
    assert cs.added_bytes == len(b"# hi\n") + 18 + 256 + 12
    assert cs.stats() == ChangesetStats(files=6, written=5, deleted=1, bytes=cs.added_bytes)


def test_sha256_base_and_uppercase_sha_are_accepted() -> None:
    assert parse_changeset(changeset(written("a"), base_sha="ab" * 32)).base_sha == "ab" * 32
    assert parse_changeset(changeset(written("a"), base_sha=SHA.upper())).base_sha == SHA


@pytest.mark.parametrize("message", [None, "", "   \n"])
def test_empty_message_gets_the_default(message: str | None) -> None:
    data = changeset(written("a"))
    data["message"] = message
    assert parse_changeset(data).message == DEFAULT_MESSAGE


def test_workflows_are_accepted_when_the_operator_allows_them() -> None:
    cs = parse_changeset(changeset(written(".github/workflows/ci.yml")), allow_workflows=True)
    assert cs.paths == (".github/workflows/ci.yml",)


def test_deleted_entry_may_carry_null_mode_and_content() -> None:
    entry = {"path": "gone.txt", "deleted": True, "mode": None, "content_b64": None}
    assert parse_changeset(changeset(entry)).files == (FileChange("gone.txt", None, None),)


def test_deleting_a_file_to_make_it_a_directory_is_fine() -> None:
    cs = parse_changeset(changeset({"path": "a", "deleted": True}, written("a/b")))
    assert cs.stats().deleted == 1


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("../x", "climbs out of the repository"),
        ("a/../../b", "climbs out of the repository"),
        ("/etc/passwd", "is absolute"),
        ("C:/Windows/x", "is absolute"),
        ("c:x", "is absolute"),
        (".git/config", "inside .git"),
        ("sub/.GIT/hooks/x", "inside .git"),
        (".git./config", "inside .git"),
        (".git /config", "inside .git"),
        (".Git::$INDEX_ALLOCATION/x", "inside .git"),
        ("GIT~1/config", "inside .git"),
        (".g\u200cit/config", "invisible"),
        ("a//b", "empty or '.' segment"),
        ("a/", "empty or '.' segment"),
        ("./a", "empty or '.' segment"),
        ("a\\b", "backslash"),
        ("a\x00b", "control"),
        ("a\nb", "control"),
        ("evil\u202egnp.exe", "invisible"),
        ("a" * 4097, "longer than 4096 bytes"),
        ("\ud800", "not valid UTF-8"),
    ],
)
def test_bad_paths_are_refused_with_a_reason_naming_them(path: str, reason: str) -> None:
    message = refusal(changeset(written(path)))
    assert reason in message
    assert "`" in message  # the path is quoted as code, so it cannot render as a link or mention


def test_refused_path_is_shown_safely() -> None:
    message = refusal(changeset(written("x\x1b[31m/" + "y" * 500 + "/..")))
    assert "\x1b" not in message and "\\u001b" in message
    assert len(message) < 200 and "…" in message
    message = refusal(changeset(written("a`@everyone`/../../b")))
    assert message.count("`") == 2


@pytest.mark.parametrize(
    "path",
    [".github/workflows/ci.yml", ".GitHub/Workflows/x.yml", ".github./workflows/x", ".github"],
)
def test_workflow_changes_need_the_operator(path: str) -> None:
    message = refusal(changeset(written(path)))
    assert "workflow" in message and "operator" in message


def test_deleting_a_workflow_is_a_workflow_change() -> None:
    message = refusal(changeset({"path": ".github/workflows/ci.yml", "deleted": True}))
    assert "operator" in message


@pytest.mark.parametrize(
    "path",
    [
        # Composite actions run with the repository's secrets, like workflows.
        ".github/actions/setup/action.yml",
        ".github/actions/setup/run.sh",
        ".github/dependabot.yml",
        ".github/CODEOWNERS",
    ],
)
def test_everything_under_dot_github_needs_the_operator(path: str) -> None:
    message = refusal(changeset(written(path)))
    assert "`.github`" in message and "operator" in message
    assert parse_changeset(changeset(written(path)), allow_workflows=True).paths == (path,)


@pytest.mark.parametrize(
    "files",
    [
        [written("gh", b".github", mode="120000")],
        [written("ci", b".github/workflows/ci.yml", mode="120000")],
        [written("docs/action", b"../.github/actions/setup", mode="120000")],
        [written("a", b"b", mode="120000"), written("b", b".github", mode="120000")],
        [written("d", b".", mode="120000"), written("x", b"d/.github/workflows", mode="120000")],
        [written("d", b"sub/x", mode="120000"), written("l", b"d/../.github", mode="120000")],
    ],
)
def test_a_symlink_that_leads_into_dot_github_needs_the_operator(
    files: list[dict[str, Any]],
) -> None:
    message = refusal(changeset(*files))
    assert "`.github`" in message and "operator" in message
    assert parse_changeset(changeset(*files), allow_workflows=True).files


def test_a_path_through_a_symlink_to_dot_github_is_refused_even_when_allowed() -> None:
    files = [written("gh", b".github", mode="120000"), written("gh/workflows/ci.yml")]
    assert "needs it to be a directory" in refusal(changeset(*files), allow_workflows=True)


def test_other_dot_github_lookalikes_are_fine() -> None:
    paths = (".githubx/a", "docs/.github/workflows/x.yml", "github/workflows/x.yml")
    assert parse_changeset(changeset(*(written(p) for p in paths))).paths == paths


@pytest.mark.parametrize(
    ("target", "path", "reason"),
    [
        (b"../../etc/passwd", "a/link", "points outside the repository"),
        (b"../x", "link", "points outside the repository"),
        (b"a/../../../x", "d/link", "points outside the repository"),
        (b"/etc/passwd", "link", "points to an absolute path"),
        (b"C:/x", "link", "points to an absolute path"),
        (b"../.git/config", "d/link", "points into .git"),
        (b"", "link", "empty target"),
        (b"a\x00b", "link", "NUL byte or backslash"),
        (b"..\\..\\x", "link", "NUL byte or backslash"),
        (b"real", ".gitmodules", "may not be a symlink"),
    ],
)
def test_symlinks_must_stay_inside_the_repository(target: bytes, path: str, reason: str) -> None:
    assert reason in refusal(changeset(written(path, target, mode="120000")))


def test_symlink_up_and_back_down_inside_the_repo_is_fine() -> None:
    cs = parse_changeset(changeset(written("a/b/link", b"../../c/./d", mode="120000")))
    assert cs.files[0].content == b"../../c/./d"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ([], "not a JSON object"),
        ({"files": [written("a")]}, "base_sha"),
        (changeset(written("a"), base_sha="abc"), "base_sha"),
        (changeset(written("a"), base_sha="g" * 40), "base_sha"),
        (changeset(written("a"), message=5), "commit message is not text"),
        (changeset(written("a"), message="x" * (64 * 1024 + 1)), "longer than 65536 bytes"),
        (changeset(written("a"), message="a\x00b"), "NUL"),
        (changeset(), "changes no files"),
        ({"base_sha": SHA, "files": "a"}, "not a list"),
        ({"base_sha": SHA, "files": ["a"]}, "file entry 1 is not an object"),
        (changeset({"mode": "100644", "content_b64": ""}), "file entry 1 has no path"),
        (changeset({"path": 5}), "file entry 1 has no path"),
        (changeset(written("a"), {"path": ""}), "file entry 2 has no path"),
        (changeset(written("a", mode="100666")), "invalid mode"),
        (changeset(written("a", mode="040000")), "invalid mode"),
        (changeset({"path": "a", "content_b64": ""}), "invalid mode"),
        (changeset({"path": "a", "mode": "100644"}), "no content_b64"),
        (changeset({"path": "a", "mode": "100644", "content_b64": "aGk"}), "not valid base64"),
        (changeset({"path": "a", "mode": "100644", "content_b64": "a$Gk="}), "not valid base64"),
        (changeset({"path": "a", "mode": "100644", "content_b64": "é"}), "not valid base64"),
        (changeset({"path": "a", "deleted": True, "content_b64": ""}), "marked deleted"),
        (changeset({"path": "a", "deleted": "yes"}), "not true or false"),
        (changeset({**written("a"), "content": "hi"}), "unexpected field `content`"),
        (changeset(written("a"), written("b"), written("a")), "`a` appears more than once"),
        (changeset(written("a"), written("a/b")), "`a` is written as a file but `a/b`"),
    ],
)
def test_malformed_changesets_are_refused_with_a_reason(data: object, reason: str) -> None:
    assert reason in refusal(data)


def test_size_cap_counts_decoded_bytes_across_files() -> None:
    data = changeset(written("a", b"x" * 600), written("b", b"y" * 500))
    message = refusal(data, max_bytes=1000)
    assert "too large" in message and "1000 bytes" in message and "`b`" in message
    assert parse_changeset(data, max_bytes=1100).added_bytes == 1100
    assert "10 MiB" in refusal(changeset(written("big", b"z" * (10 * 2**20 + 1))))


def test_file_count_cap() -> None:
    data = changeset(*(written(f"f{i}") for i in range(4)))
    assert "4 files; the limit is 3" in refusal(data, max_files=3)
    assert len(parse_changeset(data, max_files=4).files) == 4


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)
file_keys = st.sampled_from(["path", "mode", "content_b64", "deleted"])
file_values = st.one_of(
    json_values,
    st.sampled_from(["100644", "100755", "120000", "aGk=", "", "a/b", "../x", ".git/x"]),
    st.booleans(),
)
changeset_like = st.fixed_dictionaries(
    {"base_sha": st.sampled_from([SHA, "x", 5]), "message": json_values},
    optional={"files": st.lists(st.dictionaries(file_keys, file_values) | json_values, max_size=5)},
)


@settings(max_examples=300)
@given(data=json_values | changeset_like)
def test_arbitrary_json_never_raises_anything_but_changeset_error(data: object) -> None:
    try:
        parse_changeset(data)
    except ChangesetError as error:
        assert "\n" not in error.message


SPECIAL_NAMES = {
    ".git",
    "git~1",
    ".github",
    ".gitmodules",
    ".gitattributes",
    ".gitignore",
    ".mailmap",
}
segment = st.text(
    alphabet=st.characters(
        codec="utf-8", categories=["L", "N"], include_characters="-_.", exclude_characters="/"
    ),
    min_size=1,
    max_size=8,
).filter(lambda s: s.strip(".") and s.lower().rstrip(" .") not in SPECIAL_NAMES)
paths = st.lists(segment, min_size=1, max_size=3).map("/".join)
file_changes = st.builds(
    lambda path, kind, content: (
        FileChange(path, None, None)
        if kind == "deleted"
        else FileChange(path, kind, b"target" if kind == "120000" else content)
    ),
    paths,
    st.sampled_from(["deleted", "100644", "100755", "120000"]),
    st.binary(max_size=64),
)


@given(
    files=st.lists(file_changes, min_size=1, max_size=6, unique_by=lambda f: f.path),
    message=st.text(min_size=1).filter(lambda m: m.strip() and "\x00" not in m),
    base_sha=st.sampled_from([SHA, "f" * 64]),
)
def test_round_trip(files: list[FileChange], message: str, base_sha: str) -> None:
    written_paths = {f.path for f in files if not f.deleted}
    # Skip the one shape that is refused by design: a file that is also another file's directory.
    for path in written_paths:
        parts = path.split("/")
        if any("/".join(parts[:end]) in written_paths for end in range(1, len(parts))):
            return
    cs = Changeset(base_sha=base_sha, message=message, files=tuple(files))
    assert parse_changeset(changeset_to_json(cs)) == cs
