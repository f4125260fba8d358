"""Signed values for cookies: `value.issued.mac`, HMAC-SHA256 under a key of their own.

The value is never secret here (a random session id, an OAuth state nonce); the signature only
proves Porter issued it, and when, so a forged or stale cookie is refused before any lookup.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

_SEPARATOR = "."
# Long enough for the OAuth state cookie, which also carries the page to return to (at most
# 512 bytes, base64-encoded); short enough that a huge forged cookie costs nothing.
MAX_TOKEN = 1024


def _mac(key: bytes, payload: str) -> str:
    digest = hmac.new(key, payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def sign(key: bytes, value: str, *, now: float) -> str:
    if _SEPARATOR in value:
        raise ValueError("a signed value may not contain '.'")
    payload = f"{value}{_SEPARATOR}{int(now)}"
    return f"{payload}{_SEPARATOR}{_mac(key, payload)}"


def unsign(key: bytes, token: str | None, *, now: float, max_age: float) -> str | None:
    """The value, if `token` carries Porter's signature and is younger than `max_age`."""
    if not token or len(token) > MAX_TOKEN:
        return None
    value, _, rest = token.partition(_SEPARATOR)
    issued, _, mac = rest.partition(_SEPARATOR)
    if not value or not (issued.isascii() and issued.isdigit()) or not mac:
        return None
    # Bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500), and a
    # cookie header is anyone's to fill.
    if not hmac.compare_digest(mac.encode(), _mac(key, f"{value}{_SEPARATOR}{issued}").encode()):
        return None
    if not 0 <= now - int(issued) <= max_age:
        return None
    return value


def digest(value: str) -> str:
    """What the database keeps of a session id: a leaked table opens no session."""
    return hashlib.sha256(value.encode()).hexdigest()


class Spent:
    """Nonces already used, kept until they would have expired anyway, so a signed one-time
    value (an OAuth state) works once even if its cookie is sent again: by a back button, or
    by whoever copied it. Bounded: past `limit`, the oldest are forgotten first."""

    def __init__(self, ttl: float, limit: int = 10_000) -> None:
        self._ttl = ttl
        self._limit = limit
        self._until: dict[str, float] = {}

    def take(self, value: str, *, now: float) -> bool:
        """True the first time `value` is taken, False afterwards."""
        # Insertion order is expiry order: every entry lives `ttl`.
        while self._until and next(iter(self._until.values())) < now:
            del self._until[next(iter(self._until))]
        if value in self._until:
            return False
        while len(self._until) >= self._limit:
            del self._until[next(iter(self._until))]
        self._until[value] = now + self._ttl
        return True
