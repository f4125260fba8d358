"""Secrets at rest: AES-256-GCM under a key ring, bound to the user and the secret's name.

A sealed value is the compact token ``v1.<kid>.<urlsafe-b64(nonce || ciphertext)>``. The key id
travels in the token so old rows still open after a new key is put first in ``PORTER_SECRET_KEYS``;
the user id and the secret name are associated data, so a value copied to another user's row, or to
another name, fails to open instead of silently becoming that user's key (docs/design.md
"Settings and secrets").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import struct
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from porter.errors import ConfigError, CryptoError
from porter.settings import Secret

__all__ = ["KeyRing", "Secret", "last4", "needs_rotation", "open_sealed", "seal"]

KEY_BYTES = 32
NONCE_BYTES = 12
_TAG_BYTES = 16
_VERSION = "v1"
_SETTING = "PORTER_SECRET_KEYS"
# Key ids appear inside tokens separated by "." and in the setting separated by ":" and ",", so
# they are restricted to characters that can never be confused with any of those.
_KID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_B64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")
# Not of the form of `derive`'s messages ("porter subkey\0..."), so a fingerprint, which is
# stored in the database, is never one of the subkeys.
_FINGERPRINT_LABEL = b"porter key fingerprint"


def last4(secret: str | Secret) -> str:
    """What the UI may show of a secret: its last four characters, or nothing if it is short."""
    value = secret.get() if isinstance(secret, Secret) else secret
    # Four characters of a seven-character secret is more than half of it.
    return f"…{value[-4:]}" if len(value) >= 8 else "…"


class KeyRing:
    """Named AES-256 keys, newest first: the first seals, every one opens."""

    __slots__ = ("_keys",)

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise ConfigError(f"{_SETTING} holds no keys")
        seen: set[str] = set()
        for position, (kid, key) in enumerate(keys, start=1):
            if not _KID.fullmatch(kid):
                # Not quoted: a kid that fails here may well be a key pasted in the wrong place.
                raise _entry_error(position, "the key id must be 1-64 letters, digits, '-' or '_'")
            if kid in seen:
                raise _entry_error(position, f"key id {kid!r} is used twice")
            if len(key) != KEY_BYTES:
                raise _entry_error(position, f"the key must be {KEY_BYTES} bytes, not {len(key)}")
            seen.add(kid)
        self._keys: dict[str, bytes] = dict(keys)

    @classmethod
    def parse(cls, text: str) -> KeyRing:
        """Parse ``kid:base64key,kid:base64key`` (newest first). Errors never quote key material."""
        if not text.strip():
            raise ConfigError(f"{_SETTING} is empty; expected kid:base64key[,kid:base64key…]")
        keys: list[tuple[str, bytes]] = []
        for position, entry in enumerate(text.split(","), start=1):
            kid, colon, encoded = entry.strip().partition(":")
            if not colon:
                raise ConfigError(f"{_SETTING} entry {position} is not of the form kid:base64key")
            keys.append((kid.strip(), _decode_key(encoded.strip(), position)))
        return cls(keys)

    @classmethod
    def generate(cls, kid: str | None = None) -> KeyRing:
        """A ring of one fresh random key, for the key file written on first start."""
        return cls([(kid or f"k{secrets.token_hex(4)}", AESGCM.generate_key(bit_length=256))])

    def rotate(self, kid: str | None = None) -> KeyRing:
        """This ring with a fresh key in front; older keys stay so existing tokens still open."""
        fresh = KeyRing.generate(kid)
        return KeyRing([*fresh._keys.items(), *self._keys.items()])

    def serialize(self) -> str:
        """The ``PORTER_SECRET_KEYS`` text for this ring; ``parse(serialize())`` gives it back."""
        return ",".join(f"{kid}:{_b64(key)}" for kid, key in self._keys.items())

    @property
    def current_kid(self) -> str:
        return next(iter(self._keys))

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._keys)

    def derive(self, purpose: str) -> bytes:
        """A subkey of the current key for one purpose, so no key serves two."""
        key = self._key(self.current_kid)
        assert key is not None
        return hmac.new(key, b"porter subkey\0" + purpose.encode(), hashlib.sha256).digest()

    def fingerprints(self) -> dict[str, str]:
        """Per key id, a value that tells two keys apart without revealing either: the HMAC of
        a fixed label, which no subkey of `derive` uses, under that key (porter/key_check.py)."""
        return {kid: hmac.new(key, _FINGERPRINT_LABEL, hashlib.sha256).hexdigest()
                for kid, key in self._keys.items()}

    def _key(self, kid: str) -> bytes | None:
        return self._keys.get(kid)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyRing):
            return NotImplemented
        return list(self._keys.items()) == list(other._keys.items())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"KeyRing(kids={list(self._keys)!r})"


def _entry_error(position: int, reason: str) -> ConfigError:
    return ConfigError(f"{_SETTING} entry {position}: {reason}")


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def _decode_key(encoded: str, position: int) -> bytes:
    # Accept standard or URL-safe alphabet, padded or not: keys are pasted from many tools.
    compact = encoded.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise _entry_error(position, "the key is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise _entry_error(position, f"the key must be {KEY_BYTES} bytes, not {len(key)}")
    return key


def _associated_data(user_id: str, name: str) -> bytes:
    # Length-prefixed so that ("ab", "c") and ("a", "bc") bind differently.
    parts = [_VERSION.encode(), user_id.encode(), name.encode()]
    return b"".join(struct.pack(">I", len(part)) + part for part in parts)


def seal(ring: KeyRing, plaintext: str, *, user_id: str, name: str) -> str:
    """Encrypt ``plaintext`` for ``user_id``'s secret ``name`` under the ring's current key."""
    kid = ring.current_kid
    key = ring._key(kid)
    assert key is not None
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), _associated_data(user_id, name))
    body = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
    return f"{_VERSION}.{kid}.{body}"


def _split(token: str) -> tuple[str, bytes]:
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != _VERSION:
        raise CryptoError("sealed secret is malformed or of an unknown version")
    _, kid, body = parts
    if not _KID.fullmatch(kid) or not _B64URL.fullmatch(body):
        raise CryptoError("sealed secret is malformed")
    body = body.rstrip("=")
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise CryptoError("sealed secret is malformed") from None
    if len(raw) < NONCE_BYTES + _TAG_BYTES:
        raise CryptoError("sealed secret is truncated")
    return kid, raw


def open_sealed(ring: KeyRing, token: str, *, user_id: str, name: str) -> str:
    """Decrypt a token from :func:`seal`; any mismatch raises :class:`CryptoError`."""
    kid, raw = _split(token)
    key = ring._key(kid)
    if key is None:
        raise CryptoError(f"sealed secret uses key id {kid!r}, which is not in {_SETTING}")
    try:
        plain = AESGCM(key).decrypt(
            raw[:NONCE_BYTES], raw[NONCE_BYTES:], _associated_data(user_id, name)
        )
    except InvalidTag:
        raise CryptoError(
            "sealed secret failed to authenticate: it was altered, or belongs to another user, "
            "another secret name or another key"
        ) from None
    try:
        return plain.decode()
    except UnicodeDecodeError:
        raise CryptoError("sealed secret is not text") from None


def needs_rotation(ring: KeyRing, token: str) -> bool:
    """True if ``token`` was sealed under an older key, so the store should re-seal it."""
    kid, _ = _split(token)
    return kid != ring.current_kid
