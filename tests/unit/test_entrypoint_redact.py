"""The entrypoint's own redaction of its secrets (container/porter_entrypoint/redact.py)."""

from __future__ import annotations

import base64

import pytest

from tests.fakes.entrypoint_module import load

redact = load("redact")

TOKEN = "prt_runtoken_9f8e7d6c5b4a39281706f5e4d3c2b1a0"
REDACTOR = redact.Redactor([TOKEN, "ghs_clone+/token"])


def test_a_secret_is_replaced_wherever_it_stands() -> None:
    text = f"token={TOKEN}; again:{TOKEN}\n"
    assert REDACTOR.redact(text) == "token=[REDACTED]; again:[REDACTED]\n"


@pytest.mark.parametrize("wrap", ["\n", "\r\n"])
def test_a_secret_wrapped_across_lines_is_replaced(wrap: str) -> None:
    wrapped = TOKEN[:20] + wrap + TOKEN[20:40] + wrap + TOKEN[40:]
    assert REDACTOR.redact(f"<{wrapped}>") == "<[REDACTED]>"


@pytest.mark.parametrize("prefix", ["", "x", "xy", "x-access-token:"])
def test_a_secret_inside_base64_is_replaced_at_any_alignment(prefix: str) -> None:
    encoded = base64.b64encode(f"{prefix}{TOKEN}!".encode()).decode()
    out = REDACTOR.redact(encoded)
    # All but the few characters that mix the secret with its neighbours are gone.
    assert out.count("[REDACTED]") == 1
    assert len(out) <= len(encoded) - len(TOKEN)


def test_url_safe_base64_is_replaced_too() -> None:
    secret = "ghs_clone+/token"
    for prefix in (b"", b"a", b"ab"):
        standard = base64.b64encode(prefix + secret.encode()).decode()
        urlsafe = base64.urlsafe_b64encode(prefix + secret.encode()).decode()
        assert "[REDACTED]" in REDACTOR.redact(standard)
        assert "[REDACTED]" in REDACTOR.redact(urlsafe)


def test_short_values_are_settings_not_secrets() -> None:
    redactor = redact.Redactor(["auto", "1", "true", ""])
    assert redactor.redact("GOOSE_MODE=auto true 1") == "GOOSE_MODE=auto true 1"
    assert redactor.holdback == 0
    assert redactor.safe_cut("anything", 3) == 3


def test_the_holdback_covers_the_longest_wrapped_secret() -> None:
    assert REDACTOR.holdback == 3 * len(TOKEN)


def test_a_cut_inside_a_secret_moves_past_it_and_others_stay() -> None:
    text = f"before {TOKEN} after"
    start = text.index(TOKEN)
    assert REDACTOR.safe_cut(text, start + 5) == start + len(TOKEN)
    assert REDACTOR.safe_cut(text, start) == start
    assert REDACTOR.safe_cut(text, start + len(TOKEN)) == start + len(TOKEN)
    assert REDACTOR.safe_cut(text, 3) == 3
