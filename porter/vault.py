"""Per-user secrets, sealed before they reach the store and opened only where they are used.

Every value is sealed with the key ring (porter/crypto.py) with the owner's id and the secret's
name as associated data, so a ciphertext moved to another user or name fails to open. Pages see
only `last4`.
"""

from __future__ import annotations

from collections.abc import Mapping

from porter.crypto import KeyRing, last4, needs_rotation, open_sealed, seal
from porter.errors import CryptoError
from porter.logs import remember_secret
from porter.store import Store
from porter.store.users import APP_OWNER


class Vault:
    def __init__(self, ring: KeyRing, store: Store) -> None:
        self._ring = ring
        self._store = store

    def sealed(self, user_id: int, values: Mapping[str, str]) -> dict[str, tuple[str, str]]:
        """name → (sealed, last4), for a store call that writes them with other rows."""
        return {name: (seal(self._ring, value, user_id=str(user_id), name=name), last4(value))
                for name, value in values.items()}

    async def put(self, user_id: int, values: Mapping[str, str | None]) -> None:
        """Seal and store each value; None removes that secret."""
        present = {name: value for name, value in values.items() if value is not None}
        removed = tuple(name for name, value in values.items() if value is None)
        await self._store.put_secrets(user_id, self.sealed(user_id, present), remove=removed)

    async def described(self, user_id: int) -> dict[str, str]:
        """name → what a page may show of it (its last four characters)."""
        return {name: shown for name, (_, shown) in
                (await self._store.sealed_secrets(user_id)).items()}

    async def open(self, user_id: int, names: tuple[str, ...] | None = None) -> dict[str, str]:
        """The plaintext of a user's secrets (those named, or all); a ciphertext that fails to
        open raises CryptoError rather than being skipped, so a tampered row is noticed."""
        found = await self._store.sealed_secrets(user_id)
        opened = {name: open_sealed(self._ring, sealed, user_id=str(user_id), name=name)
                  for name, (sealed, _) in found.items() if names is None or name in names}
        if user_id != APP_OWNER:  # the App's row holds its id and slug too: not secrets
            remember_secret(*opened.values())
        return opened

    async def rotate(self) -> tuple[int, list[str]]:
        """Re-seal every secret still under an older key. Each row is its own compare-and-set,
        so an interrupted run leaves every row readable and a second run finishes the rest.
        Returns how many were re-sealed and which rows could not be opened."""
        resealed, failed = 0, []
        for user_id, name, sealed in await self._store.all_sealed():
            try:
                if not needs_rotation(self._ring, sealed):
                    continue
                plain = open_sealed(self._ring, sealed, user_id=str(user_id), name=name)
            except CryptoError as exc:
                failed.append(f"user {user_id} {name}: {exc.message}")
                continue
            fresh = seal(self._ring, plain, user_id=str(user_id), name=name)
            if await self._store.replace_sealed(user_id, name, sealed, fresh):
                resealed += 1
        return resealed, failed
