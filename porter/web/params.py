"""Numbers in request paths and query strings.

ASCII digits only: ``str.isdigit`` also accepts "²" (which ``int`` then refuses, a 500) and "٣"
(which ``int`` reads as 3), so a number that is not plainly written is a 400 that says so.
"""

from __future__ import annotations

from porter.errors import BadRequest

MAX_DIGITS = 18  # every such number fits SQLite's 64-bit integers


def ascii_int(raw: str | None, name: str) -> int | None:
    """``raw`` as a whole number, None when absent or empty; :class:`BadRequest` otherwise."""
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()):
        raise BadRequest(f"{name} must be a whole number written with digits 0-9")
    if len(raw.lstrip("0")) > MAX_DIGITS:
        raise BadRequest(f"{name} is too large")
    return int(raw)
