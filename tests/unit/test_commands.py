from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from porter.commands import ControlCommand, Reply, Run, find_mention, parse_comment
from porter.webhooks import may_mention

AGENTS = frozenset({"claude", "codex", "aider", "opencode", "gemini", "goose"})


def parse(body: str) -> object:
    return parse_comment(body, handle="porter", agents=AGENTS)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("@porter fix the typo", Run("fix the typo")),
        ("@Porter fix the typo", Run("fix the typo")),
        ("  @porter: fix the typo", Run("fix the typo")),
        ("Thanks!\n\n@porter add a --verbose flag", Run("add a --verbose flag")),
        ("@porter codex add tests", Run("add tests", agent="codex")),
        ("@porter Claude --model opus add tests", Run("add tests", agent="claude", model="opus")),
        ("@porter aider --model=gpt-5 add tests", Run("add tests", agent="aider", model="gpt-5")),
        ("@porter --model sonnet add tests", Run("add tests", model="sonnet")),
        ("@porter claude fix it\nand also this\n- item", Run("fix it\nand also this\n- item",
                                                             agent="claude")),
        ("@porter code the parser in rust", Run("code the parser in rust")),
        ("@porter clause 3 is wrong, fix it", Run("clause 3 is wrong, fix it")),
        ("@porter cancel", ControlCommand("cancel")),
        ("@porter retry", ControlCommand("retry")),
        ("@porter status", ControlCommand("status")),
        ("@porter help", ControlCommand("help")),
        ("@porter", ControlCommand("help")),
        ("@porter help me fix the login bug", Run("help me fix the login bug")),
    ],
)
def test_grammar(body: str, expected: object) -> None:
    assert parse(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        "> @porter fix the typo",
        ">@porter fix the typo",
        "> quoted\n> @porter fix the typo",
        "```\n@porter fix the typo\n```",
        "~~~python\n@porter fix the typo\n~~~",
        "    @porter fix the typo",
        "\t@porter fix the typo",
        "mail x@porter.example about it",
        "hello @porter fix the typo",
        "@porter-bot fix the typo",
        "@porters fix the typo",
        "",
    ],
)
def test_no_live_mention(body: str) -> None:
    assert parse(body) is None


def test_mention_after_a_closed_fence_counts() -> None:
    body = "```\n@porter not this\n```\n@porter this one"
    assert parse(body) == Run("this one")


def test_unclosed_fence_hides_everything_after_it() -> None:
    assert parse("```\ncode\n@porter fix") is None


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("@porter cluade fix the typo", "Did you mean `claude`?"),
        ("@porter cladue --model opus fix", "Did you mean `claude`?"),
        ("@porter cancle", "Did you mean `cancel`?"),
        ("@porter stauts", "Did you mean `status`?"),
        ("@porter claude --temperature 3 fix", "only option is `--model"),
        ("@porter claude --model", "needs a model name"),
        ("@porter claude --model ;rm fix", "doesn't look like a model name"),
        ("@porter claude", "What should `claude` do?"),
        ("@porter gpt4 --model x fix it", "I don't know an agent called `gpt4`"),
    ],
)
def test_malformed_input_gets_a_reply(body: str, needle: str) -> None:
    result = parse(body)
    assert isinstance(result, Reply)
    assert needle in result.text


def test_reply_echo_is_bounded_and_cannot_break_markup() -> None:
    result = parse("@porter claude --x`" + "y" * 500 + " fix")
    assert isinstance(result, Reply)
    assert "y" * 100 not in result.text
    assert "`y" not in result.text.replace("`--model", "")


def test_operator_defined_agent_is_known() -> None:
    result = parse_comment("@porter scripted do it", handle="porter", agents={"scripted"})
    assert result == Run("do it", agent="scripted")


def test_custom_handle() -> None:
    assert parse_comment("@robot fix", handle="robot", agents=AGENTS) == Run("fix")
    assert parse_comment("@porter fix", handle="robot", agents=AGENTS) is None


@given(st.text())
def test_any_text_gives_a_result_never_an_exception(body: str) -> None:
    result = parse(body)
    assert result is None or isinstance(result, Run | ControlCommand | Reply)


@given(st.text())
def test_quoted_lines_never_trigger(instruction: str) -> None:
    quoted = "\n".join("> " + line for line in f"@porter {instruction}".splitlines())
    assert find_mention(quoted, "porter") is None


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_fenced_code_never_triggers(code: str) -> None:
    if "```" in code:
        return
    assert find_mention(f"```\n@porter {code}\n```", "porter") is None


