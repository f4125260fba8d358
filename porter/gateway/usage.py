"""Token usage and the model name, read from a model API's answers, per dialect. Pure.

Every dialect reports usage differently, and three of four count cached prompt tokens inside
their input figure; `Usage` is normalised so one formula prices them all (porter/gateway/prices.py):
`input_tokens` are the prompt tokens billed at the full input rate, cache reads and cache writes
excluded (Anthropic's own convention), `output_tokens` every generated token, thinking included.

- Anthropic Messages: `usage` on the message; streamed, `message_start` carries the message and
  its usage (input and cache counts, output so far), and `message_delta` the cumulative counts,
  which replace the earlier ones field by field.
- OpenAI Chat Completions: `usage` (`prompt_tokens` includes `prompt_tokens_details`'
  `cached_tokens` and `cache_write_tokens`); streamed, only with `stream_options.include_usage`,
  on the last chunk (earlier chunks carry `"usage": null`).
- OpenAI Responses: the response's `usage` (`input_tokens` includes `input_tokens_details`'
  `cached_tokens` and `cache_write_tokens`); streamed, on `response.completed` (or
  `response.incomplete` / `response.failed`), inside its `response`.
- Gemini: `usageMetadata` (`promptTokenCount` includes `cachedContentTokenCount`;
  `thoughtsTokenCount` is billed as output on top of `candidatesTokenCount`); streamed, every
  chunk may carry it and the last one holds the totals. The model is `modelVersion`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Model names are short; a longer one is not a model name.
MAX_MODEL = 200


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0  # billed at the input rate: cache reads and writes excluded
    output_tokens: int = 0  # thinking and reasoning tokens included
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0  # all cache writes, the long-lived ones included
    cache_write_long_tokens: int = 0  # of those, written for the long TTL (Anthropic's 1 h)

    @property
    def prompt_tokens(self) -> int:
        """The whole prompt, as the providers' long-context price tiers count it."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens


def anthropic_usage(raw: Mapping[str, Any]) -> Usage:
    cache_creation = raw.get("cache_creation")
    long = _count(cache_creation.get("ephemeral_1h_input_tokens")) \
        if isinstance(cache_creation, Mapping) else 0
    write = _count(raw.get("cache_creation_input_tokens"))
    return Usage(input_tokens=_count(raw.get("input_tokens")),
                 output_tokens=_count(raw.get("output_tokens")),
                 cache_read_tokens=_count(raw.get("cache_read_input_tokens")),
                 cache_write_tokens=max(write, long), cache_write_long_tokens=long)


def chat_usage(raw: Mapping[str, Any]) -> Usage:
    return _inclusive(raw, "prompt_tokens", "completion_tokens", "prompt_tokens_details")


def responses_usage(raw: Mapping[str, Any]) -> Usage:
    return _inclusive(raw, "input_tokens", "output_tokens", "input_tokens_details")


def gemini_usage(raw: Mapping[str, Any]) -> Usage:
    prompt = _count(raw.get("promptTokenCount")) + _count(raw.get("toolUsePromptTokenCount"))
    cached = min(_count(raw.get("cachedContentTokenCount")), prompt)
    output = _count(raw.get("candidatesTokenCount")) + _count(raw.get("thoughtsTokenCount"))
    return Usage(input_tokens=prompt - cached, output_tokens=output, cache_read_tokens=cached)


def _inclusive(raw: Mapping[str, Any], prompt_key: str, output_key: str,
               details_key: str) -> Usage:
    """OpenAI's shapes: the prompt count includes its cached and cache-written tokens."""
    details = raw.get(details_key)
    details = details if isinstance(details, Mapping) else {}
    prompt = _count(raw.get(prompt_key))
    read = min(_count(details.get("cached_tokens")), prompt)
    write = min(_count(details.get("cache_write_tokens")), prompt - read)
    return Usage(input_tokens=prompt - read - write, output_tokens=_count(raw.get(output_key)),
                 cache_read_tokens=read, cache_write_tokens=write)


def normalise(provider: str, raw: Mapping[str, Any]) -> Usage | None:
    """A provider's usage object as `Usage`; None when it is not one."""
    if provider == "anthropic" and ("input_tokens" in raw or "output_tokens" in raw):
        return anthropic_usage(raw)
    if provider == "openai" and "prompt_tokens" in raw:
        return chat_usage(raw)
    if provider == "openai" and ("input_tokens" in raw or "output_tokens" in raw):
        return responses_usage(raw)
    if provider == "gemini" and ("promptTokenCount" in raw or "candidatesTokenCount" in raw
                                 or "totalTokenCount" in raw):
        return gemini_usage(raw)
    return None


class UsageReader:
    """What one answer said about its usage and model, from its decoded JSON values: the
    whole answer, each SSE event's data, or each element of Gemini's streamed JSON array."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.model: str | None = None
        self._raw: dict[str, Any] | None = None

    @property
    def usage(self) -> Usage | None:
        return normalise(self.provider, self._raw) if self._raw is not None else None

    def take(self, value: object) -> None:
        if not isinstance(value, Mapping):
            return
        if self.provider == "anthropic":
            self._anthropic(value)
        elif self.provider == "openai":
            # A Responses stream event holds the response; a whole response or a chat chunk
            # is the object itself.
            response = value.get("response")
            self._take(response if isinstance(response, Mapping) else value, "usage", "model")
        elif self.provider == "gemini":
            self._take(value, "usageMetadata", "modelVersion")

    def take_usage(self, raw: Mapping[str, Any], model: str | None = None) -> None:
        """A usage object found in an answer too large to decode whole."""
        if self.provider == "anthropic":
            self._merge(raw)
        else:
            self._raw = dict(raw)
        self._model(model)

    def _anthropic(self, value: Mapping[str, Any]) -> None:
        message = value.get("message") if value.get("type") == "message_start" else value
        if not isinstance(message, Mapping):
            return
        self._model(message.get("model"))
        raw = message.get("usage")
        if isinstance(raw, Mapping):
            self._merge(raw)

    def _merge(self, raw: Mapping[str, Any]) -> None:
        # message_delta's counts are cumulative and may omit fields: each one given replaces
        # message_start's, the others stay.
        merged = dict(self._raw or {})
        merged.update({key: value for key, value in raw.items() if value is not None})
        self._raw = merged

    def _take(self, value: Mapping[str, Any], usage_key: str, model_key: str) -> None:
        self._model(value.get(model_key))
        raw = value.get(usage_key)
        if isinstance(raw, Mapping) and normalise(self.provider, raw) is not None:
            self._raw = dict(raw)  # the last one holds the totals

    def _model(self, model: object) -> None:
        if isinstance(model, str) and 0 < len(model) <= MAX_MODEL:
            self.model = model


# A request names its model in the body (`"model": "…"`), except Gemini's, which names it in the
# path: `/v1beta/models/{model}:generateContent`.
_GEMINI_PATH = re.compile(r"models/([A-Za-z0-9._-]{1,200}):")


def model_from_request(body: Mapping[str, Any] | None, path: str = "") -> str | None:
    model = body.get("model") if body is not None else None
    if isinstance(model, str) and 0 < len(model) <= MAX_MODEL:
        return model
    found = _GEMINI_PATH.search(path)
    return found.group(1) if found else None


def _count(value: object) -> int:
    """A token count as the provider sent it; anything else (null, a string, a negative or a
    boolean) counts as none."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return 0
    return int(value)
