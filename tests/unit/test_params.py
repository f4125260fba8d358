from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from porter.errors import BadRequest
from porter.web.params import ascii_int


@pytest.mark.parametrize(("raw", "expected"), [(None, None), ("", None), ("0", 0), ("42", 42),
                                               ("007", 7), ("0" * 30 + "5", 5)])
def test_plain_numbers(raw: str | None, expected: int | None) -> None:
    assert ascii_int(raw, "n") == expected


@given(st.text())
def test_any_text_is_a_number_of_ascii_digits_or_a_bad_request(raw: str) -> None:
    try:
        value = ascii_int(raw, "n")
    except BadRequest as error:
        assert error.message.startswith("n ")
        return
    assert value is None or (raw.isascii() and str(value) == raw.lstrip("0").rjust(1, "0"))
