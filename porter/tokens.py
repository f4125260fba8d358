"""Run ids, run tokens and gateway tokens. Pure.

A run token is derived from a server subkey and the run id, so relaunching a run after a crash
hands the machine the same token without ever storing it; the store keeps only its hash.

A gateway token is what the agent holds instead of a model API key (porter/gateway/): derived
the same way from another subkey, so it never opens the run's callbacks, and the run id rides in
it in clear, so the gateway finds the run without a table scan and then checks the MAC.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

TOKEN_PREFIX = "prt_"  # noqa: S105 - a prefix, not a secret
GATEWAY_PREFIX = "plt_"
# The key ring purpose gateway tokens are derived under: `keyring.derive(GATEWAY_SUBKEY)`.
GATEWAY_SUBKEY = "llm-token"
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


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


def gateway_token(subkey: bytes, run_id: str) -> str:
    """`plt_<run id>.<mac>`: the agent's credential for the LLM gateway, for this run only."""
    mac = hmac.new(subkey, run_id.encode(), hashlib.sha256).digest()
    return f"{GATEWAY_PREFIX}{run_id}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def parse_gateway_token(token: str) -> str | None:
    """The run id a gateway token names, unverified (None: not shaped like one). The caller
    recomputes the token for that run and compares in constant time."""
    if not token.startswith(GATEWAY_PREFIX):
        return None
    run_id, dot, mac = token[len(GATEWAY_PREFIX):].partition(".")
    if not dot or not mac or not _RUN_ID.fullmatch(run_id):
        return None
    return run_id
