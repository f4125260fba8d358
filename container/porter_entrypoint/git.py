"""The checkout: git with a minimal environment, and the clone at the base commit.

The read token goes to git as an `http.extraHeader` through `GIT_CONFIG_*` variables, so it is
never in argv, `.git/config` or a remote URL.
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Callable

from porter_entrypoint.processes import DEFAULT_PATH, TimedOut, run_interruptible
from porter_entrypoint.result import StageFailure
from porter_entrypoint.spec import Spec
from porter_entrypoint.streams import Transcript

GIT_IDENTITY = ("Porter Agent", "porter-agent@users.noreply.github.com")


def git_env(*, home: str, extra_config: dict[str, str] | None = None) -> dict[str, str]:
    """A minimal environment for git; config passed via GIT_CONFIG_* so it never hits argv."""
    env = {
        "PATH": os.environ.get("PATH") or DEFAULT_PATH,
        "HOME": home,
        "LANG": "C.UTF-8",
        "GIT_TERMINAL_PROMPT": "0",
        "GCM_INTERACTIVE": "never",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ALLOW_PROTOCOL": "http:https:file",
    }
    pairs = list((extra_config or {}).items())
    env["GIT_CONFIG_COUNT"] = str(len(pairs))
    for i, (key, value) in enumerate(pairs):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


def auth_header(token: str) -> dict[str, str]:
    if not token:
        return {}
    basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
    return {"http.extraHeader": f"Authorization: Basic {basic}"}


def clone_repo(
    spec: Spec,
    checkout: str,
    *,
    home: str,
    transcript: Transcript,
    interrupted: Callable[[], str | None],
    grace_s: float,
) -> None:
    """Clone at base_sha into `checkout`; the token lives only in the git child's environment."""
    authed = git_env(home=home, extra_config=auth_header(spec.clone_token))
    plain = git_env(home=home)

    def git(args: list[str], env: dict[str, str], what: str, cwd: str | None = checkout) -> None:
        try:
            result = run_interruptible(
                ["git", "-c", "core.hooksPath=/dev/null", *args],
                cwd=cwd,
                env=env,
                timeout_s=spec.limits.clone_timeout_s,
                interrupted=interrupted,
                grace_s=grace_s,
            )
        except TimedOut as exc:
            raise StageFailure("clone", f"git {what} {exc}") from exc
        if result.output.strip():
            transcript.note(f"git {what}: {result.output.strip()}")
        if result.returncode != 0:
            last = (result.output.strip().splitlines() or ["no output"])[-1]
            raise StageFailure("clone", f"git {what} failed: {last}")

    target = spec.repo or spec.clone_url
    transcript.note(f"cloning {target} at {spec.base_sha}")
    clone_args = ["clone", "--no-checkout", "--no-hardlinks", "--", spec.clone_url, checkout]
    git(clone_args, authed, "clone", cwd=os.path.dirname(checkout))
    if not _has_commit(checkout, spec.base_sha, plain):
        git(["fetch", "--quiet", "origin", spec.base_sha], authed, "fetch")
    git(
        ["-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", spec.base_sha],
        plain,
        "checkout",
    )
    for key, value in (("user.name", GIT_IDENTITY[0]), ("user.email", GIT_IDENTITY[1])):
        git(["config", key, value], plain, "config")


def _has_commit(checkout: str, sha: str, env: dict[str, str]) -> bool:
    probe = subprocess.run(
        ["git", "cat-file", "-e", f"{sha}^{{commit}}"],
        cwd=checkout,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    return probe.returncode == 0
