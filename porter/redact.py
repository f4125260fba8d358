"""Nothing Porter stores or posts may contain a secret (docs/design.md, "The agent is untrusted").

A :class:`Redactor` knows the secrets of one task and finds each of them raw, base64-encoded
(standard or URL-safe, alone or inside a longer blob at any byte alignment), hex-encoded,
percent-encoded, JSON-escaped, and split across lines; it also finds well-known token shapes Porter
was never told about. Every finding is a span of the input; overlapping spans merge into one
placeholder.

Split secrets are found on a *joined view* of the text: every run of whitespace that contains a line
break is removed, each remaining character remembers where it came from, and the known forms (seen
the same way) are searched there with ``str.find``. That keeps the work linear, with no regular
expression built per secret that could backtrack. A line break counts raw (CR, LF) and
JSON-escaped (backslash and "n" or "r", and twice-escaped for JSON inside JSON), because agents log
JSON: a key wrapped over two lines of a tool's output arrives as "abc" backslash "n" "def".
"""

from __future__ import annotations

import base64
import bisect
import json
import re
from collections.abc import Iterable, Iterator
from urllib.parse import quote, quote_plus

__all__ = ["MIN_ENCODED_LEN", "MIN_SECRET_LEN", "PLACEHOLDER", "Redactor", "StreamRedactor"]

PLACEHOLDER = "[REDACTED]"
MIN_SECRET_LEN = 4  # shorter values are too common to replace anywhere
MIN_ENCODED_LEN = 6  # encoded and split forms of shorter values would hit innocent text

_B64 = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_")
# Whitespace, raw or JSON-escaped once (\n) or twice (\\n, JSON inside JSON). An escaped
# backslash (\\) is matched as a unit, so in \\\n only the last two characters are a break. A bare
# \\n is ambiguous (a backslash and "n", or a twice-escaped break) and is read as a break: that
# can only make the view join more.
_WHITESPACE_RUN = re.compile(r"(?:[ \t\r\n]|\\\\?[rnt])+|\\\\")
_NOT_BREAKS = " \t\\t"  # a run made only of these holds no line break
_URLSAFE = str.maketrans("+/", "-_")
_PERCENT_ESCAPE = re.compile(r"%[0-9A-F]{2}")

