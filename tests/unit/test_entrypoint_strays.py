"""What the agent left outside its change, deleted before verify
(container/porter_entrypoint/strays.py), on real directories."""

from __future__ import annotations

import os
from pathlib import Path

from tests.fakes.entrypoint_module import load

strays = load("strays")


def make(root: Path, *paths: str) -> None:
    for path in paths:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(path)


def test_only_what_appeared_since_and_is_not_the_change_is_deleted(tmp_path: Path) -> None:
    checkout, home = tmp_path / "work", tmp_path / "home"
    make(checkout, "README.md", ".venv/lib/site.py", ".git/config")
    make(home, ".cache/pip/x")
    before = {str(checkout): strays.listing(str(checkout), skip_git=True),
              str(home): strays.listing(str(home))}
    assert ".git/config" not in before[str(checkout)]

    make(checkout, "src/new.py", "hidden_conftest.py", ".venv/lib/usercustomize.py",
         ".git/info/exclude")
    make(home, ".local/usercustomize.py")
    os.symlink("/etc", checkout / "escape")  # a link is deleted, never followed
    gone = strays.set_aside(before, keep=["src/new.py"], checkout=str(checkout))

    assert sorted(os.path.relpath(p, tmp_path) for p in gone) == [
        "home/.local/usercustomize.py", "work/.venv/lib/usercustomize.py", "work/escape",
        "work/hidden_conftest.py"]
    assert (checkout / "src/new.py").exists() and (checkout / ".venv/lib/site.py").exists()
    assert (checkout / ".git/info/exclude").exists()  # .git is git's, never walked
    assert (home / ".cache/pip/x").exists() and Path("/etc/passwd").exists()
