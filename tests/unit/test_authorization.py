"""Who may spend: the allowlist and the permission ladder, as tables."""

from __future__ import annotations

import pytest

from porter.authorization import RANK, on_allowlist, permits

LADDER = ["none", "read", "triage", "write", "maintain", "admin"]


@pytest.mark.parametrize(("repo", "allowlist", "allowed"), [
    ("octo/hello", (), True),  # no allowlist: every repository the App is installed on
    ("octo/hello", ("octo",), True),
    ("octo/hello", ("octo/hello",), True),
    ("Octo/Hello", ("octo/hello",), True),  # GitHub names are case-insensitive
    ("Octo/Hello", ("octo",), True),
    ("octo/hello", ("someone", "octo/hello"), True),
    ("octo/hello", ("octo/other",), False),
    ("octo/hello", ("octo/hello-world",), False),
    ("octo/hello-world", ("octo/hello",), False),
    ("octo/hello", ("oct",), False),  # an owner is matched whole, not as a prefix
    ("octo/hello", ("octo/hel",), False),
    ("octo/hello", ("hello",), False),  # a bare repository name is an owner, not a repo
    ("octocat/hello", ("octo",), False),
    ("hello/world", ("hello",), True),
])
def test_on_allowlist(repo: str, allowlist: tuple[str, ...], allowed: bool) -> None:
    assert on_allowlist(repo, allowlist) is allowed


def test_the_ladder_is_ordered() -> None:
    assert sorted(RANK, key=RANK.__getitem__) == LADDER


@pytest.mark.parametrize("minimum", ["write", "maintain", "admin"])
@pytest.mark.parametrize("permission", LADDER)
def test_permits(permission: str, minimum: str) -> None:
    assert permits(permission, minimum) is (LADDER.index(permission) >= LADDER.index(minimum))


@pytest.mark.parametrize(("permission", "minimum", "allowed"), [
    ("write", "write", True),
    ("admin", "write", True),
    ("maintain", "write", True),
    ("triage", "write", False),
    ("read", "write", False),
    ("none", "write", False),
    ("write", "maintain", False),
    ("admin", "admin", True),
    ("maintain", "admin", False),
    ("", "write", False),  # whatever GitHub might answer that Porter does not know: no
    ("superuser", "write", False),
    ("WRITE", "write", False),
])
def test_permits_table(permission: str, minimum: str, allowed: bool) -> None:
    assert permits(permission, minimum) is allowed