# Shapes of credentials nobody told Porter about. Where a pattern has a group, only the group is
# redacted, so "Authorization: Bearer [REDACTED]" stays readable. Most start with a literal (so
# the regex engine can skip ahead to it) followed by a fixed-width lookbehind for a word boundary,
# and repeat a single character class, so matching stays linear.
_VALUE = r"[A-Za-z0-9._~+/=\-]"
_FLY = r"f[mo][12][ar]?_[A-Za-z0-9+/=_\-]"
_SHAPES = tuple(
    re.compile(pattern)
    for pattern in (
        # PEM private keys, through the END line, or as far as the key body goes if it never came.
        r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----(?:[A-Za-z0-9+/=\s:,\\]|-(?!----))*+"
        r"(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----)?",
        # GitHub: ghp_/gho_/ghu_/ghs_/ghr_, including the ~520-character stateless
        # ghs_<app id>_<JWT> installation tokens (docs/platform-notes.md §C.2), and fine-grained
        # PATs.
        r"gh(?<![A-Za-z0-9]gh)[pousr]_[A-Za-z0-9_.\-]{34,}[A-Za-z0-9_]",
        r"github_pat_(?<![A-Za-z0-9]github_pat_)[A-Za-z0-9_]{20,}",
        r"sk-(?<![A-Za-z0-9]sk-)[A-Za-z0-9_\-]{20,}",  # Anthropic sk-ant-…, OpenAI sk-, sk-proj-
        r"AIza(?<![A-Za-z0-9]AIza)[A-Za-z0-9_\-]{30,}",  # Google API keys
        rf"f(?<![A-Za-z0-9]f){_FLY[1:]}{{16,}}(?:,{_FLY}{{8,}})*",  # Fly macaroons and bundles
        r"A(?<![A-Z0-9]A)(?:KIA|SIA)[A-Z0-9]{16}(?![A-Z0-9])",  # AWS access key ids
        r"xox(?<![A-Za-z0-9]xox)[abposr]-[A-Za-z0-9\-]{10,}",  # Slack
        # Porter's own run tokens (prt_) and LLM gateway tokens (plt_<run id>.<mac>),
        # porter/tokens.py.
        r"p(?<![A-Za-z0-9]p)(?:rt_|lt_[A-Za-z0-9_\-]{1,64}\.)[A-Za-z0-9_\-]{40,}",
        # Header values, as printed by curl -v, git's http.extraHeader or a JSON dump.
        r"(?i)(?<![A-Za-z0-9\-])(?:proxy-)?(?:authorization|x-api-key|x-goog-api-key)[\"']?"
        rf"[ \t]*[:=][ \t]*[\"']?(?:(?:bearer|token|basic|digest|flyv1)[ \t]+)?+({_VALUE}{{8,}})",
        rf"(?i)(?<![A-Za-z0-9])bearer[ \t]+({_VALUE}{{20,}})",
        # Passwords in URLs: https://x-access-token:TOKEN@github.com/… (bounded, so that a
        # stream's hold always covers a whole match).
        r"://[^/\s:@'\"<>]{0,64}:([^@\s/'\"<>]{1,600})@",
        # Credentials in a query string, as an HTTP library's error prints the URL it called
        # (Gemini's ?key=, OAuth's access_token=).
        r"(?i)[?&](?:key|api[_-]?key|access[_-]?token|token|client[_-]?secret|password)="
        r"([^&\s#'\"<>]{1,600})",
    )
)
# The most text a shape needs before it matches at all (a URL with a 600-character password);
# a stream holds back at least this much.
_SHAPE_HOLD = 3 + 64 + 1 + 600 + 1
_SHAPE_ROUNDS = 4


class _Joined:
    """``text`` without whitespace runs that contain a line break, mapped back to the original."""

    __slots__ = ("_origins", "_starts", "text")

    def __init__(self, text: str) -> None:
        self._starts = [0]
        self._origins = [0]
        if "\n" not in text and "\r" not in text and "\\" not in text:
            self.text = text
            return
        pieces: list[str] = []
        self._starts, self._origins = [], []
        kept = pos = 0
        for match in _WHITESPACE_RUN.finditer(text):
            if not match.group().strip(_NOT_BREAKS):
                continue
            self._keep(text, pos, match.start(), kept, pieces)
            kept += match.start() - pos
            pos = match.end()
        self._keep(text, pos, len(text), kept, pieces)
        self.text = "".join(pieces)
        if not self._starts:
            self._starts, self._origins = [0], [len(text)]

    def _keep(self, text: str, start: int, end: int, kept: int, pieces: list[str]) -> None:
        if end > start:
            self._starts.append(kept)
            self._origins.append(start)
            pieces.append(text[start:end])

    def original(self, index: int) -> int:
        """Where the joined character at ``index`` sits in the original text."""
        segment = bisect.bisect_right(self._starts, index) - 1
        return self._origins[segment] + index - self._starts[segment]

    def span(self, start: int, end: int) -> tuple[int, int]:
        return self.original(start), self.original(end - 1) + 1


def _find_all(haystack: str, needle: str) -> Iterator[int]:
    index = haystack.find(needle)
    while index >= 0:
        yield index
        index = haystack.find(needle, index + 1)


def _lower_escapes(quoted: str) -> str:
    return _PERCENT_ESCAPE.sub(lambda m: m.group().lower(), quoted)


def _encodings(secret: str) -> set[str]:
    """Hex, percent-encoded and JSON-escaped forms (base64 is handled by :func:`_base64_cores`)."""
    data = secret.encode(errors="surrogatepass")
    forms = {data.hex(), data.hex().upper()}
    for quoted in (
        quote(secret, safe="", errors="surrogatepass"),
        quote(secret, errors="surrogatepass"),
        quote_plus(secret, safe="", errors="surrogatepass"),
    ):
        forms |= {quoted, _lower_escapes(quoted)}
    escaped = json.dumps(secret)[1:-1]
    forms |= {
        escaped,
        json.dumps(secret, ensure_ascii=False)[1:-1],
        escaped.replace("/", "\\/"),
        json.dumps(escaped)[1:-1],  # JSON inside a JSON string
    }
    return forms