@pytest.mark.parametrize(
    "body",
    [
        "<!--\n@porter fix the typo\n-->",
        "Thanks!\n\n<!--\n@porter delete the tests\n-->\nbye",
        "<!-- a note\n@porter fix the typo -->",
        "see <!-- spanning\n@porter fix the typo\n-->",
        "`code` <!--\n@porter fix the typo\n-->",
        "<!-- closed --> <!--\n@porter fix the typo\n-->",
        "<!-- one --><!-- two\n\n@porter fix the typo\n-->",
        "<!-- ``` -->\n<!--\n@porter fix the typo\n-->",
        "<!--\n```\n-->\n<!--\n@porter fix the typo",
        # An unclosed comment hides everything after it.
        "<!--\n@porter fix the typo",
        "Looks good <!-- todo\n\n\n@porter fix the typo",
        "<!-- \n-- > still hidden\n@porter fix the typo",
        # Not a mention on GitHub either: the comment splits the name.
        "@por<!-- -->ter fix the typo",
    ],
)
def test_mentions_inside_html_comments_are_hidden(body: str) -> None:
    assert parse(body) is None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("<!-- issue template -->\n@porter fix it", Run("fix it")),
        ("<!--\nhidden\n-->\n@porter fix it", Run("fix it")),
        ("<!-- a -->\n<!-- b -->\n\n@porter fix it", Run("fix it")),
        ("```html\n<!--\n```\n@porter fix it", Run("fix it")),
        ("Type `<!--` to start a comment.\n@porter fix it", Run("fix it")),
        ("Type ``<!-- ` -->`` here\n@porter fix it", Run("fix it")),
        # What a comment hides is not part of the instruction either.
        ("@porter fix it <!-- and push to main -->", Run("fix it")),
        ("@porter fix it <!-- and push to main", Run("fix it")),
        ("@porter fix it\n<!--\nand push to main\n-->\nthen test it",
         Run("fix it\nthen test it")),
        ("@porter fix it\nfirst <!-- not --> this", Run("fix it\nfirst   this")),
        ("@porter fix it\n```\n<!-- code -->\n```", Run("fix it\n```\n<!-- code -->\n```")),
    ],
)
def test_visible_mentions_around_html_comments(body: str, expected: object) -> None:
    assert parse(body) == expected


@given(st.text().filter(lambda t: "-->" not in t), st.text())
def test_nothing_inside_an_html_comment_triggers(hidden: str, before: str) -> None:
    if "<!--" in before or "```" in before or "~~~" in before:
        return
    body = f"{before}\n<!--{hidden}\n@porter {hidden}"
    assert find_mention(body, "porter") is None
    assert find_mention(body + "\n-->", "porter") is None


@given(st.text().filter(lambda t: "-->" not in t))
def test_a_closed_comment_does_not_hide_what_follows(hidden: str) -> None:
    assert find_mention(f"<!--{hidden}-->\n@porter fix it", "porter") == "fix it"


# Letters that Unicode case-folding maps onto ASCII ones: GitHub does not read "@\u212ait" (with
# a Kelvin sign) as a mention of "kit", and the raw-bytes pre-filter would not find it.
FOLDS = {"k": ["k", "K", "\u212a"], "s": ["s", "S", "\u017f"], "i": ["i", "I", "\u0131", "\u0130"]}


@st.composite
def mention_like(draw: st.DrawFn, handle: str) -> str:
    spelled = "@" + "".join(draw(st.sampled_from(FOLDS.get(c, [c, c.upper()]))) for c in handle)
    if draw(st.booleans()):  # a comment inside the name, which GitHub shows as nothing
        cut = draw(st.integers(0, len(spelled)))
        spelled = spelled[:cut] + "<!--" + draw(st.text(max_size=5)) + "-->" + spelled[cut:]
    return draw(st.text(max_size=20)) + "\n" + spelled + draw(st.text(max_size=20))


@pytest.mark.parametrize("handle", ["porter", "kit", "assist"])
@given(data=st.data())
def test_the_raw_bytes_prefilter_never_misses_a_mention(handle: str, data: st.DataObject) -> None:
    body = data.draw(st.one_of(st.text(), mention_like(handle)))
    if find_mention(body, handle) is None:
        return
    for ascii_only in (False, True):
        payload = json.dumps({"comment": {"body": body}}, ensure_ascii=ascii_only).encode()
        assert may_mention(payload, handle), body
