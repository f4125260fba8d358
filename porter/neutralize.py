"""Untrusted text made inert before Porter posts it on GitHub. Pure.

Issue titles are written by whoever opened the issue, and the agent's summary, errors and commit
message by an agent that may have been prompt-injected. Posted as they are, they could ping people,
close other issues when the pull request merges, or hide the rest of Porter's comment. A WORD
JOINER (U+2060, invisible) in the right place stops each trick and the text still reads the same;
entity-escaping would show `&lt;` inside the code the agent quotes.
"""

from __future__ import annotations

import re

JOINER = "\u2060"

# GitHub links a mention at an `@` that no ASCII letter or digit precedes; anything else before
# it (a backtick, `_`, `é`, a zero-width space) still mentions. Emails (`a@b.c`) stay as they are.
_MENTION = re.compile(r"(?<![A-Za-z0-9])@(?=[A-Za-z0-9])")

# A closing keyword closes whatever reference follows it, and GitHub accepts many forms: `#2`,
# `GH-2`, `owner/repo#2`, an issue URL, after a colon, emphasis or a line break, in any case.
# Rather than chase the forms, a keyword (a whole word: "prefix" is none) is left alone only where
# plain prose follows it ("Fix the typo"; a word this already broke counts as prose, so a second
# pass changes nothing); anywhere else it is broken. IGNORECASE without ASCII also catches
# `cloſes` (long s), which case-folds to `closes`; the `ﬁ` ligature folds to two letters, so it
# is named.
_CLOSING = re.compile(
    r"(?<![A-Za-z0-9])(?:close[sd]?|(?:fi|ﬁ)x(?:e[sd])?|resolve[sd]?)(?![a-z0-9])"
    f"(?! +[a-z][a-z{JOINER}]*(?:\\s|$))",
    re.IGNORECASE,
)

# `<` opens raw HTML (a comment that hides everything after it, a tag) and `&` an entity (`&#64;`
# spells an `@` that mentions); a joiner after either leaves a plain character.
_MARKUP = re.compile(f"[<&](?!{JOINER})")

# CommonMark code fences: at most three spaces of indent, three or more backticks or tildes.
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def plain(text: str) -> str:
    """No mention and no closing keyword: for commit messages, which GitHub shows unrendered
    (so `Co-authored-by: A <a@b.c>` trailers keep working)."""
    text = _MENTION.sub("@" + JOINER, text)
    return _CLOSING.sub(lambda m: m.group()[0] + JOINER + m.group()[1:], text)


def neutralize(text: str) -> str:
    """No mention, no closing keyword and no HTML: for anything GitHub renders as markdown."""
    return _MARKUP.sub(lambda m: m.group() + JOINER, plain(text))


def code_span(text: str, limit: int = 100) -> str:
    """`text` as an inline code span it cannot break out of (no backticks, one line)."""
    line = " ".join(text.replace("`", "'").split())
    if len(line) > limit:
        line = line[: limit - 1].rstrip() + "…"
    return f"`{neutralize(line)}`"


def close_fences(text: str) -> str:
    """`text` with a code fence it leaves open closed, so the fence cannot swallow what Porter
    appends after it (its `Closes #N` line, the task link).

    Only fences at the top level matter: one opened in a quote or a list item ends with it.
    """
    opened = ""
    for line in _LINE_BREAK.split(text):
        match = _FENCE.match(line)
        if match is None:
            continue
        run, rest = match.groups()
        if not opened:
            if not (run[0] == "`" and "`" in rest):  # a backtick in the info string: no fence
                opened = run
        elif run[0] == opened[0] and len(run) >= len(opened) and not rest.strip(" \t"):
            opened = ""
    return f"{text}\n{opened}" if opened else text


def one_line(text: str, limit: int = 300) -> str:
    """Whitespace folded to single spaces, cut to `limit` characters with an ellipsis."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"
