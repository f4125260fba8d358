"""The keys and Fly account a task runs with, opened from the vault when they are needed.

`choose` decides once per attempt, at launch, before any machine starts (porter/keys.py says
whose); the task records only the answer ("requester" or "operator"). The spec and the stop and
destroy jobs later open the same person's secrets again, so a plaintext key lives in memory only
for the call that uses it and is never written anywhere but the machine's spec.

The requester is matched by GitHub user id (tasks.requester_id), never by login, which can be
renamed and then taken by someone else.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from porter.agents import Registry
from porter.errors import ConfigError, Conflict, CryptoError
from porter.keys import (
    FLY_TOKEN,
    REQUESTER,
    NoKeys,
    choose_fly,
    choose_keys,
    pick,
    requester_names,
)
from porter.models import Task
from porter.settings import Settings
from porter.store import Store
from porter.vault import Vault


@dataclass(frozen=True)
class Choice:
    key_source: str
    fly_source: str | None  # None: the runner is not Fly


@dataclass(frozen=True)
class Refusal:
    reason: str


class Credentials:
    def __init__(self, *, store: Store, vault: Vault, settings: Settings,
                 registry: Registry) -> None:
        self._store = store
        self._vault = vault
        self._settings = settings
        self._registry = registry

    @property
    def settings_url(self) -> str:
        return f"{self._settings.public_url.rstrip('/')}/settings"

    def operator_keys(self) -> dict[str, str]:
        return {name: secret.get() for name, secret in self._settings.agent_secrets.items()}

    async def choose(self, task: Task, *, runner: str) -> Choice | Refusal:
        """Whose keys and Fly account this attempt uses, or why it cannot start."""
        agent = self._registry.get(task.agent)
        if agent is None:
            return Refusal(f"agent {task.agent} is not configured on this server")
        user = await self._store.get_user(task.requester_id) \
            if task.requester_id is not None else None
        opened: dict[str, str] = {}
        if user is not None:
            names = requester_names(agent.key_names)
            if runner == "fly" and user.fly_app:
                names += (FLY_TOKEN,)
            try:
                opened = await self._vault.open(user.id, names)
            except CryptoError:
                return Refusal(self._unreadable())
        keys = choose_keys(agent.name, agent.key_names, requester=opened,
                           operator=self.operator_keys(), settings_url=self.settings_url)
        if isinstance(keys, NoKeys):
            return Refusal(keys.reason)
        fly = choose_fly(runner, token=opened.get(FLY_TOKEN),
                         app=user.fly_app if user is not None else None)
        return Choice(keys.source, fly)

    async def agent_keys(self, task: Task) -> dict[str, str]:
        """The keys for the task's spec, from whoever `choose` picked: never the other side's,
        even when the requester's key has gone since (Conflict: the run cannot start)."""
        agent = self._registry.get(task.agent)
        if agent is None:
            raise Conflict(f"agent {task.agent} is not configured on this server")
        if task.key_source != REQUESTER:
            return pick(agent.key_names, self.operator_keys())
        if task.requester_id is None:
            raise Conflict("the task has no requester id to find their keys by")
        try:
            opened = await self._vault.open(task.requester_id, requester_names(agent.key_names))
        except CryptoError:
            raise Conflict(self._unreadable()) from None
        keys = pick(requester_names(agent.key_names), opened)
        if not keys:
            raise Conflict(f"@{task.requester} removed their API key for {agent.name} after "
                           f"the task started; add one at {self.settings_url} and retry")
        return keys

    async def known(self, task: Task) -> list[str]:
        """Every key value this task's output must be scrubbed of (best effort: what opens)."""
        values = list(self.operator_keys().values())
        if task.key_source == REQUESTER and task.requester_id is not None:
            agent = self._registry.get(task.agent)
            names = requester_names(agent.key_names) if agent else ()
            # One that fails to open never reached a spec, so the run never had it either.
            with contextlib.suppress(CryptoError):
                values += (await self._vault.open(task.requester_id, names)).values()
        return values

    async def fly(self, user_id: int) -> tuple[str, str]:
        """A user's Fly token and app, for the runner that starts, stops and destroys their
        machines."""
        user = await self._store.get_user(user_id)
        token = (await self._vault.open(user_id, (FLY_TOKEN,))).get(FLY_TOKEN) \
            if user is not None else None
        if user is None or not token or not user.fly_app:
            raise ConfigError(f"user {user_id} no longer has a Fly token and app in Porter")
        return token, user.fly_app

    def _unreadable(self) -> str:
        # Never "someone else's key instead": a row that fails to open stops the run.
        return ("the keys the requester saved in Porter could not be opened (altered, or "
                f"sealed under a key Porter no longer has): save them again at "
                f"{self.settings_url}")
