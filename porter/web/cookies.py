"""Signed values for cookies: `value.issued.mac`, HMAC-SHA256 under a key of their own.

The value is never secret here (a random session id, an OAuth state nonce); the signature only
proves Porter issued it, and when, so a forged or stale cookie is refused before any lookup.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

_SEPARATOR = "."


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
    if not token or len(token) > 512:
        return None
    value, _, rest = token.partition(_SEPARATOR)
    issued, _, mac = rest.partition(_SEPARATOR)
    if not value or not issued.isdigit() or not mac:
        return None
    if not hmac.compare_digest(mac, _mac(key, f"{value}{_SEPARATOR}{issued}")):
        return None
    if not 0 <= now - int(issued) <= max_age:
        return None
    return value


def digest(value: str) -> str:
    """What the database keeps of a session id: a leaked table opens no session."""
    return hashlib.sha256(value.encode()).hexdigest()
