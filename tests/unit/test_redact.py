from __future__ import annotations

import base64
import itertools
import json
import re
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from porter.redact import PLACEHOLDER, Redactor, StreamRedactor
from tests.fakes.entrypoint_module import load

CANARY = "Zq9x-canary/Pw+7=K"
REDACTOR = Redactor([CANARY])
B = CANARY.encode()

# Substrings that can start a well-known token shape; text free of them is left alone.
TRIGGERS = (
    "sk-",
    "gh",
    "github_pat_",
    "aiza",
    "fm1",
    "fm2",
    "fo1",
    "akia",
    "asia",
    "xox",
    "://",
    "authorization",
    "api-key",
    "bearer",
    "-----begin",
    "prt_",
    "plt_",
    "key=",
    "token=",
    "secret=",
    "password=",
)


# Line breaks as JSON writes them: "\n", "\r" (and "\\n", "\\r" for JSON inside JSON).
ESCAPED_BREAK = re.compile(r"\\{1,2}[rn]")


def joined(text: str) -> str:
    """The text with line breaks, raw or JSON-escaped, and the indentation around them removed."""
    text = ESCAPED_BREAK.sub("\n", text).replace("\r", "\n")
    return "".join(line.strip(" \t") for line in text.split("\n"))


def leaks(output: str, secret: str = CANARY) -> list[str]:
    """The forms of ``secret`` still visible in ``output`` (raw, even when split, or encoded)."""
    data = secret.encode()
    forms = {
        "raw": secret,
        "hex": data.hex(),
        "percent": quote(secret, safe=""),
        "json": json.dumps(secret)[1:-1],
        "base64": base64.b64encode(data).decode().rstrip("="),
        "base64url": base64.urlsafe_b64encode(data).decode().rstrip("="),
    }
    return [name for name, form in forms.items() if form in output or form in joined(output)]


def test_raw_secret() -> None:
    assert REDACTOR.redact(f"token is {CANARY}, keep it") == f"token is {PLACEHOLDER}, keep it"


def test_the_entrypoint_writes_the_same_placeholder() -> None:
    # A log is redacted by the entrypoint in the machine and again by Porter: one spelling.
    assert load("redact").REDACTED == PLACEHOLDER


def test_every_occurrence_and_overlaps_are_replaced() -> None:
    other = CANARY[5:] + "-tail"  # overlaps the canary's second half
    redactor = Redactor([CANARY, other])
    out = redactor.redact(f"{CANARY}{other[len(CANARY) - 5 :]} and {CANARY}")
    assert out == f"{PLACEHOLDER} and {PLACEHOLDER}"


@pytest.mark.parametrize(
    "encoded",
    [
        base64.b64encode(B).decode(),
        base64.b64encode(B).decode().rstrip("="),
        base64.urlsafe_b64encode(B).decode(),
        base64.urlsafe_b64encode(B).decode().rstrip("="),
        B.hex(),
        B.hex().upper(),
        quote(CANARY, safe=""),
        re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quote(CANARY, safe="")),
        quote(CANARY),
        quote_plus(CANARY),
        json.dumps(CANARY)[1:-1],
        json.dumps(CANARY)[1:-1].replace("/", "\\/"),
    ],
)
def test_encoded_forms(encoded: str) -> None:
    out = REDACTOR.redact(f"value: {encoded} end")
    assert out == f"value: {PLACEHOLDER} end"


ESCAPED = 'say "hi"\\now\n\tthen'


@pytest.mark.parametrize(
    "encoded",
    [
        json.dumps(ESCAPED)[1:-1],
        json.dumps(ESCAPED, ensure_ascii=False)[1:-1],
        json.dumps(json.dumps(ESCAPED)[1:-1])[1:-1],  # JSON inside a JSON string
        quote(ESCAPED, safe=""),
        quote_plus(ESCAPED),
        ESCAPED.encode().hex(),
    ],
)
def test_escaped_forms_of_a_secret_with_quotes_and_control_characters(encoded: str) -> None:
    out = Redactor([ESCAPED]).redact(f"value: {encoded} end")
    assert out == f"value: {PLACEHOLDER} end"


