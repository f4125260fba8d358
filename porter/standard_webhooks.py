"""Standard Webhooks (standardwebhooks.com, spec 1.0.0) symmetric signatures: signing and
verifying. Pure.

The signed content is `{webhook-id}.{webhook-timestamp}.{body}`, HMAC-SHA256 under the secret's
bytes, sent as `webhook-signature: v1,<base64>`. Secrets are written `whsec_<base64>`, of 24 to
64 random bytes. Porter signs with this module; its tests and any receiver written in Python can
verify with it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping

from porter.errors import PorterError

PREFIX = "whsec_"
MIN_KEY_BYTES = 24  # the spec: at least 192 bits…
MAX_KEY_BYTES = 64  # …and at most 512
TOLERANCE = 300.0  # seconds a receiver accepts between the timestamp and its clock
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
SECRET_SHAPE = f"{PREFIX} followed by the base64 of {MIN_KEY_BYTES} to {MAX_KEY_BYTES} random bytes"


class VerificationError(PorterError):
    """The webhook's signature does not verify."""


def decode_secret(text: str) -> bytes:
    """The key bytes of a `whsec_` secret; ValueError (naming the expected shape, never the
    value) when it is not one."""
    encoded = text.strip().removeprefix(PREFIX) if text.strip().startswith(PREFIX) else ""
    if not _BASE64.fullmatch(encoded):
        raise ValueError(SECRET_SHAPE)
    try:  # unpadded base64 is common; padding is added, as the spec's libraries do
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(SECRET_SHAPE) from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise ValueError(SECRET_SHAPE)
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `v1,<base64>` signature of one message."""
    if "." in msg_id or not msg_id:
        # The id and timestamp are joined with dots: one holding a dot could shift the split.
        raise ValueError("a webhook id must be non-empty and hold no '.'")
    content = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def headers(key: bytes, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers a signed message carries."""
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(key, msg_id, timestamp, body)}


def verify(key: bytes, received: Mapping[str, str], body: bytes, *, now: float,
           tolerance: float = TOLERANCE) -> None:
    """Raise VerificationError unless one `v1` signature in `received` (headers, any case)
    signs `body` with `key`, at a timestamp within `tolerance` of `now` (replays are refused)."""
    lowered = {name.lower(): value for name, value in received.items()}
    msg_id = lowered.get("webhook-id", "")
    stamp = lowered.get("webhook-timestamp", "")
    signatures = lowered.get("webhook-signature", "")
    if not (msg_id and stamp and signatures):
        raise VerificationError("missing webhook-id, webhook-timestamp or webhook-signature")
    if not stamp.isdigit():
        raise VerificationError("webhook-timestamp is not a Unix time in seconds")
    if abs(now - int(stamp)) > tolerance:
        raise VerificationError("webhook-timestamp is too far from now")
    try:
        expected = sign(key, msg_id, int(stamp), body).encode()
    except ValueError as exc:
        raise VerificationError(str(exc)) from None
    # Space-separated: during a key rotation a sender signs with the old key and the new one.
    if not any(hmac.compare_digest(expected, given.encode())
               for given in signatures.split(" ") if given.startswith("v1,")):
        raise VerificationError("no v1 signature matches")
