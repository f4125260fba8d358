"""Body bounds: the in-flight budget's bookkeeping; read_bounded over a scripted ASGI receive."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request

from porter.errors import ConfigError, PayloadTooLarge
from porter.settings import Settings
from porter.web.bodies import (
    SMALL_BODY_BYTES,
    BodiesBusy,
    BodyAbandoned,
    BodyBudget,
    BodyRefused,
    BodyTimeout,
    BodyTooLarge,
    read_bounded,
    refused_response,
)

KIB = 1024
MIB = 1024 * KIB
LARGE = SMALL_BODY_BYTES + 1


# -- the budget -------------------------------------------------------------------------------


def test_small_bodies_fill_the_whole_budget_and_no_more() -> None:
    budget = BodyBudget(4 * KIB)
    assert budget.take(3 * KIB, body_size=3 * KIB)
    assert budget.take(1 * KIB, body_size=1 * KIB)
    assert not budget.take(1, body_size=1)
    assert budget.in_flight == 4 * KIB


def test_what_is_given_back_can_be_taken_again() -> None:
    budget = BodyBudget(4 * KIB)
    assert budget.take(4 * KIB, body_size=4 * KIB)
    budget.give_back(4 * KIB)
    assert budget.in_flight == 0
    assert budget.take(2 * KIB, body_size=2 * KIB)
    assert budget.take(2 * KIB, body_size=2 * KIB)


def test_large_bodies_leave_the_last_quarter_to_small_ones() -> None:
    budget = BodyBudget(8 * MIB)
    assert budget.take(3 * MIB, body_size=3 * MIB)
    assert budget.take(3 * MIB, body_size=3 * MIB)  # 6 MiB: three quarters
    assert not budget.take(LARGE, body_size=LARGE)
    assert budget.take(SMALL_BODY_BYTES, body_size=SMALL_BODY_BYTES)
    assert budget.take(SMALL_BODY_BYTES, body_size=SMALL_BODY_BYTES)
    assert not budget.take(1, body_size=1)


def test_a_lone_body_is_let_in_even_past_the_limit() -> None:
    budget = BodyBudget(1 * MIB)
    assert budget.take(26 * MIB, body_size=26 * MIB)
    assert not budget.take(1, body_size=1)
    budget.give_back(26 * MIB)
    assert BodyBudget(0).take(10, body_size=10)


def test_a_body_counted_as_it_arrives_is_held_to_the_large_cap_once_it_grows_large() -> None:
    budget = BodyBudget(8 * MIB)
    assert budget.take(5 * MIB, body_size=5 * MIB)
    assert budget.take(SMALL_BODY_BYTES, body_size=SMALL_BODY_BYTES)  # 6 MiB
    assert not budget.take(1, body_size=SMALL_BODY_BYTES + 1)


def test_giving_back_more_than_was_taken_is_a_bug() -> None:
    budget = BodyBudget(4 * KIB)
    assert budget.take(1 * KIB, body_size=1 * KIB)
    with pytest.raises(ValueError, match="giving back"):
        budget.give_back(2 * KIB)


SIZES = st.one_of(st.integers(1, SMALL_BODY_BYTES), st.integers(LARGE, 10 * MIB))


@given(st.lists(st.tuples(st.booleans(), SIZES), max_size=60))
def test_in_flight_never_passes_the_limit_unless_one_body_holds_it_all(
    steps: list[tuple[bool, int]],
) -> None:
    budget = BodyBudget(8 * MIB)
    held: list[int] = []  # given back last in, first out, so held[0] is the oldest
    for give, size in steps:
        if give and held:
            budget.give_back(held.pop())
        elif budget.take(size, body_size=size):
            held.append(size)
        assert budget.in_flight == sum(held)
        assert budget.in_flight <= budget.limit or len(held) == 1
        large = sum(h for h in held if h > SMALL_BODY_BYTES)
        assert large <= budget.large_limit or len(held) == 1 or held[0] > budget.large_limit


# -- settings ---------------------------------------------------------------------------------


def test_the_bounds_default_to_10_s_and_64_mib_and_a_zero_timeout_is_refused() -> None:
    defaults = Settings.from_mapping({})
    assert (defaults.body_timeout, defaults.max_inflight_body_bytes) == (10, 64 * MIB)
    chosen = Settings.from_mapping({"PORTER_BODY_TIMEOUT": "1",
                                    "PORTER_MAX_INFLIGHT_BODY_BYTES": "0"})
    assert (chosen.body_timeout, chosen.max_inflight_body_bytes) == (1, 0)
    with pytest.raises(ConfigError, match="PORTER_BODY_TIMEOUT: expected a whole number ≥ 1"):
        Settings.from_mapping({"PORTER_BODY_TIMEOUT": "0"})


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("refusal", [BodyTooLarge(), BodyTimeout(), BodyAbandoned(),
                                     BodiesBusy(retry_after=9.2)])
def test_every_refusal_closes_the_connection(refusal: BodyRefused) -> None:
    response = refused_response(None, refusal)  # type: ignore[arg-type]
    assert response.headers["connection"] == "close"
    assert response.status_code == refusal.status_code


def test_busy_says_when_to_retry_and_too_large_is_still_a_413() -> None:
    assert BodiesBusy(retry_after=9.2).headers["Retry-After"] == "10"
    assert BodiesBusy(retry_after=0).headers["Retry-After"] == "1"
    assert isinstance(BodyTooLarge(), PayloadTooLarge)
    assert BodyTooLarge().status_code == 413


# -- read_bounded -----------------------------------------------------------------------------


class Receive:
    """An ASGI receive that plays the given chunks, then (when `then` says) stalls or hangs up."""

    def __init__(self, chunks: Sequence[bytes], then: str = "end") -> None:
        self.chunks = list(chunks)
        self.then = then
        self.calls = 0

    async def __call__(self) -> dict[str, Any]:
        self.calls += 1
        if self.chunks:
            chunk = self.chunks.pop(0)
            return {"type": "http.request", "body": chunk,
                    "more_body": bool(self.chunks) or self.then != "end"}
        if self.then == "stall":
            await asyncio.Event().wait()
        if self.then == "hang up":
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": b"", "more_body": False}


def request(receive: Receive, length: int | None) -> Request:
    headers = [] if length is None else [(b"content-length", str(length).encode())]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": headers}, receive)


async def test_a_body_within_bounds_is_read_whole_and_its_bytes_given_back() -> None:
    budget = BodyBudget(1 * MIB)
    receive = Receive([b"ab", b"cd", b"e"])
    assert await read_bounded(request(receive, 5), 10, budget=budget, within=5) == b"abcde"
    assert budget.in_flight == 0


async def test_a_declared_body_that_does_not_fit_is_refused_unread() -> None:
    budget = BodyBudget(8 * MIB)
    assert budget.take(6 * MIB, body_size=6 * MIB)
    receive = Receive([b"x" * 10])
    with pytest.raises(BodiesBusy):
        await read_bounded(request(receive, 2 * MIB), 26 * MIB, budget=budget, within=10)
    assert receive.calls == 0
    assert budget.in_flight == 6 * MIB


async def test_a_body_without_length_is_counted_as_it_arrives_and_refused_when_full() -> None:
    budget = BodyBudget(8 * MIB)
    assert budget.take(7 * MIB, body_size=7 * MIB)
    receive = Receive([b"x" * (512 * KIB)] * 4)
    with pytest.raises(BodiesBusy):
        await read_bounded(request(receive, None), 26 * MIB, budget=budget, within=10)
    assert receive.calls == 3  # 1 MiB fitted; the third half-MiB did not
    assert budget.in_flight == 7 * MIB


@pytest.mark.parametrize(("chunks", "then", "length", "refusal"), [
    ([b"x" * 600], "end", None, BodyTooLarge),
    ([b"x" * 100], "stall", 500, BodyTimeout),
    ([b"x" * 100], "hang up", 500, BodyAbandoned),
])
async def test_every_refusal_mid_body_gives_its_bytes_back(
    chunks: list[bytes], then: str, length: int | None, refusal: type[BodyRefused]
) -> None:
    budget = BodyBudget(1 * MIB)
    with pytest.raises(refusal):
        await read_bounded(request(Receive(chunks, then), length), 512, budget=budget,
                           within=0.05)
    assert budget.in_flight == 0


async def test_a_declared_length_over_the_limit_is_refused_before_the_budget_is_asked() -> None:
    budget = BodyBudget(1 * MIB)
    receive = Receive([b"x"])
    with pytest.raises(BodyTooLarge):
        await read_bounded(request(receive, 513), 512, budget=budget, within=5)
    assert (receive.calls, budget.in_flight) == (0, 0)


async def test_without_budget_or_time_bound_it_reads_as_before() -> None:
    assert await read_bounded(request(Receive([b"{}"]), 2), 10) == b"{}"