@pytest.mark.parametrize("urlsafe", [False, True])
@pytest.mark.parametrize("before", range(6))
@pytest.mark.parametrize("after", range(4))
def test_base64_inside_a_longer_blob_at_every_alignment(
    before: int, after: int, urlsafe: bool
) -> None:
    blob = bytes(range(200, 200 + before)) + B + bytes(range(10, 10 + after))
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    out = REDACTOR.redact(f"Basic {encode(blob).decode()} ok")
    assert PLACEHOLDER in out and out.endswith(" ok")
    assert not leaks(out)
    # No secret bits survive either: what is left decodes to none of the canary's bytes.
    left, right = out[len("Basic ") : -len(" ok")].split(PLACEHOLDER)
    assert len(left) <= -(-before * 4 // 3) and len(right) <= -(-after * 4 // 3) + 2


def test_short_secrets_are_replaced_raw_but_not_encoded() -> None:
    redactor = Redactor(["abcd", "xyz", "  "])
    assert redactor.redact("abcd xyz") == f"{PLACEHOLDER} xyz"
    assert redactor.redact(b"abcd".hex()) == b"abcd".hex()


def test_surrounding_whitespace_of_a_secret_is_ignored() -> None:
    assert Redactor([f"  {CANARY}\n"]).redact(f"x={CANARY}.") == f"x={PLACEHOLDER}."


@pytest.mark.parametrize("separator", ["\n", "\r\n", "\n    ", "  \n\t", "\n\n"])
def test_split_across_two_lines_at_every_position(separator: str) -> None:
    for cut in range(1, len(CANARY)):
        text = f"first: {CANARY[:cut]}{separator}{CANARY[cut:]} done"
        out = REDACTOR.redact(text)
        assert out == f"first: {PLACEHOLDER} done", (cut, out)


@pytest.mark.parametrize(
    "separator",
    ["\\n", "\\r\\n", "\\r", "\\n    ", "\\n\\t\\t", "  \\n", "\\n\\n", "\\\\n", "\\\\r\\\\n"],
)
def test_split_by_an_escaped_line_break_at_every_position(separator: str) -> None:
    # How a secret wrapped over two lines looks inside a JSON log line (or JSON inside JSON).
    for cut in range(1, len(CANARY)):
        text = f'{{"text": "first: {CANARY[:cut]}{separator}{CANARY[cut:]} done"}}'
        out = REDACTOR.redact(text)
        assert out == f'{{"text": "first: {PLACEHOLDER} done"}}', (cut, out)


@pytest.mark.parametrize("slash", ["/", "\\/"])
def test_escaped_split_of_a_secret_json_had_to_escape(slash: str) -> None:
    secret = 'pass"word/with\\slash'
    escaped = json.dumps(secret)[1:-1].replace("/", slash)
    # An encoder breaks a line between escape sequences, never inside one.
    cuts = itertools.accumulate(len(token) for token in re.findall(r"\\.|.", escaped))
    for cut in list(cuts)[:-1]:
        out = Redactor([secret]).redact(f"x {escaped[:cut]}\\n{escaped[cut:]} y")
        assert out == f"x {PLACEHOLDER} y", (cut, out)


def test_an_escaped_backslash_keeps_the_n_after_it_as_text() -> None:
    # JSON "abcd\\\\\\nefgh" is "abcd", a backslash, a line break, "efgh": not "abcdefgh".
    redactor = Redactor(["abcdefgh"])
    text = "abcd" + "\\" * 3 + "nefgh"
    assert redactor.redact(text) == text
    assert redactor.redact("abcd\\nefgh") == PLACEHOLDER


def test_split_by_a_real_crlf() -> None:
    text = f"first: {CANARY[:7]}\r\n{CANARY[7:]} done"
    assert REDACTOR.redact(text) == f"first: {PLACEHOLDER} done"
    stream = StreamRedactor(REDACTOR)
    assert feed_all(stream, text, [text.index("\n")]) == f"first: {PLACEHOLDER} done"


def test_split_at_every_character() -> None:
    text = "begin " + "\n  ".join(CANARY) + " end"
    assert REDACTOR.redact(text) == f"begin {PLACEHOLDER} end"


def test_wrapped_base64_is_found() -> None:
    encoded = base64.b64encode(b"prefix bytes:" + B + b" and more after it").decode()
    wrapped = "\n".join(encoded[i : i + 8] for i in range(0, len(encoded), 8))
    out = REDACTOR.redact(wrapped)
    assert PLACEHOLDER in out and not leaks(out)


def test_secret_that_is_itself_multiline() -> None:
    pem_like = "line-one-of-secret\nline-two-of-secret"
    redactor = Redactor([pem_like])
    assert redactor.redact(f"a {pem_like} b") == f"a {PLACEHOLDER} b"
    assert redactor.redact(f"a {pem_like.replace(chr(10), chr(13) + chr(10))} b") == (
        f"a {PLACEHOLDER} b"
    )
    assert redactor.redact(json.dumps(pem_like)) == f'"{PLACEHOLDER}"'


GHS_STATELESS = "ghs_123456_" + "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxMjM0NTYifQ.c2lnbmF0dXJl" * 9


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GITHUB_TOKEN=ghp_" + "A1b2" * 9, "GITHUB_TOKEN=[REDACTED]"),
        ("gho_" + "x" * 36 + " ghu_" + "y" * 36, "[REDACTED] [REDACTED]"),
        ("ghr_" + "z9" * 38 + ".", "[REDACTED]."),
        (f"token {GHS_STATELESS} ok", "token [REDACTED] ok"),
        ("github_pat_11ABCDEFG0_" + "q" * 59, "[REDACTED]"),
        ("key: sk-ant-api03-" + "a1_B-" * 18 + "AA", "key: [REDACTED]"),
        ("OPENAI_API_KEY=sk-proj-" + "Ab1" * 20, "OPENAI_API_KEY=[REDACTED]"),
        ("sk-" + "T3BlbkFJ" * 6, "[REDACTED]"),
        ("maps AIzaSyA-" + "k" * 32 + " x", "maps [REDACTED] x"),
        ("FLY=FlyV1 fm2_lJPECAAAAAAAAMSQxBBQ+a/b==,fm2_Qz1234567890abc", "FLY=FlyV1 [REDACTED]"),
        ("t=fm2_lJPECAAAAAAAAMSQxBBQ+ab", "t=[REDACTED]"),
        ("Authorization: Bearer eyJhbGciOi.J9x_-", "Authorization: Bearer [REDACTED]"),
        ("authorization: token ghs_short123", "authorization: token [REDACTED]"),
        ('{"Authorization": "Basic eC1hY2Nlc3M="}', '{"Authorization": "Basic [REDACTED]"}'),
        (
            "extraHeader=AUTHORIZATION: basic eC1hY2Nlc3M=",
            "extraHeader=AUTHORIZATION: basic [REDACTED]",
        ),
        ("x-api-key: abcdefgh12345678", "x-api-key: [REDACTED]"),
        ("-H 'Bearer abcdefghij0123456789xyz'", "-H 'Bearer [REDACTED]'"),
        (
            "git clone https://x-access-token:ghs_AbC123@github.com/o/r.git",
            "git clone https://x-access-token:[REDACTED]@github.com/o/r.git",
        ),
        ("postgres://porter:hunter2pw@db:5432/x", "postgres://porter:[REDACTED]@db:5432/x"),
        ("id AKIAIOSFODNN7EXAMPLE.", "id [REDACTED]."),
        ("xoxb-123456789012-abcdefghij", "[REDACTED]"),
        (
            "key:\n-----BEGIN RSA PRIVATE KEY-----\nMIIEow+/==\nProc-Type: 4,ENCRYPTED\n"
            "DEK-Info: AES-128-CBC,AB12\n\nabc\n-----END RSA PRIVATE KEY-----\nnext line",
            "key:\n[REDACTED]\nnext line",
        ),
        (
            '{"pem": "-----BEGIN PRIVATE KEY-----\\nMIIEvQ\\nAAA=\\n-----END PRIVATE KEY-----\\n"}',
            '{"pem": "[REDACTED]\\n"}',
        ),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1r\nZXk (cut off", "[REDACTED](cut off"),
    ],
)
def test_well_known_token_shapes_without_being_told(text: str, expected: str) -> None:
    assert Redactor([]).redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer <token>",
        "Authorization: Bearer $GITHUB_TOKEN",
        "the bearer of bad news",
        "ssh://git@github.com/o/r.git and https://github.com/o/r",
        "ghp_short sk-short AIzaShort",
        "risk-assessment-framework-version",
        "-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----",
        "deadbeef" * 8,
    ],
)
def test_harmless_look_alikes_are_left_alone(text: str) -> None:
    assert Redactor([CANARY]).redact(text) == text