def _base64_cores(data: bytes) -> Iterator[tuple[str, bool, bool]]:
    """The base64 characters fixed by ``data`` alone, wherever it sits inside a longer blob.

    Base64 turns each 3 bytes into 4 characters, so ``data`` at byte offset 3m+k of a blob shows
    up as the same characters for every m. Only characters whose six bits all come from ``data``
    are kept; the flags say whether a neighbouring character still carries some of its bits.
    """
    for k in range(3):
        encoded = base64.b64encode(bytes(k) + data).decode()
        first = -(-8 * k // 6)
        last = 8 * (k + len(data)) // 6
        core = encoded[first:last]
        left, right = 8 * k % 6 != 0, 8 * (k + len(data)) % 6 != 0
        yield core, left, right
        yield core.translate(_URLSAFE), left, right


def _mask(text: str, spans: list[tuple[int, int]]) -> str:
    if not spans:
        return text
    pieces: list[str] = []
    pos = 0
    for start, end in spans:
        pieces += [text[pos:start], "\x00" * (end - start)]
        pos = end
    pieces.append(text[pos:])
    return "".join(pieces)


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


class Redactor:
    """Replaces every known secret, in any of its usual disguises, and well-known token shapes."""

    def __init__(self, secrets: Iterable[str], *, placeholder: str = PLACEHOLDER) -> None:
        self.placeholder = placeholder
        exact: set[str] = set()
        joined: set[str] = set()
        cores: dict[str, tuple[bool, bool]] = {}
        for raw in secrets:
            secret = raw.strip()
            if len(secret) < MIN_SECRET_LEN:
                continue
            exact.add(secret)
            if len(secret) < MIN_ENCODED_LEN:
                continue
            for form in (secret, *_encodings(secret)):
                squeezed = _Joined(form).text  # as the form shows in the joined view of a text
                if len(squeezed) >= MIN_ENCODED_LEN:
                    joined.add(squeezed)
            for core, left, right in _base64_cores(secret.encode(errors="surrogatepass")):
                was = cores.get(core, (False, False))
                cores[core] = (was[0] or left, was[1] or right)
        self._exact = tuple(exact)
        self._joined = tuple(joined)
        self._cores = tuple((core, left, right) for core, (left, right) in cores.items())
        # +3: a core may take a neighbouring character and two "=" of padding with it.
        self.longest_form = max(
            [len(s) for s in (*exact, *joined)] + [len(c) + 3 for c in cores], default=0
        )

    def redact(self, text: str) -> str:
        spans = self._spans(text)
        return self._apply(text, spans, 0, len(text)) if spans else text

    def _spans(
        self,
        text: str,
        joined: _Joined | None = None,
        matches: list[tuple[int, int]] | None = None,
    ) -> list[tuple[int, int]]:
        """Merged spans to replace. ``matches`` collects whole shape matches, including the
        parts kept visible (a header's name), which a stream must not cut apart."""
        spans = [(i, i + len(s)) for s in self._exact for i in _find_all(text, s)]
        if self._joined or self._cores:
            joined = joined or _Joined(text)
            view = joined.text
            for form in self._joined:
                spans += [joined.span(i, i + len(form)) for i in _find_all(view, form)]
            for core, left, right in self._cores:
                for i in _find_all(view, core):
                    start, end = i, i + len(core)
                    if left and start > 0 and view[start - 1] in _B64:
                        start -= 1
                    if right and end < len(view) and view[end] in _B64:
                        end += 1
                        while end < len(view) and view[end] == "=" and end - i - len(core) < 3:
                            end += 1
                    spans.append(joined.span(start, end))
        # Shapes see the text with every finding blanked out, as it will look once replaced, so
        # "<secret>ghp_…" matches like "[REDACTED]ghp_…" would on a second pass. Repeated because
        # one shape's finding can expose another ("…KEY-----Authorization: …"); chains are short.
        spans = _merge(spans)
        for _ in range(_SHAPE_ROUNDS):
            masked = _mask(text, spans)
            hits = [(shape.groups, m) for shape in _SHAPES for m in shape.finditer(masked)]
            found = [m.span(1 if groups else 0) for groups, m in hits]
            if matches is not None:
                matches += [m.span() for _, m in hits]
            merged = _merge(spans + found)
            if merged == spans:
                break
            spans = merged
        return spans

    def _apply(self, text: str, spans: list[tuple[int, int]], start: int, end: int) -> str:
        """``text[start:end]`` with every span, clipped to that window, replaced."""
        pieces: list[str] = []
        pos = start
        for span_start, span_end in spans:
            span_start, span_end = max(span_start, start), min(span_end, end)
            if span_start >= span_end:
                continue
            pieces += [text[pos:span_start], self.placeholder]
            pos = span_end
        pieces.append(text[pos:end])
        return "".join(pieces)


class StreamRedactor:
    """Redacts a log arriving in chunks, holding back a tail where a secret may still be arriving.

    ``feed`` releases text only up to a cut that leaves at least ``hold`` characters (line breaks,
    raw or escaped, and their indentation not counted) after it and that no finding crosses or
    touches, so a secret straddling two chunks is still seen whole. For the same reason the
    concatenated output equals ``redact`` of the whole text, except where a single finding, or a
    shape's run of spaces, outgrows the hold. Past ``limit`` unreleased characters (an endless
    token or key block) text is released anyway, with whatever is known of the finding redacted.

    ``max_secret_len`` is the longest secret, in characters, that must be caught across a chunk
    boundary; the hold is at least that, the longest form of the redactor's own secrets, and
    what a token shape needs before it can be recognised.
    """

    _CONTEXT = 64  # characters already released, kept so lookbehinds see what came before

    def __init__(self, redactor: Redactor, *, max_secret_len: int = 1024) -> None:
        self._redactor = redactor
        self.hold = max(redactor.longest_form, max_secret_len, _SHAPE_HOLD)
        self.limit = max(16 * self.hold, 64 * 1024)
        self._context = ""
        self._pending = ""
        self._next_try = 2 * self.hold

    def feed(self, chunk: str) -> str:
        self._pending += chunk
        # Trying again only after the pending text has grown by a good margin keeps the total
        # work linear even when it arrives a character at a time.
        if len(self._pending) <= self._next_try:
            return ""
        released = self._release(final=False)
        pending = len(self._pending)
        self._next_try = max(2 * self.hold, pending + self.hold, pending * 5 // 4)
        return released

    def flush(self) -> str:
        released = self._release(final=True)
        self._next_try = 2 * self.hold
        return released

    def _release(self, *, final: bool) -> str:
        text = self._context + self._pending
        base = len(self._context)
        joined = _Joined(text)
        matches: list[tuple[int, int]] = []
        spans = self._redactor._spans(text, joined, matches)
        holds = _merge(spans + matches)
        cut = len(text) if final else self._cut(text, base, joined, holds)
        if cut <= base:
            return ""
        released = self._redactor._apply(text, spans, base, cut)
        self._context = text[max(0, cut - self._CONTEXT) : cut]
        self._pending = text[cut:]
        return released

    def _cut(self, text: str, base: int, joined: _Joined, holds: list[tuple[int, int]]) -> int:
        keep_from = len(joined.text) - self.hold
        cut = joined.original(keep_from) if keep_from > 0 else 0
        # A finding that reaches the cut might still grow, and one that ends there decides how
        # the next one is seen: hold it back whole.
        index = bisect.bisect_left([start for start, _ in holds], cut) - 1
        if index >= 0 and holds[index][1] >= cut:
            cut = holds[index][0]
        if cut <= base and len(text) - base > self.limit:
            cut = len(text) - self.hold
        return cut
