"""Untrusted text made inert: no mention, closing keyword or markup survives; it reads the same."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from porter.neutralize import JOINER, close_fences, code_span, neutralize, plain

# What GitHub would act on, read generously: any spacing or markup between a keyword and its
# reference, any reference form, a mention after anything but a letter or digit.
MENTION = re.compile(r"(?<![A-Za-z0-9])@[A-Za-z0-9]")
CLOSING = re.compile(
    r"(?i)(?<![A-Za-z0-9])(?:close[sd]?|(?:fi|ﬁ)x(?:e[sd])?|resolve[sd]?)(?![A-Za-z0-9])"
    r"[^A-Za-z0-9]{0,20}"
    r"(?:#\d|gh-\d|[A-Za-z0-9._-]+/[A-Za-z0-9._-]+#\d|https?://|www\.)"
)
LIVE_MARKUP = re.compile(f"[<&](?!{JOINER})")

PIECES = [
    "@", "octocat", "org/team", "`", "Closes", "closes", "FIXES", "fix", "Resolved", "resolve",
    "cloſes", "ﬁxes", "es", "d", " ", "  ", "\n", "\t", ":", "**", "_", "~", "#", "5", "GH-",
    "gh-6", "owner/repo", "https://github.com/o/r/issues/1", "www.", "<", "!--", "-->", "&",
    "#64;", "the", "bug", ".", "\\", "\u00a0", "\u200b", "é", "a",
]
TEXT = st.lists(st.sampled_from(PIECES) | st.text(max_size=4), max_size=30).map("".join)


@given(TEXT)
def test_no_mention_closing_keyword_or_markup_survives(text: str) -> None:
    out = neutralize(text)
    assert MENTION.search(out) is None
    assert CLOSING.search(out) is None
    assert LIVE_MARKUP.search(out) is None and "<!--" not in out


@given(TEXT)
def test_plain_text_keeps_no_mention_or_closing_keyword(text: str) -> None:
    out = plain(text)
    assert MENTION.search(out) is None and CLOSING.search(out) is None


@given(TEXT)
def test_the_text_reads_the_same_and_a_second_pass_changes_nothing(text: str) -> None:
    for inert in (neutralize, plain):
        out = inert(text)
        assert out.replace(JOINER, "") == text.replace(JOINER, "")
        assert inert(out) == out


@pytest.mark.parametrize("text", [
    "cc @octocat", "cc `@octocat", "`@octocat`", "@org/team", "(@octocat)", "é@octocat",
    "**@octocat**", "_@octocat", "\\@octocat", "\u200b@octocat",
])
def test_mentions_are_broken_wherever_they_stand(text: str) -> None:
    for inert in (neutralize, plain):
        out = inert(text)
        assert MENTION.search(out) is None, out
        assert "@" + JOINER in out


@pytest.mark.parametrize("text", [
    "Fixes #2", "**Closes** #5", "Closes GH-6", "closes: #7", "Resolves owner/repo#8",
    "fixes https://github.com/octo/hello/issues/9", "FIXED #10", "_Resolved_ #11",
    "Closes\n#12", "Fix:\n#13", "Closes\u00a0#14", "Closes [#15](https://x)", "fixes #1, #2",
    "resolve\\#16", "cloſes #17", "ﬁxes #18", "Close www.github.com/o/r/issues/19",
])
def test_closing_keywords_are_broken_in_every_form(text: str) -> None:
    for inert in (neutralize, plain):
        out = inert(text)
        assert CLOSING.search(out) is None, out
        assert JOINER in out


@pytest.mark.parametrize("text", [
    "Fix the typo in the README", "Add a --verbose flag", "It fixes the bug and closes the gap",
    "Co-authored-by: Claude <noreply@anthropic.com>", "mail a@b.c", "closet #1 prefix",
])
def test_ordinary_prose_is_left_as_it_was(text: str) -> None:
    assert plain(text) == text


@pytest.mark.parametrize("text", [
    "before <!-- the rest is hidden", "<img src=x onerror=alert(1)>", "</details>",
    "&#64;octocat", "&lt;b&gt;", "<https://example.com>", "a <!-- b --> c",
])
def test_markup_is_inert(text: str) -> None:
    out = neutralize(text)
    assert LIVE_MARKUP.search(out) is None and "<!--" not in out and MENTION.search(out) is None


def test_code_keeps_its_characters_apart_from_the_joiners() -> None:
    code = "if a < b && c > d:\n    return x"
    assert neutralize(code).replace(JOINER, "") == code


@pytest.mark.parametrize(("text", "closed"), [
    ("```py\nprint(1)", "```py\nprint(1)\n```"),
    ("~~~~\nx\n~~~", "~~~~\nx\n~~~\n~~~~"),
    ("````\nx\n```", "````\nx\n```\n````"),
    ("  ```\nx", "  ```\nx\n```"),
    ("a\r```\nx", "a\r```\nx\n```"),
])
def test_a_fence_left_open_is_closed(text: str, closed: str) -> None:
    assert close_fences(text) == closed


@pytest.mark.parametrize("text", [
    "no fence", "```\nx\n```", "``` a ` b\nnot a fence: its info has a backtick",
    "    ```\nindented code, not a fence", "> ```\nended with its quote", "~~~\nx\n~~~~  ",
    "inline ``` is no fence",
])
def test_text_without_an_open_fence_is_unchanged(text: str) -> None:
    assert close_fences(text) == text


def test_a_code_span_cannot_be_broken_out_of() -> None:
    assert code_span("feature/x") == "`feature/x`"
    span = code_span("x`@octocat`\nfixes #2")
    assert span.count("`") == 2 and "\n" not in span
    assert MENTION.search(span) is None and CLOSING.search(span) is None
    assert code_span("b" * 200, limit=10) == "`bbbbbbbbb…`"
