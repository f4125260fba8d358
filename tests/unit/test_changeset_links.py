"""Symlinks in a changeset are resolved through each other, as a checkout would resolve them."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from porter.changesets import parse_changeset
from porter.errors import ChangesetError
from tests.fakes.changesets import changeset, refusal, written


def link(path: str, target: str | bytes) -> dict[str, Any]:
    return written(path, target.encode() if isinstance(target, str) else target, mode="120000")


@pytest.mark.parametrize(
    "files",
    [
        # The reviewer's example: "up" leads to the root, so "up/.." is the root's parent.
        [link("a/b/c/d/up", "../../../.."), link("esc", "a/b/c/d/up/../etc/passwd")],
        [link("esc", "a/b/c/d/up/../etc/passwd"), link("a/b/c/d/up", "../../../..")],
        # "lib" was a directory; the changeset turns it into a link to the root.
        [{"path": "lib/a.py", "deleted": True}, link("lib", "."), link("x", "lib/../etc")],
        # Links through links through links, each one harmless on its own.
        [link("deep/er/l3", "../.."), link("l2", "deep/er/l3"), link("l1", "l2/../x")],
        [link("l3", "."), link("m/l2", "../l3"), link("m/n/l1", "../l2/../../x")],
        # The last component is followed too.
        [link("a/b/top", "../.."), link("a/b/c/up", "../top"), link("x", "a/b/c/up/..")],
    ],
)
def test_a_chain_of_links_that_leaves_the_repository_is_refused(
    files: list[dict[str, Any]],
) -> None:
    assert "points outside the repository" in refusal(changeset(*files))


@pytest.mark.parametrize(
    "files",
    [
        [link("a", "b"), link("b", "a")],
        [link("a", "a/x")],
        [link("d/a", "../e/b/.."), link("e/b", "../d/a/y")],
    ],
)
def test_a_loop_of_links_is_refused(files: list[dict[str, Any]]) -> None:
    assert "loop" in refusal(changeset(*files))


def test_links_are_also_followed_as_a_case_insensitive_checkout_would() -> None:
    # On macOS or Windows "up" is the link "Up", so "up/.." is the root's parent.
    files = [link("a/b/c/d/Up", "../../../.."), link("esc", "a/b/c/d/up/../etc/passwd")]
    assert "points outside the repository" in refusal(changeset(*files))
    files = [link("a/B", ".."), link("x", "a/b/.github/workflows")]
    assert "`.github`" in refusal(changeset(*files))


def test_links_that_are_one_file_where_case_is_ignored_are_refused() -> None:
    message = refusal(changeset(link("docs", "a"), link("Docs", "b")))
    assert "where case is ignored" in message
    message = refusal(changeset(link("Up", "a"), link("up/x", "b")))
    assert "where case is ignored" in message


def test_a_chain_longer_than_a_checkout_follows_is_refused() -> None:
    chain = [link(f"l{i}", f"l{i + 1}") for i in range(41)] + [written("l41")]
    assert "too many symlinks" in refusal(changeset(*chain))
    assert parse_changeset(changeset(*chain[-39:]))


def test_chains_that_stay_inside_are_fine() -> None:
    cs = parse_changeset(changeset(
        link("docs/current", "v2"),
        written("docs/v2/README.md"),
        link("latest", "docs/current/../README.md"),
        link("a/b/top", "../.."),
        link("a/b/c/up", "../top"),
        link("readme", "a/b/c/up/docs/current/README.md"),
        link("self", "."),
    ))
    assert len(cs.files) == 7


def test_a_link_that_lexically_leaves_is_refused_even_if_it_resolves_inside() -> None:
    # Physically "d/../../y" is "a/y", but a tool that normalises paths would leave the tree.
    message = refusal(changeset(link("d", "a/b/c"), link("x", "d/../../y")))
    assert "points outside the repository" in message


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        (b"caf\xe9", "not valid UTF-8"),
        (b"a/" * 2049, "longer than 4096 bytes"),
    ],
)
def test_link_targets_must_be_short_utf8(target: bytes, reason: str) -> None:
    assert reason in refusal(changeset(link("x", target)))


def test_a_file_cannot_be_written_through_a_link_in_the_changeset() -> None:
    message = refusal(changeset(link("dir", "elsewhere"), written("dir/x")))
    assert "`dir` is written as a symlink but `dir/x` needs it to be a directory" in message


# -- materialised on a real filesystem ------------------------------------------------------

names = st.sampled_from(["a", "b", "c", ".github"])
link_paths = st.lists(names, min_size=1, max_size=3).map("/".join)
link_targets = st.lists(st.sampled_from(["..", "..", ".", "a", "b", "c", ".github", ""]),
                        min_size=1, max_size=6).map("/".join).filter(bool)


def materialise(root: Path, links: dict[str, str]) -> None:
    for path, target in links.items():
        place = root / path
        place.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, place)


@settings(max_examples=400, deadline=None)
@given(links=st.dictionaries(link_paths, link_targets, min_size=1, max_size=6))
def test_accepted_links_never_resolve_outside_on_a_real_filesystem(links: dict[str, str]) -> None:
    try:
        parse_changeset(changeset(*(link(p, t) for p, t in links.items())))
    except ChangesetError:
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(os.path.realpath(tmp)) / "repo"
        root.mkdir()
        materialise(root, links)
        for path in links:
            resolved = os.path.realpath(root / path)
            assert resolved == str(root) or resolved.startswith(f"{root}/"), (path, resolved)
            inside = os.path.relpath(resolved, root).split("/")
            assert inside[0] != ".github", (path, resolved)
