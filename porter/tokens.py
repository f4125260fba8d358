"""Run ids and run tokens. Pure.

A run token is derived from a server subkey and the run id, so relaunching a run after a crash
hands the machine the same token without ever storing it; the store keeps only its hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

TOKEN_PREFIX = "prt_"  # noqa: S105 - a prefix, not a secret


def new_run_id() -> str:
    """Lowercase letters and digits: valid in Fly machine names and URLs."""
    return "r" + secrets.token_hex(10)


def run_token(subkey: bytes, run_id: str) -> str:
    mac = hmac.new(subkey, run_id.encode(), hashlib.sha256).digest()
    return TOKEN_PREFIX + base64.urlsafe_b64encode(mac).decode().rstrip("=")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(token_hash(token), stored_hash)
