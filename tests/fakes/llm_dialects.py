"""Model answers in each provider's wire format, for tests/fakes/llm_provider.py.

An answer is a list of parts, `Text("...")` and `Tool(name, {arguments})`, plus its usage. Each
dialect renders it whole (a JSON body) or streamed (server-sent events, one `bytes` per event,
shaped as the provider sends them), with the usage where that provider puts it: Anthropic in
`message_start` and `message_delta`, Chat Completions in a last chunk (`stream_options`),
Responses in `response.completed`, Gemini in each chunk's `usageMetadata`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

MODELS = {"anthropic": "claude-sonnet-4-5", "chat": "gpt-4.1", "responses": "gpt-5-codex",
          "gemini": "gemini-2.5-pro"}
_ids = itertools.count(1)


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Tool:
    name: str
    arguments: dict[str, Any]
    id: str = field(default_factory=lambda: f"call_{next(_ids):06d}")


Part = Text | Tool


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 12
    output_tokens: int = 5
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _chunks(text: str, pieces: int) -> list[str]:
    size = max(1, -(-len(text) // max(1, pieces)))
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


# -- Anthropic Messages -----------------------------------------------------------------------


def _anthropic_usage(usage: Usage) -> dict[str, int]:
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "cache_creation_input_tokens": usage.cache_write_tokens,
            "cache_read_input_tokens": usage.cache_read_tokens}


def _anthropic_block(part: Part) -> dict[str, Any]:
    if isinstance(part, Text):
        return {"type": "text", "text": part.text}
    return {"type": "tool_use", "id": part.id, "name": part.name, "input": part.arguments}


def _stop(parts: Sequence[Part]) -> bool:
    return any(isinstance(p, Tool) for p in parts)


def anthropic_message(parts: Sequence[Part], usage: Usage = Usage(),
                      model: str = MODELS["anthropic"]) -> dict[str, Any]:
    return {"id": f"msg_{next(_ids):06d}", "type": "message", "role": "assistant",
            "model": model, "content": [_anthropic_block(p) for p in parts],
            "stop_reason": "tool_use" if _stop(parts) else "end_turn", "stop_sequence": None,
            "usage": _anthropic_usage(usage)}


def anthropic_events(parts: Sequence[Part], usage: Usage = Usage(),
                     model: str = MODELS["anthropic"], pieces: int = 3) -> list[bytes]:
    message = anthropic_message(parts, usage, model)
    start = {**message, "content": [], "stop_reason": None,
             "usage": {**_anthropic_usage(usage), "output_tokens": 1}}
    events = [_sse({"type": "message_start", "message": start}, "message_start")]
    for index, part in enumerate(parts):
        if isinstance(part, Text):
            block: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": t} for t in _chunks(part.text, pieces)]
        else:
            block = {"type": "tool_use", "id": part.id, "name": part.name, "input": {}}
            raw = json.dumps(part.arguments)
            deltas = [{"type": "input_json_delta", "partial_json": t}
                      for t in _chunks(raw, pieces)]
        events.append(_sse({"type": "content_block_start", "index": index,
                            "content_block": block}, "content_block_start"))
        events += [_sse({"type": "content_block_delta", "index": index, "delta": d},
                        "content_block_delta") for d in deltas]
        events.append(_sse({"type": "content_block_stop", "index": index},
                           "content_block_stop"))
    events.append(_sse({"type": "message_delta",
                        "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                        "usage": {"output_tokens": usage.output_tokens}}, "message_delta"))
    events.append(_sse({"type": "message_stop"}, "message_stop"))
    return events


# -- OpenAI Chat Completions ------------------------------------------------------------------


def _chat_usage(usage: Usage) -> dict[str, Any]:
    return {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens}}


def _tool_calls(parts: Sequence[Part]) -> list[dict[str, Any]]:
    return [{"id": p.id, "type": "function",
             "function": {"name": p.name, "arguments": json.dumps(p.arguments)}}
            for p in parts if isinstance(p, Tool)]


def chat_completion(parts: Sequence[Part], usage: Usage = Usage(),
                    model: str = MODELS["chat"]) -> dict[str, Any]:
    text = "".join(p.text for p in parts if isinstance(p, Text))
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls := _tool_calls(parts):
        message["tool_calls"] = calls
    return {"id": f"chatcmpl-{next(_ids):06d}", "object": "chat.completion", "created": 0,
            "model": model, "choices": [{"index": 0, "message": message,
                                         "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": _chat_usage(usage)}


def chat_events(parts: Sequence[Part], usage: Usage = Usage(), model: str = MODELS["chat"],
                pieces: int = 3) -> list[bytes]:
    ident = f"chatcmpl-{next(_ids):06d}"

    def chunk(delta: dict[str, Any], finish: str | None = None,
              use: dict[str, Any] | None = None) -> bytes:
        choices = [] if use else [{"index": 0, "delta": delta, "finish_reason": finish}]
        return _sse({"id": ident, "object": "chat.completion.chunk", "created": 0,
                     "model": model, "choices": choices, "usage": use})

    events = [chunk({"role": "assistant", "content": ""})]
    for part in parts:
        if isinstance(part, Text):
            events += [chunk({"content": t}) for t in _chunks(part.text, pieces)]
    for index, call in enumerate(_tool_calls(parts)):
        events.append(chunk({"tool_calls": [{"index": index, **call}]}))
    events.append(chunk({}, "tool_calls" if _stop(parts) else "stop"))
    events.append(chunk({}, use=_chat_usage(usage)))
    return [*events, b"data: [DONE]\n\n"]


# -- OpenAI Responses -------------------------------------------------------------------------


def _responses_usage(usage: Usage) -> dict[str, Any]:
    return {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
            "total_tokens": usage.input_tokens + usage.output_tokens,
            "input_tokens_details": {"cached_tokens": usage.cache_read_tokens},
            "output_tokens_details": {"reasoning_tokens": 0}}


def _response_item(part: Part) -> dict[str, Any]:
    if isinstance(part, Text):
        return {"type": "message", "id": f"msg_{next(_ids):06d}", "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": part.text, "annotations": []}]}
    return {"type": "function_call", "id": f"fc_{next(_ids):06d}", "call_id": part.id,
            "name": part.name, "arguments": json.dumps(part.arguments), "status": "completed"}


def responses_object(parts: Sequence[Part], usage: Usage = Usage(),
                     model: str = MODELS["responses"]) -> dict[str, Any]:
    return {"id": f"resp_{next(_ids):06d}", "object": "response", "created_at": 0,
            "status": "completed", "model": model,
            "output": [_response_item(p) for p in parts], "usage": _responses_usage(usage)}


def responses_events(parts: Sequence[Part], usage: Usage = Usage(),
                     model: str = MODELS["responses"], pieces: int = 3) -> list[bytes]:
    done = responses_object(parts, usage, model)
    seq = itertools.count()

    def event(kind: str, **data: Any) -> bytes:
        return _sse({"type": kind, "sequence_number": next(seq), **data}, kind)

    events = [event("response.created",
                    response={**done, "status": "in_progress", "output": [], "usage": None})]
    for index, item in enumerate(done["output"]):
        events.append(event("response.output_item.added", output_index=index,
                            item={**item, "status": "in_progress"}))
        if item["type"] == "message":
            for piece in _chunks(item["content"][0]["text"], pieces):
                events.append(event("response.output_text.delta", output_index=index,
                                    item_id=item["id"], content_index=0, delta=piece))
        else:
            events.append(event("response.function_call_arguments.done", output_index=index,
                                item_id=item["id"], arguments=item["arguments"]))
        events.append(event("response.output_item.done", output_index=index, item=item))
    events.append(event("response.completed", response=done))
    return events


# -- Gemini generateContent -------------------------------------------------------------------


def _gemini_usage(usage: Usage) -> dict[str, int]:
    return {"promptTokenCount": usage.input_tokens, "candidatesTokenCount": usage.output_tokens,
            "totalTokenCount": usage.input_tokens + usage.output_tokens,
            "cachedContentTokenCount": usage.cache_read_tokens}


def _gemini_part(part: Part) -> dict[str, Any]:
    if isinstance(part, Text):
        return {"text": part.text}
    return {"functionCall": {"name": part.name, "args": part.arguments}}


def gemini_response(parts: Sequence[Part], usage: Usage = Usage(),
                    model: str = MODELS["gemini"]) -> dict[str, Any]:
    return {"candidates": [{"content": {"role": "model",
                                        "parts": [_gemini_part(p) for p in parts]},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": _gemini_usage(usage), "modelVersion": model}


def gemini_events(parts: Sequence[Part], usage: Usage = Usage(),
                  model: str = MODELS["gemini"], pieces: int = 3) -> list[bytes]:
    pieces_of: list[dict[str, Any]] = []
    for part in parts:
        if isinstance(part, Text):
            pieces_of += [{"text": t} for t in _chunks(part.text, pieces)]
        else:
            pieces_of.append(_gemini_part(part))
    events = []
    for index, piece in enumerate(pieces_of):
        last = index == len(pieces_of) - 1
        chunk: dict[str, Any] = {
            "candidates": [{"content": {"role": "model", "parts": [piece]}, "index": 0,
                            **({"finishReason": "STOP"} if last else {})}],
            "usageMetadata": _gemini_usage(usage) if last else
            {"promptTokenCount": usage.input_tokens},
            "modelVersion": model}
        events.append(_sse(chunk))
    return events


WHOLE = {"anthropic": anthropic_message, "chat": chat_completion, "responses": responses_object,
         "gemini": gemini_response}
STREAMED = {"anthropic": anthropic_events, "chat": chat_events, "responses": responses_events,
            "gemini": gemini_events}
