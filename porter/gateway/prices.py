"""What a model call costs: the price table, in USD per million tokens, kept here alone. Pure.

Prices as the providers published them on PRICES_AS_OF (standard tier: no Batch, Flex, Priority
or fast-mode rates, which an agent's calls do not use), from:
- Anthropic: https://platform.claude.com/docs/en/about-claude/pricing and each model's page
  (https://platform.claude.com/docs/en/models/…/overview). Claude Sonnet 5.5's cache reads were
  cut from $0.20 to $0.10 on 2026-10-07.
- OpenAI: https://developers.openai.com/api/docs/pricing and each model's page
  (https://developers.openai.com/api/docs/models/…). GPT-6 models: above 272K input tokens the
  whole request costs twice the input and cache rates and 1.5 times the output rate. Cache writes
  are the 30-minute ones; models with no cache-write price bill writes as input.
- Google: https://ai.google.dev/gemini-api/docs/pricing. Gemini bills thinking as output;
  Gemini 3.5 Flash's cache reads are its input rate less implicit caching's 90%.
Scheduled changes the pages announce are in the table with their dates (Gemini 4 Argon's launch
price ended 2026-11-30; Gemini 3.8 Flash's ends 2026-12-31).

A model missing here has no price: its calls are metered (tokens) but cost None, and Porter says
so rather than guess. To update: change the rows, PRICES_AS_OF and, if moved, the URLs above.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from porter.gateway.usage import Usage

PRICES_AS_OF = "2026-12-01"
PER = 1_000_000  # prices are per million tokens


@dataclass(frozen=True)
class Rates:
    input: float
    output: float
    cache_read: float | None = None  # None: no cache discount, reads cost input
    cache_write: float | None = None  # None: no cache-write premium, writes cost input
    cache_write_long: float | None = None  # Anthropic's 1-hour writes; None: as cache_write


@dataclass(frozen=True)
class Price:
    rates: Rates
    # Long-context tier: a request whose whole prompt exceeds `above` tokens pays `long` on
    # every token of it, output included.
    long: Rates | None = None
    above: int = 0

    def rates_for(self, usage: Usage) -> Rates:
        if self.long is not None and usage.prompt_tokens > self.above:
            return self.long
        return self.rates

    def cost(self, usage: Usage) -> float:
        r = self.rates_for(usage)
        write = r.cache_write if r.cache_write is not None else r.input
        write_long = r.cache_write_long if r.cache_write_long is not None else write
        short_writes = usage.cache_write_tokens - usage.cache_write_long_tokens
        return (usage.input_tokens * r.input + usage.output_tokens * r.output
                + usage.cache_read_tokens * (r.cache_read if r.cache_read is not None
                                             else r.input)
                + short_writes * write + usage.cache_write_long_tokens * write_long) / PER


def _claude(inp: float, out: float, read: float, write: float, write_1h: float) -> Price:
    return Price(Rates(inp, out, read, write, write_1h))


def _gpt6(inp: float, read: float, write: float, out: float) -> Price:
    return Price(Rates(inp, out, read, write),
                 long=Rates(inp * 2, out * 1.5, read * 2, write * 2), above=272_000)


def _openai(inp: float, read: float | None, out: float) -> Price:
    return Price(Rates(inp, out, read))


def _gemini(inp: float, read: float, out: float, *,
            long: tuple[float, float, float] | None = None) -> Price:
    tier = Rates(long[0], long[2], long[1]) if long else None
    return Price(Rates(inp, out, read), long=tier, above=200_000 if long else 0)


_OPUS_45 = _claude(5, 25, 0.50, 6.25, 10)
_OPUS_4 = _claude(15, 75, 1.50, 18.75, 30)
_SONNET_4 = Price(Rates(3, 15, 0.30, 3.75, 6),  # prompts over 200K: the 1M-context rates
                  long=Rates(6, 22.50, 0.60, 7.50, 12), above=200_000)
_FABLE_51 = _claude(10, 50, 0.25, 12.50, 20)
_FABLE_5 = _claude(10, 50, 1, 12.50, 20)

# A price that changes on announced dates: (in force from this UTC date, price), oldest first.
Scheduled = tuple[tuple[str, Price], ...]

_TABLE: dict[str, Price | Scheduled] = {
    # -- Anthropic: input, output, cache read, 5-minute write, 1-hour write ----------------
    "claude-fable-5-1": _FABLE_51,
    "claude-mythos-5-1": _FABLE_51,
    "claude-fable-5": _FABLE_5,
    "claude-mythos-5": _FABLE_5,
    "claude-opus-5-5": _claude(4, 20, 0.20, 5, 8),
    "claude-opus-5": _OPUS_45,
    "claude-opus-4-8": _OPUS_45,
    "claude-opus-4-7": _OPUS_45,
    "claude-opus-4-6": _OPUS_45,
    "claude-opus-4-5": _OPUS_45,
    "claude-opus-4-1": _OPUS_4,
    "claude-opus-4": _OPUS_4,
    "claude-sonnet-5-5": (("", _claude(2, 10, 0.20, 2.50, 4)),
                          ("2026-10-07", _claude(2, 10, 0.10, 2.50, 4))),
    "claude-sonnet-5": _claude(2, 10, 0.20, 2.50, 4),
    "claude-sonnet-4-6": _claude(3, 15, 0.30, 3.75, 6),
    "claude-sonnet-4-5": _SONNET_4,
    "claude-sonnet-4": _SONNET_4,
    "claude-3-7-sonnet": _claude(3, 15, 0.30, 3.75, 6),
    # Haiku 5.5: a prompt over 100K tokens pays the higher rates on the whole request.
    "claude-haiku-5-5": Price(Rates(0.10, 0.50, 0.01, 0.125, 0.20),
                              long=Rates(0.50, 2.50, 0.05, 0.625, 1), above=100_000),
    "claude-haiku-4-5": _claude(1, 5, 0.10, 1.25, 2),
    "claude-3-5-haiku": _claude(0.80, 4, 0.08, 1, 1.60),
    "claude-3-haiku": _claude(0.25, 1.25, 0.03, 0.30, 0.50),
    # -- OpenAI: input, cached input, (cache write,) output ----------------------------
    "gpt-6.2-astra": _gpt6(8, 0.40, 10, 40),
    "gpt-6.2-sol": _gpt6(2, 0.10, 2.50, 10),
    "gpt-6.1-sol": _gpt6(2, 0.10, 2.50, 10),
    "gpt-6.1-terra": _gpt6(1, 0.05, 1.25, 5),
    "gpt-6-astra": _gpt6(10, 1, 12.50, 50),
    "gpt-6-sol": _gpt6(2, 0.20, 2.50, 10),
    "gpt-6-luna": _gpt6(0.10, 0.01, 0.125, 0.50),
    "gpt-5.6-terra": _openai(2, 0.20, 12),
    "gpt-5.6-luna": _openai(0.20, 0.02, 1.20),
    "gpt-5.5": _openai(5, 0.50, 30),
    "gpt-5.5-pro": _openai(30, None, 180),
    "gpt-5.4": _openai(2.50, 0.25, 15),
    "gpt-5.4-mini": _openai(0.75, 0.075, 4.50),
    "gpt-5.4-nano": _openai(0.20, 0.02, 1.25),
    "gpt-5.4-pro": _openai(30, None, 180),
    "gpt-5": _openai(1.25, 0.125, 10),
    "gpt-5-codex": _openai(1.25, 0.125, 10),
    "gpt-5-mini": _openai(0.25, 0.025, 2),
    "gpt-5-nano": _openai(0.05, 0.005, 0.40),
    "gpt-4.1": _openai(2, 0.50, 8),
    "gpt-4.1-mini": _openai(0.40, 0.10, 1.60),
    "gpt-4.1-nano": _openai(0.10, 0.025, 0.40),
    "gpt-4o": _openai(2.50, 1.25, 10),
    "gpt-4o-mini": _openai(0.15, 0.075, 0.60),
    "o3": _openai(2, 0.50, 8),
    "o4-mini": _openai(1.10, 0.275, 4.40),
    # -- Google: input, cached input, output (long: the same above 200K prompt tokens) --
    "gemini-4-neon": _gemini(3, 0.15, 15),
    "gemini-4-argon": (("", _gemini(2, 0.10, 10)), ("2026-12-01", _gemini(4, 0.20, 20))),
    "gemini-4-hydrogen": _gemini(1.50, 0.075, 7.50),
    "gemini-3.8-flash": (("", _gemini(0.75, 0.075, 3.75)),
                         ("2027-01-01", _gemini(1.50, 0.15, 7.50))),
    "gemini-3.5-flash": _gemini(1.50, 0.15, 9),
    "gemini-3.1-pro": _gemini(2, 0.20, 12, long=(4, 0.40, 18)),
    "gemini-3-pro": _gemini(2, 0.20, 12, long=(4, 0.40, 18)),
    "gemini-3-flash": _gemini(0.50, 0.05, 3),
    "gemini-2.5-pro": _gemini(1.25, 0.125, 10, long=(2.50, 0.25, 15)),
    "gemini-2.5-flash": _gemini(0.30, 0.03, 2.50),
    "gemini-2.5-flash-lite": _gemini(0.10, 0.01, 0.40),
}
# model id → its prices, oldest first; "" is in force from the start.
PRICES: dict[str, Scheduled] = {name: price if isinstance(price, tuple) else (("", price),)
                                for name, price in _TABLE.items()}

# Other names the same models are called by.
ALIASES = {
    "claude-3-5-haiku-latest": "claude-3-5-haiku",
    "claude-3-7-sonnet-latest": "claude-3-7-sonnet",
    "claude-opus-4-0": "claude-opus-4",
    "claude-sonnet-4-0": "claude-sonnet-4",
    "chatgpt-4o-latest": "gpt-4o",
}

# What a provider appends to a model id for a snapshot or a variant of the same price: a date
# (Anthropic's -20250929, OpenAI's -2025-08-07, Gemini's -06-17 or -09-2025, Vertex's @20250805),
# a Bedrock version (-v1:0), Claude Code's [1m], -latest, -preview, -exp. Stripped one at a time,
# so an unknown variant (say -pro) never falls back to another model's price.
_SUFFIXES = re.compile(
    r"(\[1m\]|[-@]\d{8}|-\d{4}-\d{2}-\d{2}|-\d{2}-\d{4}|-\d{2}-\d{2}|-v\d+(:\d+)?"
    r"|-latest|-preview|-exp|-\d{3})$")
# Route prefixes: "models/" (Gemini), "openai/" and the like, Bedrock's "us.anthropic.".
_PREFIX = re.compile(r"^(?:.*/)?(?:[a-z]{2}\.)?(?:anthropic\.)?")


def lookup(model: str | None) -> str | None:
    """The table's name for `model`, or None when it has no price."""
    if not model:
        return None
    name = _PREFIX.sub("", model.strip().lower(), count=1)
    for _ in range(4):
        name = ALIASES.get(name, name)
        if name in PRICES:
            return name
        shorter = _SUFFIXES.sub("", name)
        if shorter == name:
            return None
        name = shorter
    return None


def price_for(model: str | None, *, at: float) -> Price | None:
    name = lookup(model)
    if name is None:
        return None
    day = time.strftime("%Y-%m-%d", time.gmtime(at))
    current = None
    for since, price in PRICES[name]:
        if since <= day:
            current = price
    return current


def cost(model: str | None, usage: Usage, *, at: float) -> float | None:
    """What the call cost in USD, at the prices in force on `at`'s UTC day; None when the
    model has no price here."""
    price = price_for(model, at=at)
    return price.cost(usage) if price is not None else None
