"""The price table and the cost of a call (porter/gateway/prices.py)."""

from __future__ import annotations

import calendar
import re

import pytest

from porter.gateway.prices import PRICES, PRICES_AS_OF, cost, lookup, price_for
from porter.gateway.usage import Usage


def day(text: str) -> float:
    year, month, date = (int(part) for part in text.split("-"))
    return float(calendar.timegm((year, month, date, 12, 0, 0)))


NOW = day(PRICES_AS_OF)


def test_the_table_is_dated_and_sane() -> None:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", PRICES_AS_OF)
    for name, schedule in PRICES.items():
        assert schedule[0][0] == "", name
        assert [since for since, _ in schedule] == sorted(since for since, _ in schedule), name
        for _, price in schedule:
            for rates in (price.rates, price.long):
                if rates is None:
                    continue
                assert 0 < rates.input <= rates.output, name
                assert rates.cache_read is None or rates.cache_read <= rates.input, name
                assert rates.cache_write is None or rates.cache_write >= rates.input, name
        assert lookup(name) == name


def test_anthropic_cost_with_cache_reads_and_both_kinds_of_writes() -> None:
    usage = Usage(input_tokens=1000, output_tokens=2000, cache_read_tokens=100_000,
                  cache_write_tokens=10_000, cache_write_long_tokens=2000)
    # $4 in, $20 out, $0.20 read, $5 5-minute write, $8 1-hour write, per million tokens
    expected = (1000 * 4 + 2000 * 20 + 100_000 * 0.20 + 8000 * 5 + 2000 * 8) / 1e6
    assert cost("claude-opus-5-5", usage, at=NOW) == pytest.approx(expected)
    assert expected == pytest.approx(0.12)


def test_openai_cost_with_cached_input_and_cache_writes() -> None:
    usage = Usage(input_tokens=2000, output_tokens=900, cache_read_tokens=32_000,
                  cache_write_tokens=6000)
    expected = (2000 * 2 + 900 * 10 + 32_000 * 0.10 + 6000 * 2.50) / 1e6
    assert cost("gpt-6.2-sol", usage, at=NOW) == pytest.approx(expected)


def test_gemini_cost_counts_thinking_as_output() -> None:
    usage = Usage(input_tokens=4000, output_tokens=2000, cache_read_tokens=8000)
    expected = (4000 * 0.75 + 2000 * 3.75 + 8000 * 0.075) / 1e6
    assert cost("gemini-3.8-flash", usage, at=day("2026-12-15")) == pytest.approx(expected)


def test_no_cache_price_means_the_input_price() -> None:
    usage = Usage(input_tokens=0, output_tokens=0, cache_read_tokens=1_000_000,
                  cache_write_tokens=1_000_000)
    assert cost("gpt-5.5-pro", usage, at=NOW) == pytest.approx(60)  # $30 in, twice
    assert cost("gpt-4o", Usage(cache_write_tokens=1_000_000), at=NOW) == pytest.approx(2.5)


@pytest.mark.parametrize(("model", "name"), [
    ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
    ("claude-opus-4-1@20250805", "claude-opus-4-1"),
    ("us.anthropic.claude-opus-4-1-20250805-v1:0", "claude-opus-4-1"),
    ("claude-sonnet-5-5[1m]", "claude-sonnet-5-5"),
    ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
    ("Claude-Haiku-4-5", "claude-haiku-4-5"),
    ("gpt-4o-2024-08-06", "gpt-4o"),
    ("openai/gpt-5-mini", "gpt-5-mini"),
    ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
    ("models/gemini-2.5-flash-preview-09-2025", "gemini-2.5-flash"),
    ("gemini-2.5-flash-lite-preview-06-17", "gemini-2.5-flash-lite"),
    ("gemini-3.1-pro-preview", "gemini-3.1-pro"),
])
def test_dated_and_aliased_ids_find_their_model(model: str, name: str) -> None:
    assert lookup(model) == name


@pytest.mark.parametrize("model", [
    "gpt-6-sol-pro",  # an unknown variant is not its base model's price
    "gpt-5.4-turbo", "claude-opus-9", "llama-4-maverick", "", None, "gpt-6",
])
def test_unknown_models_have_no_price(model: str | None) -> None:
    assert lookup(model) is None
    assert cost(model, Usage(input_tokens=1000), at=NOW) is None


def test_long_context_tiers_apply_to_the_whole_request() -> None:
    short = Usage(input_tokens=200_000, cache_read_tokens=72_000, output_tokens=1000)
    assert short.prompt_tokens == 272_000
    assert cost("gpt-6.2-sol", short, at=NOW) == pytest.approx(
        (200_000 * 2 + 72_000 * 0.10 + 1000 * 10) / 1e6)
    long = Usage(input_tokens=200_001, cache_read_tokens=72_000, output_tokens=1000)
    assert cost("gpt-6.2-sol", long, at=NOW) == pytest.approx(
        (200_001 * 4 + 72_000 * 0.20 + 1000 * 15) / 1e6)
    # Haiku 5.5 above 100K prompt tokens, Gemini 2.5 Pro above 200K
    assert cost("claude-haiku-5-5", Usage(input_tokens=100_001), at=NOW) == pytest.approx(
        100_001 * 0.50 / 1e6)
    assert cost("claude-haiku-5-5", Usage(input_tokens=100_000), at=NOW) == pytest.approx(
        100_000 * 0.10 / 1e6)
    assert cost("gemini-2.5-pro", Usage(input_tokens=250_000, output_tokens=10), at=NOW) \
        == pytest.approx((250_000 * 2.50 + 10 * 15) / 1e6)


def test_scheduled_prices_change_on_their_day() -> None:
    million = Usage(input_tokens=1_000_000)
    assert cost("gemini-4-argon", million, at=day("2026-11-30")) == pytest.approx(2)
    assert cost("gemini-4-argon", million, at=day("2026-12-01")) == pytest.approx(4)
    assert cost("gemini-3.8-flash", million, at=day("2026-12-31")) == pytest.approx(0.75)
    assert cost("gemini-3.8-flash", million, at=day("2027-01-01")) == pytest.approx(1.50)
    reads = Usage(cache_read_tokens=1_000_000)
    assert cost("claude-sonnet-5-5", reads, at=day("2026-10-06")) == pytest.approx(0.20)
    assert cost("claude-sonnet-5-5", reads, at=day("2026-10-07")) == pytest.approx(0.10)
    assert price_for("gpt-6.2-sol", at=day("2020-01-01")) is not None


def test_a_large_agent_run_adds_up() -> None:
    # Forty Claude Code turns on a growing, mostly cached context.
    total = 0.0
    for turn in range(40):
        usage = Usage(input_tokens=300, output_tokens=800,
                      cache_read_tokens=20_000 + turn * 3000, cache_write_tokens=3000)
        turn_cost = cost("claude-sonnet-5-5-20260928", usage, at=NOW)
        assert turn_cost is not None
        total += turn_cost
    expected = sum(300 * 2 + 800 * 10 + (20_000 + t * 3000) * 0.10 + 3000 * 2.50
                   for t in range(40)) / 1e6
    assert total == pytest.approx(expected)
