"""Real git repositories for tests: a hermetic git and a bare origin built from files."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

GIT_ENV = {
    "PATH": os.environ.get("PATH", os.defpath),
    "HOME": "/nonexistent",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def bare_origin(tmp_path: Path, files: Mapping[str, bytes | tuple[bytes, int]]
                ) -> tuple[Path, str]:
    """A bare repository with one commit of `files` (content, or content and mode)."""
    src = tmp_path / "src"
    for name, spec in files.items():
        data, mode = spec if isinstance(spec, tuple) else (spec, 0o644)
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)
    git("init", "-q", "-b", "main", cwd=src)
    git("add", "-A", cwd=src)
    git("commit", "-q", "-m", "initial", cwd=src)
    bare = tmp_path / "hello.git"
    git("clone", "-q", "--bare", str(src), str(bare), cwd=tmp_path)
    return bare, git("rev-parse", "HEAD", cwd=src)
