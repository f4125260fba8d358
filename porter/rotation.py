"""`porter rotate-keys`: every sealed secret re-sealed under the newest key of the ring.

The ring is loaded exactly as the server loads it (porter/runtime.py `load_keyring`):
`PORTER_SECRET_KEYS`, newest first, or the generated key file beside the database. A new key
goes first in either; for the key file `--new-key` does it, writing the file atomically (a
crash leaves the old file or the new one, never half of one) and keeping the older keys, so
every existing row still opens. Each row is then its own compare-and-set (porter/vault.py), so an
interrupted run leaves every row readable, under the old key or the new, and running it again
finishes the rest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from porter.crypto import KeyRing, needs_rotation, open_sealed
from porter.errors import ConfigError, CryptoError
from porter.runtime import load_keyring
from porter.settings import Settings
from porter.store import Store
from porter.vault import Vault


@dataclass(frozen=True)
class Rotation:
    kid: str  # the key everything is now sealed under
    added: bool  # whether this run put a new key in the key file
    resealed: int
    current: int  # rows already under the newest key, or left so by a concurrent write
    behind: int  # rows still under an older key (a concurrent change); run again
    failed: list[str] = field(default_factory=list)  # rows that did not open: which, and why

    @property
    def complete(self) -> bool:
        return not self.failed and not self.behind


def add_key(settings: Settings) -> KeyRing:
    """The ring with a fresh key in front, written to the key file. Refused when the ring comes
    from PORTER_SECRET_KEYS: that setting is the operator's to edit, not Porter's."""
    if settings.secret_keys is not None:
        raise ConfigError(
            "PORTER_SECRET_KEYS is set: put a new kid:base64key entry first in it (keep the "
            "older ones after it), restart Porter, then run porter rotate-keys without "
            "--new-key (docs/operator.md)")
    ring = load_keyring(settings).rotate()
    write_atomically(settings.keys_file, ring.serialize() + "\n")
    return ring


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text`, readable by Porter's user only, in one rename."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)


async def rotate_keys(settings: Settings, *, new_key: bool = False,
                      store: Store | None = None) -> Rotation:
    opened = store or await Store.open(settings.store_location)
    try:
        # A ring that is not the database's is refused before anything changes
        # (porter/key_check.py); the rotated ring's new key joins the database's, so a
        # replica restarted with the rotated ring starts.
        ring = load_keyring(settings)
        await opened.record_key_ring(ring.fingerprints())
        if new_key:
            ring = add_key(settings)
            await opened.record_key_ring(ring.fingerprints())
        resealed, failed = await Vault(ring, opened).rotate()
        current = behind = 0
        for user_id, name, sealed in await opened.all_sealed():
            try:
                open_sealed(ring, sealed, user_id=str(user_id), name=name)
            except CryptoError:
                continue  # in `failed` already
            if needs_rotation(ring, sealed):
                behind += 1
            else:
                current += 1
        current -= resealed
        result = Rotation(ring.current_kid, new_key, resealed, current, behind, failed)
        await opened.audit(actor="cli", actor_id=None, action="key.rotate", source="cli",
                           target=ring.current_kid,
                           detail={"kid": ring.current_kid, "added": new_key,
                                   "resealed": resealed, "failed": len(failed),
                                   "behind": behind})
        return result
    finally:
        if store is None:
            await opened.close()


def report(rotation: Rotation) -> list[str]:
    lines = []
    if rotation.added:
        lines.append(f"added key {rotation.kid} to the key file; restart Porter so it seals "
                     "new secrets with it")
    lines.append(f"re-sealed {rotation.resealed} secret(s) under key {rotation.kid}; "
                 f"{rotation.current} already were")
    if rotation.behind:
        lines.append(f"{rotation.behind} secret(s) changed meanwhile and are still under an "
                     "older key: run porter rotate-keys again")
    for failure in rotation.failed:
        lines.append(f"could not open {failure}")
    return lines
