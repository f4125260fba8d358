"""Whether the agent is still getting anywhere: when it last said something new.

An agent that cannot reach its model API may wait forever while printing the same line again
and again (Codex: "Reconnecting... 2/5", then "waiting for network"). So a line counts as
progress only when it is new, digits aside; a repeat of one already seen does not. Thread-safe:
the output pump feeds it, the supervisor asks it.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable

from porter_entrypoint.output import clean_text

MAX_SEEN = 4096  # distinct lines remembered; past this, every line counts as new again
MAX_PARTIAL = 4096  # an unfinished line this long is taken as a line
_DIGITS = re.compile(r"\d+")
_SPACE = re.compile(r"\s+")


class Progress:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._partial = ""
        self.last = clock()

    def feed(self, text: str) -> None:
        with self._lock:
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
            if len(self._partial) > MAX_PARTIAL:
                lines.append(self._partial)
                self._partial = ""
            for line in lines:
                self._line(line)

    def _line(self, line: str) -> None:
        key = _SPACE.sub(" ", _DIGITS.sub("#", clean_text(line))).strip()
        if not key or key in self._seen:
            return
        if len(self._seen) >= MAX_SEEN:
            self._seen.clear()
        self._seen.add(key)
        self.last = self._clock()

    def idle_for(self) -> float:
        with self._lock:
            return self._clock() - self.last
