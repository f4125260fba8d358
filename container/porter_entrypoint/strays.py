"""What the agent left outside its change, set aside before `verify` runs.

Verification must judge the change Porter publishes, not the agent's sandbox. The agent could
otherwise pass it with files no pull request shows: a `conftest.py` hidden from the changeset by
`.git/info/exclude` or `.gitignore`, a `usercustomize.py` in its home directory, a shim in the
run's tmp. So the checkout, the home directory and tmp are listed once setup has run (before
the agent starts), and before `verify` every file that appeared since and is not part of the
change is deleted. What setup made stays (a virtualenv, node_modules); `.git` is not touched.

The walk is from the host side, without following symlinks, while nothing of the agent runs
any more (its whole process group is gone once it exits).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping

Listing = frozenset[str]  # paths relative to their root, of every non-directory entry


def listing(root: str, *, skip_git: bool = False) -> Listing:
    """Every file and symlink under `root` (relative paths); `.git` left out when asked."""
    found: list[str] = []
    for directory, dirs, files in os.walk(root, followlinks=False):
        relative = os.path.relpath(directory, root)
        if skip_git and relative == ".":
            dirs[:] = [d for d in dirs if d != ".git"]
        # A symlink to a directory is listed by os.walk among the directories: it is an entry
        # like a file, not a tree to enter.
        links = [d for d in dirs if os.path.islink(os.path.join(directory, d))]
        dirs[:] = [d for d in dirs if d not in links]
        for name in (*files, *links):
            found.append(name if relative == "." else os.path.join(relative, name))
    return frozenset(found)


def set_aside(roots: Mapping[str, Listing], *, keep: Collection[str] = (),
              checkout: str | None = None) -> list[str]:
    """Delete what appeared under each root since its listing, except `keep` (the change's
    paths, relative to `checkout`); the deleted paths, for the transcript."""
    gone: list[str] = []
    for root, before in roots.items():
        kept = frozenset(keep) if root == checkout else frozenset()
        now = listing(root, skip_git=root == checkout)
        for path in sorted(now - before - kept):
            try:
                os.unlink(os.path.join(root, path))
            except OSError:
                continue
            gone.append(os.path.join(root, path))
    return gone
