"""Who may spend: the live collaborator permission, never `author_association`
(docs/platform-notes.md §B.5), narrowed by the operator's allowlist. Checked before any secret is
opened or machine started.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from porter.github import GitHubApp

RANK = {"none": 0, "read": 1, "triage": 2, "write": 3, "maintain": 4, "admin": 5}
CACHE_SECONDS = 60.0


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""
    permission: str | None = None


def on_allowlist(repo: str, allowlist: Sequence[str]) -> bool:
    """Empty allows every repository; entries are owners (`octo`) or repos (`octo/hello`)."""
    if not allowlist:
        return True
    repo = repo.lower()
    owner = repo.split("/", 1)[0]
    return any(entry in (repo, owner) for entry in allowlist)


def permits(permission: str, minimum: str) -> bool:
    return RANK.get(permission, 0) >= RANK[minimum]


class Authorizer:
    def __init__(
        self,
        github: GitHubApp,
        *,
        min_permission: str,
        allowlist: Sequence[str],
        clock: Callable[[], float] = time.monotonic,
        ttl: float = CACHE_SECONDS,
    ) -> None:
        self._github = github
        self._min = min_permission
        self._allowlist = tuple(allowlist)
        self._clock = clock
        self._ttl = ttl
        self._cache: dict[tuple[int, str, str], tuple[float, str]] = {}

    async def check(self, *, repo: str, installation_id: int | None, login: str) -> Verdict:
        if not on_allowlist(repo, self._allowlist):
            return Verdict(False, f"Porter is not enabled for {repo} on this server.")
        if installation_id is None:
            return Verdict(False, "the delivery named no GitHub App installation.")
        permission = await self._permission(installation_id, repo, login)
        if not permits(permission, self._min):
            return Verdict(
                False,
                f"@{login} needs {self._min} access to {repo} to use Porter "
                f"(GitHub reports {permission}).",
                permission,
            )
        return Verdict(True, permission=permission)

    async def _permission(self, installation_id: int, repo: str, login: str) -> str:
        key = (installation_id, repo.lower(), login.lower())
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        permission = await self._github.installation(installation_id).permission(repo, login)
        self._cache[key] = (now + self._ttl, permission)
        return permission