trigger_free_text = st.text(
    alphabet=st.characters(codec="utf-8") | st.sampled_from(" \t\r\n"), max_size=300
).filter(lambda t: not any(trigger in t.lower() for trigger in TRIGGERS))


@given(text=trigger_free_text)
@example(text="line\n  more lines\r\n")
def test_text_without_secrets_comes_back_unchanged(text: str) -> None:
    assume(not leaks(text))
    assert REDACTOR.redact(text) == text


@given(before=trigger_free_text, after=trigger_free_text)
def test_only_the_secret_is_replaced(before: str, after: str) -> None:
    assume(not leaks(before + after))
    assert REDACTOR.redact(before + CANARY + after) == before + PLACEHOLDER + after


def canary_form(draw: st.DrawFn) -> str:  # a composite strategy, built in log_text
    kind = draw(st.sampled_from(
        ["raw", "b64", "blob", "hex", "json", "split", "escaped-split", "pct", "token"]))
    if kind == "raw":
        return CANARY
    if kind == "b64":
        return base64.b64encode(B).decode()
    if kind == "blob":
        blob = draw(st.binary(max_size=5)) + B + draw(st.binary(max_size=5))
        return base64.b64encode(blob).decode()
    if kind == "hex":
        return B.hex()
    if kind == "json":
        return json.dumps(CANARY)
    if kind == "pct":
        return quote(CANARY, safe="")
    if kind == "token":
        return "ghp_" + "k" * 36
    cut = draw(st.integers(1, len(CANARY) - 1))
    if kind == "escaped-split":
        breaks = ["\\n", "\\r\\n", "\\n   ", "\\r", "\\\\n", " \\n\\t"]
        return CANARY[:cut] + draw(st.sampled_from(breaks)) + CANARY[cut:]
    return CANARY[:cut] + draw(st.sampled_from(["\n", "\r\n", "\n   "])) + CANARY[cut:]


