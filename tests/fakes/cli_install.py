"""The real agent CLIs, installed from their registries into a cache directory for tests.

Each CLI is installed with its registry's own client (npm for Claude Code, uv or pip for Aider)
into `<cache>/<name>/`, once: later runs, other pytest workers and CI on a warm cache reuse it.
The cache is $PORTER_TEST_CACHE, else $XDG_CACHE_HOME/porter-tests, else ~/.cache/porter-tests;
an install older than a week is redone (when the registry answers), so a new CLI release that
breaks Porter shows up within a week rather than never.

`require(install)` is what a test calls: the CLI, or a skip that says why when the registry
cannot be reached (or, off CI, when npm/uv is missing); any other failure fails the test, and
on CI (CI=1, set by .ci/run) a missing client fails it too.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

CLAUDE_PACKAGE = "@anthropic-ai/claude-code@2"
AIDER_PACKAGE = "aider-chat~=0.86"  # the 0.x line seen in docs/platform-notes.md §E.2
MAX_AGE_S = 7 * 24 * 3600
INSTALL_TIMEOUT_S = 600.0
PROBE_TIMEOUT_S = 5.0
MARKER = ".porter-installed.json"


@dataclass(frozen=True)
class InstalledCLI:
    name: str
    executable: Path  # absolute: the agent's PATH inside the sandbox is only the system's
    read_only: tuple[str, ...]  # host directories the sandbox must show for it to run
    version: str
    install_seconds: float  # 0.0: taken from the cache


class CLIUnavailable(Exception):
    """The CLI could not be installed; `reason` says why, `unreachable` if the registry is."""

    def __init__(self, reason: str, *, unreachable: bool = False, no_client: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.unreachable = unreachable
        self.no_client = no_client


def cache_root() -> Path:
    if explicit := os.environ.get("PORTER_TEST_CACHE"):
        return Path(explicit).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return (Path(base) / "porter-tests").resolve()


def require(install: Callable[[], InstalledCLI]) -> InstalledCLI:
    """The installed CLI, or the test skips (registry unreachable; client missing off CI) or
    fails (anything else) with the reason."""
    try:
        return install()
    except CLIUnavailable as exc:
        if exc.unreachable or (exc.no_client and not os.environ.get("CI")):
            pytest.skip(exc.reason)
        pytest.fail(exc.reason)


# -- Claude Code (npm) ---------------------------------------------------------------------------


def install_claude(cache: Path | None = None) -> InstalledCLI:
    """@anthropic-ai/claude-code from npm. Its package ships a native binary (per-platform
    optional dependency, copied over bin/claude.exe by its postinstall): no node at run time."""
    target = (cache or cache_root()) / "claude-code"

    def installed() -> InstalledCLI | None:
        executable = _claude_executable(target)
        if executable is None:
            return None
        version = _version([str(executable), "--version"])
        if version is None:
            return None
        return InstalledCLI("claude", executable, (str(target),), version, 0.0)

    def registry() -> str:
        return _npm_registry(_npm())

    def install() -> None:
        _run([_npm(), "install", "--prefix", str(target), "--no-audit", "--no-fund",
              "--no-save", "--no-package-lock", "--loglevel=error", CLAUDE_PACKAGE],
             what=f"npm install {CLAUDE_PACKAGE}", registry=registry(), cwd=target.parent)

    return _cached(target, installed, registry, install, "the npm registry")


def _npm() -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise CLIUnavailable("npm is not installed (apt-get install npm, or install Node.js): "
                             "the Claude Code tests install it with npm", no_client=True)
    return npm


def _claude_executable(target: Path) -> Path | None:
    """bin/claude.exe once the postinstall replaced its placeholder; else the platform
    package's binary itself (an npm that skipped install scripts leaves the placeholder)."""
    launcher = target / "node_modules" / ".bin" / "claude"
    candidates = [launcher.resolve()] if launcher.exists() else []
    candidates += sorted((target / "node_modules" / "@anthropic-ai").glob("claude-code-*/claude"))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK) and _is_native(path):
            return path
    return None


