"""Redaction of the entrypoint's own secrets (run token, clone token, the agent's keys) from
everything it prints or sends: raw, wrapped across lines by a terminal-width printer, or inside
base64 (the clone token reaches git inside a Basic authorization header)."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Iterator

MIN_SECRET_CHARS = 8  # shorter env values ("auto", "1") are settings, not secrets
# Spelled as Porter's own placeholder (porter/redact.py, which this package cannot import), so a
# log reads the same whichever side redacted it; tests/unit/test_redact.py checks they agree.
REDACTED = "[REDACTED]"


def _split_tolerant(secret: str) -> str:
    # Also matches the secret wrapped across lines by a terminal-width printer.
    return r"(?:\r?\n)?".join(re.escape(c) for c in secret)


def _base64_fragments(secret: str) -> Iterator[str]:
    """The part of base64(anything + secret + anything) that depends only on the secret."""
    raw = secret.encode()
    for offset in range(3):
        data = b"\0" * offset + raw
        start, end = (8 * offset + 5) // 6, (8 * len(data)) // 6
        encoded = base64.b64encode(data).decode()[start:end]
        if len(encoded) >= MIN_SECRET_CHARS:
            yield encoded
            yield encoded.replace("+", "-").replace("/", "_")


class Redactor:
    """Replaces known secret values (raw, wrapped across lines, or base64-encoded)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values = sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)
        patterns: list[str] = []
        for value in values:
            patterns.append(_split_tolerant(value))
            patterns.extend(re.escape(f) for f in dict.fromkeys(_base64_fragments(value)))
        self._re = re.compile("|".join(patterns)) if patterns else None
        # Longest text a single match can span: every gap filled with "\r\n".
        self.holdback = max((3 * len(v) for v in values), default=0)

    def redact(self, text: str) -> str:
        return self._re.sub(REDACTED, text) if self._re else text

    def safe_cut(self, text: str, cut: int) -> int:
        """Move `cut` so that it does not split a match."""
        if self._re is None:
            return cut
        for match in self._re.finditer(text, max(0, cut - self.holdback)):
            if match.start() < cut < match.end():
                return match.end()
            if match.start() >= cut:
                break
        return cut
