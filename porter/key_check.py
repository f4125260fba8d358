"""Every Porter process of one database must hold the same key ring.

Sealed secrets open, and run tokens verify, only under the ring they were made with
(porter/crypto.py); a replica started with another ring (say each host generated its own key file)
would fail every secret it opens and every machine callback that reaches it. So the database keeps
the fingerprints (`KeyRing.fingerprints`, never the keys) of every key its processes started with,
and a process whose ring disagrees refuses to start (porter/store/instance.py, at
`Runtime.start` and in `porter rotate-keys`).

A rotation never disagrees: the new key goes in front and the older ones stay, so the rotated
ring shares a key id, with the same key, with what is stored; the stored map is the union of all
rings seen, so once the operator drops the old key the new one is still known.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from porter.errors import ConfigError


def reconcile(stored: Mapping[str, str] | None,
              ours: Mapping[str, str]) -> str | dict[str, str]:
    """What is wrong with `ours` given the fingerprints `stored` (a problem, one line), or the
    map to store in place of `stored`."""
    if not stored:
        return dict(ours)
    for kid, fingerprint in ours.items():
        if kid in stored and stored[kid] != fingerprint:
            return f"its key id {kid} holds another key than theirs"
    if not stored.keys() & ours.keys():
        return f"none of its key ids ({', '.join(ours)}) is theirs ({', '.join(sorted(stored))})"
    return {**stored, **ours}


def no_ring(keys_file: Path) -> str:
    """The problem of a Porter with no ring of its own where its database knows one."""
    return f"it has none: PORTER_SECRET_KEYS is not set and there is no key file {keys_file}"


def refusal(problem: str) -> ConfigError:
    """The error that stops a Porter whose key ring is not its database's (key ids, never keys)."""
    return ConfigError(
        f"this Porter's key ring is not the one the other Porter processes of this database use "
        f"({problem}); set PORTER_SECRET_KEYS to the same value on every replica "
        "(docs/operator.md)")