def _is_native(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(4) == b"\x7fELF"


def _npm_registry(npm: str) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([npm, "config", "get", "registry"], capture_output=True,
                             text=True, timeout=30, check=False).stdout.strip()
        if out.startswith(("http://", "https://")):
            return out
    return "https://registry.npmjs.org/"


# -- Aider (PyPI) --------------------------------------------------------------------------------


def install_aider(cache: Path | None = None) -> InstalledCLI:
    """aider-chat from PyPI in a virtualenv of its own, on this interpreter's Python."""
    target = (cache or cache_root()) / "aider"

    def installed() -> InstalledCLI | None:
        executable = target / "bin" / "aider"
        python = target / "bin" / "python"
        if not executable.exists() or not python.exists():
            return None
        version = _version([str(executable), "--version"])
        base = _version([str(python), "-c", "import sys; print(sys.base_prefix)"])
        if version is None or base is None:
            return None
        # The venv's python is a link to the base interpreter, whose stdlib it needs.
        return InstalledCLI("aider", executable, (str(target), str(Path(base).resolve())),
                            version, 0.0)

    def registry() -> str:
        return (os.environ.get("UV_DEFAULT_INDEX") or os.environ.get("UV_INDEX_URL")
                or os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple/")

    def install() -> None:
        index = registry()
        if (prefix := _uv()) is not None:
            _run([*prefix, "venv", "--quiet", "--python", sys.executable, str(target)],
                 what="uv venv", registry=index, cwd=target.parent)
            _run([*prefix, "pip", "install", "--quiet", "--python",
                  str(target / "bin" / "python"), AIDER_PACKAGE],
                 what=f"uv pip install {AIDER_PACKAGE}", registry=index, cwd=target.parent)
        else:
            _run([sys.executable, "-m", "venv", str(target)], what="python -m venv",
                 registry=index, cwd=target.parent)
            _run([str(target / "bin" / "python"), "-m", "pip", "install", "--quiet",
                  "--disable-pip-version-check", AIDER_PACKAGE],
                 what=f"pip install {AIDER_PACKAGE}", registry=index, cwd=target.parent)

    return _cached(target, installed, registry, install, "PyPI")


def _uv() -> list[str] | None:
    """How to run uv: on PATH, or as this interpreter's module; None: neither (pip then)."""
    if uv := shutil.which("uv"):
        return [uv]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        if subprocess.run([sys.executable, "-m", "uv", "--version"], capture_output=True,
                          timeout=30, check=False).returncode == 0:
            return [sys.executable, "-m", "uv"]
    return None


# -- the cache -----------------------------------------------------------------------------------


def _cached(target: Path, installed: Callable[[], InstalledCLI | None],
            registry: Callable[[], str], install: Callable[[], None],
            what: str) -> InstalledCLI:
    """The install in `target` if it works and is fresh, else a new one; one installer at a
    time per target (pytest workers, other checkouts sharing the cache)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.with_name(target.name + ".lock")):
        found = installed() if (target / MARKER).exists() else None
        if found is not None and _age(target) < MAX_AGE_S:
            return found
        try:
            _probe(registry(), what)
        except CLIUnavailable:
            if found is not None:
                return found  # stale but working beats none while the registry is away
            raise
        started = time.monotonic()
        shutil.rmtree(target, ignore_errors=True)
        install()
        fresh = installed()
        if fresh is None:
            raise CLIUnavailable(f"{target.name} installed into {target} but does not run "
                                 "(`--version` failed)")
        seconds = time.monotonic() - started
        (target / MARKER).write_text(json.dumps({"version": fresh.version, "at": time.time(),
                                                 "seconds": seconds}))
        return InstalledCLI(fresh.name, fresh.executable, fresh.read_only, fresh.version,
                            seconds)


def _age(target: Path) -> float:
    try:
        return time.time() - float(json.loads((target / MARKER).read_text())["at"])
    except (OSError, ValueError, KeyError, TypeError):
        return float("inf")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _probe(url: str, what: str) -> None:
    """Raise CLIUnavailable(unreachable) unless `url` answers at all within a few seconds."""
    if url.startswith("file:"):
        return
    try:
        httpx.head(url, timeout=PROBE_TIMEOUT_S, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise CLIUnavailable(f"{what} ({url}) cannot be reached: {exc or type(exc).__name__}",
                             unreachable=True) from None


def _run(argv: list[str], *, what: str, registry: str, cwd: Path) -> None:
    try:
        # Run from the cache, not this checkout: uv would otherwise read the project's config.
        done = subprocess.run(argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
                              stdin=subprocess.DEVNULL, check=False, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise CLIUnavailable(f"{what} took over {INSTALL_TIMEOUT_S:.0f} s") from None
    except OSError as exc:
        raise CLIUnavailable(f"{what} could not start: {exc}") from None
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        # The registry answered the probe a moment ago; if it no longer does, that is the cause.
        _probe(registry, "the registry")
        raise CLIUnavailable(f"{what} failed (exit {done.returncode}):\n{tail}")


def _version(argv: list[str]) -> str | None:
    """The last line `argv` prints, run with a throwaway HOME (CLIs write config there)."""
    with tempfile.TemporaryDirectory(prefix="porter-cli-version-") as home:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=60,
                                  stdin=subprocess.DEVNULL, check=False,
                                  env={"PATH": os.environ.get("PATH", ""), "HOME": home,
                                       "LANG": "C.UTF-8"})
        except (OSError, subprocess.SubprocessError):
            return None
    lines = done.stdout.strip().splitlines()
    return lines[-1].strip() if done.returncode == 0 and lines else None
