"""Which repositories a signed-in user reaches through the App's installations.

Asked of GitHub with the user's own token (`/user/installations` and their repositories), so a
user sees exactly what GitHub would show them; cached briefly per user, since every page and
live update asks. An expired user token is refreshed with the sealed refresh token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from porter.errors import CryptoError, GitHubError
from porter.github_user import GitHubUsers
from porter.models import User
from porter.store import Store
from porter.vault import Vault

log = logging.getLogger(__name__)

# Names of sealed secrets, not secrets.
ACCESS_TOKEN = "github_access_token"  # noqa: S105
REFRESH_TOKEN = "github_refresh_token"  # noqa: S105
CACHE_SECONDS = 60.0
FAILED_SECONDS = 10.0  # how long a failed lookup is remembered (GitHub timeouts are slow)
# Refresh a little early: a token that expires between check and use still fails.
EXPIRY_MARGIN = 60.0


@dataclass(frozen=True)
class Reach:
    """What GitHub says a user reaches, and why that may be short of the truth: "unreachable"
    (GitHub failed just now) or "expired" (the user's token is gone: they must sign in again).
    Pages say so, rather than look like an account with no tasks."""

    repos: dict[str, str]
    problem: str | None = None


class RepoAccess:
    def __init__(self, *, users: GitHubUsers | None, vault: Vault, store: Store,
                 clock: Callable[[], float] = time.time, ttl: float = CACHE_SECONDS) -> None:
        self._users = users
        self._vault = vault
        self._store = store
        self._clock = clock
        self._ttl = ttl
        self._cache: dict[int, tuple[float, Reach]] = {}
        # A refresh token works once: two requests refreshing at once would sign the user out.
        self._refreshing: dict[int, asyncio.Lock] = {}

    async def repositories(self, user: User) -> dict[str, str]:
        """full_name → permission; empty when GitHub cannot be asked (the user sees nothing
        rather than everything)."""
        return (await self.reach(user)).repos

    async def reach(self, user: User) -> Reach:
        now = self._clock()
        cached = self._cache.get(user.id)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            token = await self.token(user)
            if token is None:
                found = Reach({}, "expired")
            else:
                found = Reach(await self._users.repositories(token) if self._users else {})
        except GitHubError as exc:
            log.warning("could not list @%s's repositories: %s", user.login, exc.message)
            # The last list GitHub gave beats none; either way, the page says GitHub failed.
            found = Reach(cached[1].repos if cached else {}, "unreachable")
        # A failure is asked about again soon, not after the whole cache time.
        self._cache[user.id] = (now + (self._ttl if found.problem is None else FAILED_SECONDS),
                                found)
        return found

    def forget(self, user_id: int) -> None:
        self._cache.pop(user_id, None)

    async def token(self, user: User) -> str | None:
        """The user's GitHub token, refreshed when it has expired; None when they must sign in
        again; GitHubError when GitHub could not be asked for a fresh one."""
        async with self._refreshing.setdefault(user.id, asyncio.Lock()):
            current = await self._store.get_user(user.id)
            return await self._token(current) if current is not None else None

    async def _token(self, user: User) -> str | None:
        try:
            tokens = await self._vault.open(user.id, (ACCESS_TOKEN, REFRESH_TOKEN))
        except CryptoError as exc:
            log.warning("@%s's GitHub token does not open: %s", user.login, exc.message)
            return None
        access = tokens.get(ACCESS_TOKEN)
        expires = user.token_expires_at
        if access and (expires is None or expires - EXPIRY_MARGIN > self._clock()):
            return access
        refresh = tokens.get(REFRESH_TOKEN)
        if not refresh or self._users is None:
            return None
        try:
            fresh = await self._users.refresh(refresh)
        except GitHubError as exc:
            if exc.retryable:  # GitHub is down, not done with this user: not "sign in again"
                raise
            log.info("@%s's GitHub token could not be refreshed: %s", user.login, exc.message)
            return None
        await self._vault.put(user.id, {ACCESS_TOKEN: fresh.access,
                                        REFRESH_TOKEN: fresh.refresh or refresh})
        await self._store.update_user(user.id, token_expires_at=fresh.expires_at)
        return fresh.access