@st.composite
def log_text(draw: st.DrawFn) -> str:
    # Long filler makes a stream release text before the end, not only when flushed.
    filler = st.integers(0, 500).map(lambda n: "log line\n" * n)
    canary = st.composite(canary_form)()
    pieces = draw(st.lists(st.one_of(trigger_free_text, canary, filler), max_size=10))
    return draw(st.sampled_from([" ", "\n", ""])).join(pieces)


@given(text=log_text())
def test_redaction_is_idempotent_and_leaves_nothing(text: str) -> None:
    once = REDACTOR.redact(text)
    assert REDACTOR.redact(once) == once
    assert not leaks(once)


def feed_all(stream: StreamRedactor, text: str, cuts: list[int]) -> str:
    bounds = [0, *sorted(cuts), len(text)]
    out = [stream.feed(text[a:b]) for a, b in itertools.pairwise(bounds)]
    return "".join(out) + stream.flush()


def test_stream_catches_a_secret_across_every_chunk_boundary() -> None:
    forms = [
        CANARY,
        base64.b64encode(B).decode(),
        CANARY[:9] + "\n    " + CANARY[9:],
        CANARY[:4] + "\\r\\n" + CANARY[4:],
        CANARY[:11] + "\\n  " + CANARY[11:],
        "ghp_" + "k" * 36,
        "Authorization: Bearer abcdefgh12345678",
    ]
    hold = StreamRedactor(REDACTOR).hold
    before = "lorem ipsum dolor\n" * (hold // 6)  # > 2 * hold, so the first chunk is released
    middle = " middle ".join(forms)
    text = before + middle + " end " + "lorem ipsum dolor " * (hold // 9)
    expected = REDACTOR.redact(text)
    assert expected.count(PLACEHOLDER) == len(forms)
    start, end = len(before), len(before) + len(middle)
    # The chunk boundary falls at every position of every form, and so does the cut of the
    # first release, which lands about `hold` characters before the boundary.
    boundaries = [*range(start - 5, end + 5), *range(start + hold - 10, end + hold + 10)]
    for boundary in boundaries:
        stream = StreamRedactor(REDACTOR)
        assert feed_all(stream, text, [boundary]) == expected, boundary


def test_stream_holds_back_only_a_tail() -> None:
    stream = StreamRedactor(REDACTOR)
    first = stream.feed("x" * 5000 + " " + CANARY[:6])
    assert first == "x" * (5000 + 7 - stream.hold)
    second = stream.feed(CANARY[6:] + " done")
    assert "Zq9" not in second
    assert first + second + stream.flush() == "x" * 5000 + f" {PLACEHOLDER} done"
    assert stream.flush() == ""


def test_stream_releases_an_endless_token_past_the_limit() -> None:
    stream = StreamRedactor(Redactor([]), max_secret_len=64)
    out = stream.feed("ghp_" + "a" * (stream.limit + 10))
    assert out.startswith(PLACEHOLDER)
    assert "ghp_" not in out + stream.flush()


@settings(max_examples=150)
@given(text=log_text(), data=st.data())
def test_stream_output_matches_whole_redaction_for_any_chunking(
    text: str, data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(text)), max_size=40))
    max_secret_len = data.draw(st.sampled_from([16, 1024]))
    out = feed_all(StreamRedactor(REDACTOR, max_secret_len=max_secret_len), text, cuts)
    assert not leaks(out)
    assert out == REDACTOR.redact(text)


def test_large_input_is_handled_in_linear_time() -> None:
    # Not a timing assertion: pathological shapes simply have to finish.
    text = ("a\n " * 20000) + (" " * 50000) + ("://a:" * 5000) + CANARY
    assert REDACTOR.redact(text).endswith(PLACEHOLDER)
