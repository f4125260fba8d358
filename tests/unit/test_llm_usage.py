"""Usage and model read from each dialect's real answer shapes, whole and streamed, in any
chunking, in bounded memory (porter/gateway/usage.py, porter/gateway/answers.py)."""

from __future__ import annotations

import json
import random

import pytest

from porter.gateway.answers import HEAD, MAX_EVENT, TAIL, WHOLE, AnswerReader, AnswerUsage
from porter.gateway.metering import _request_model
from porter.gateway.usage import Usage, model_from_request


def sse(*events: tuple[str | None, object], sep: str = "\n\n") -> bytes:
    out = []
    for name, data in events:
        text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
        lines = ([f"event: {name}"] if name else []) + [f"data: {text}"]
        out.append("\n".join(lines) + sep)
    return "".join(out).encode()


def read(provider: str, answer: bytes, *, chunking: str = "whole") -> AnswerUsage:
    reader = AnswerUsage(provider)
    if chunking == "whole":
        reader.feed(answer)
    elif chunking == "bytes":
        for i in range(len(answer)):
            reader.feed(answer[i:i + 1])
    else:
        rng = random.Random(len(answer))
        i = 0
        while i < len(answer):
            n = rng.randint(1, 97)
            reader.feed(answer[i:i + n])
            i += n
    reader.close()
    return reader


CHUNKINGS = ["whole", "bytes", "random"]

# -- Anthropic Messages -----------------------------------------------------------------------

ANTHROPIC_MESSAGE = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
    "model": "claude-sonnet-5-5",
    "content": [
        {"type": "text", "text": "I'll write the file."},
        # a tool input with a key named usage: not the message's usage
        {"type": "tool_use", "id": "toolu_01", "name": "Write",
         "input": {"file_path": "/repo/usage.md", "usage": {"input_tokens": 999999}}},
    ],
    "stop_reason": "tool_use", "stop_sequence": None,
    "usage": {"input_tokens": 2095, "cache_creation_input_tokens": 1200,
              "cache_read_input_tokens": 30000,
              "cache_creation": {"ephemeral_5m_input_tokens": 1000,
                                 "ephemeral_1h_input_tokens": 200},
              "output_tokens": 503, "service_tier": "standard"},
}

ANTHROPIC_STREAM = sse(
    ("message_start", {"type": "message_start", "message": {
        "id": "msg_014p7gG3wDgGV9EUtLvnow3U", "type": "message", "role": "assistant",
        "model": "claude-opus-5-5", "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 472, "cache_creation_input_tokens": 2048,
                  "cache_read_input_tokens": 15000, "output_tokens": 2,
                  "service_tier": "standard"}}}),
    ("content_block_start", {"type": "content_block_start", "index": 0,
                             "content_block": {"type": "text", "text": ""}}),
    ("ping", {"type": "ping"}),
    *[("content_block_delta", {"type": "content_block_delta", "index": 0,
                               "delta": {"type": "text_delta",
                                         "text": f"word {i} of the \"usage\" docs "}})
      for i in range(40)],
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    ("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
        "type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "Write",
        "input": {}}}),
    ("content_block_delta", {"type": "content_block_delta", "index": 1, "delta": {
        "type": "input_json_delta", "partial_json": "{\"file_path\": \"/repo/x.py\"}"}}),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    ("message_delta", {"type": "message_delta",
                       "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                       "usage": {"output_tokens": 1289}}),
    ("message_stop", {"type": "message_stop"}),
)


def test_anthropic_whole_message() -> None:
    reader = read("anthropic", json.dumps(ANTHROPIC_MESSAGE, indent=2).encode())
    assert reader.model == "claude-sonnet-5-5"
    assert reader.usage == Usage(input_tokens=2095, output_tokens=503, cache_read_tokens=30000,
                                 cache_write_tokens=1200, cache_write_long_tokens=200)


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_anthropic_stream_merges_message_start_and_delta(chunking: str) -> None:
    reader = read("anthropic", ANTHROPIC_STREAM, chunking=chunking)
    assert reader.model == "claude-opus-5-5"
    # message_delta's output count replaces message_start's; the input counts stay
    assert reader.usage == Usage(input_tokens=472, output_tokens=1289,
                                 cache_read_tokens=15000, cache_write_tokens=2048)


def test_anthropic_delta_with_cumulative_input_counts() -> None:
    # Newer API versions repeat every count in message_delta, cumulatively.
    stream = sse(
        ("message_start", {"type": "message_start", "message": {
            "model": "claude-haiku-5-5", "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                           "usage": {"input_tokens": 12, "cache_read_input_tokens": 5,
                                     "cache_creation_input_tokens": None,
                                     "output_tokens": 40}}),
    )
    assert read("anthropic", stream).usage == Usage(12, 40, 5, 0)


def test_anthropic_error_answers_have_no_usage() -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert read("anthropic", json.dumps(error).encode()).usage is None
    mid_stream = ANTHROPIC_STREAM[:400] + sse(("error", error))
    assert read("anthropic", mid_stream).usage == Usage(472, 2, 15000, 2048)


# -- OpenAI Chat Completions ------------------------------------------------------------------

CHAT_COMPLETION = {
    "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion",
    "created": 1741570283, "model": "gpt-4o-2024-08-06",
    "choices": [{"index": 0, "message": {
        "role": "assistant", "content": "Here is the change:\n```python\nusage = 1\n```",
        "refusal": None, "annotations": []}, "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1117, "completion_tokens": 46, "total_tokens": 1163,
              "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
              "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                            "accepted_prediction_tokens": 0,
                                            "rejected_prediction_tokens": 0}},
    "service_tier": "default", "system_fingerprint": "fp_fc9f1d7035",
}


def chat_stream(include_usage: bool) -> bytes:
    base = {"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190,
            "model": "gpt-6.2-sol", "system_fingerprint": "fp_44709d6fcb"}
    extra = {"usage": None} if include_usage else {}
    chunks = [{**base, **extra, "choices": [{"index": 0, "delta": {"role": "assistant",
                                                                    "content": ""},
                                             "logprobs": None, "finish_reason": None}]}]
    chunks += [{**base, **extra, "choices": [{"index": 0, "delta": {"content": f"tok{i} "},
                                              "logprobs": None, "finish_reason": None}]}
               for i in range(30)]
    chunks.append({**base, **extra, "choices": [{"index": 0, "delta": {},
                                                 "logprobs": None, "finish_reason": "stop"}]})
    if include_usage:
        chunks.append({**base, "choices": [], "usage": {
            "prompt_tokens": 40000, "completion_tokens": 900, "total_tokens": 40900,
            "prompt_tokens_details": {"cached_tokens": 32000, "cache_write_tokens": 6000},
            "completion_tokens_details": {"reasoning_tokens": 512}}})
    return sse(*[(None, c) for c in chunks], (None, "[DONE]"))


def test_chat_whole_completion() -> None:
    reader = read("openai", json.dumps(CHAT_COMPLETION).encode())
    assert reader.model == "gpt-4o-2024-08-06"
    assert reader.usage == Usage(input_tokens=93, output_tokens=46, cache_read_tokens=1024)


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_chat_stream_usage_is_on_the_last_chunk(chunking: str) -> None:
    reader = read("openai", chat_stream(include_usage=True), chunking=chunking)
    assert reader.model == "gpt-6.2-sol"
    assert reader.usage == Usage(input_tokens=2000, output_tokens=900,
                                 cache_read_tokens=32000, cache_write_tokens=6000)


def test_chat_stream_without_include_usage_has_none() -> None:
    assert read("openai", chat_stream(include_usage=False)).usage is None


# -- OpenAI Responses -------------------------------------------------------------------------

RESPONSES_USAGE = {"input_tokens": 25000, "input_tokens_details": {"cached_tokens": 20000},
                   "output_tokens": 1500, "output_tokens_details": {"reasoning_tokens": 1100},
                   "total_tokens": 26500}


def response_object(status: str, usage: object, instructions: str = "You are Codex.") -> dict:
    return {
        "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b", "object": "response",
        "created_at": 1741476542, "status": status, "background": False, "error": None,
        "incomplete_details": None, "instructions": instructions, "max_output_tokens": None,
        "model": "gpt-6.2-astra",
        "output": [] if usage is None else [
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "shell",
             "arguments": "{\"command\":[\"bash\",\"-lc\",\"echo '\\\"usage\\\": {}'\"]}",
             "status": "completed"}],
        "parallel_tool_calls": True, "previous_response_id": None,
        "reasoning": {"effort": "medium", "summary": None}, "store": False,
        "temperature": 1.0, "text": {"format": {"type": "text"}}, "tool_choice": "auto",
        "tools": [{"type": "function", "name": "shell", "description": "Runs a command",
                   "parameters": {"type": "object", "properties": {
                       "command": {"type": "array", "items": {"type": "string"}}}}}],
        "top_p": 1.0, "truncation": "disabled", "usage": usage, "user": None,
        "metadata": {"usage": "not a usage object"},
    }


def responses_stream(instructions: str = "You are Codex.") -> bytes:
    seq = iter(range(1000))
    events = [
        ("response.created", {"type": "response.created", "sequence_number": next(seq),
                              "response": response_object("in_progress", None, instructions)}),
        ("response.in_progress", {"type": "response.in_progress", "sequence_number": next(seq),
                                  "response": response_object("in_progress", None,
                                                              instructions)}),
        ("response.output_item.added", {
            "type": "response.output_item.added", "sequence_number": next(seq),
            "output_index": 0, "item": {"type": "message", "id": "msg_1", "status":
                                        "in_progress", "role": "assistant", "content": []}}),
        *[("response.output_text.delta", {
            "type": "response.output_text.delta", "sequence_number": next(seq),
            "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": f"part {i} "})
          for i in range(25)],
        ("response.completed", {"type": "response.completed", "sequence_number": next(seq),
                                "response": response_object("completed", RESPONSES_USAGE,
                                                            instructions)}),
    ]
    return sse(*events)


def test_responses_whole_response() -> None:
    reader = read("openai", json.dumps(response_object("completed", RESPONSES_USAGE)).encode())
    assert reader.model == "gpt-6.2-astra"
    assert reader.usage == Usage(input_tokens=5000, output_tokens=1500, cache_read_tokens=20000)


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_responses_stream_reads_response_completed(chunking: str) -> None:
    reader = read("openai", responses_stream(), chunking=chunking)
    assert reader.model == "gpt-6.2-astra"
    assert reader.usage == Usage(input_tokens=5000, output_tokens=1500, cache_read_tokens=20000)


def test_responses_cache_writes() -> None:
    usage = {"input_tokens": 300000, "output_tokens": 10,
             "input_tokens_details": {"cached_tokens": 100000, "cache_write_tokens": 150000}}
    reader = read("openai", json.dumps(response_object("completed", usage)).encode())
    assert reader.usage == Usage(50000, 10, 100000, 150000)


@pytest.mark.parametrize("chunking", ["whole", "random"])
def test_a_response_completed_event_larger_than_kept_is_read_from_its_tail(
        chunking: str) -> None:
    # Codex's instructions and tools are echoed in response.completed: an event far larger
    # than what is kept whole.
    huge = "Follow the repository's conventions. " * 20_000
    answer = responses_stream(instructions=huge)
    assert len(answer) > 3 * MAX_EVENT
    reader = read("openai", answer, chunking=chunking)
    assert reader.usage == Usage(input_tokens=5000, output_tokens=1500, cache_read_tokens=20000)
    assert reader.model == "gpt-6.2-astra"


# -- Gemini -----------------------------------------------------------------------------------


def gemini_chunk(text: str, usage: dict[str, object] | None, finish: str | None = None) -> dict:
    candidate: dict[str, object] = {"content": {"parts": [{"text": text}], "role": "model"},
                                    "index": 0}
    if finish:
        candidate["finishReason"] = finish
    chunk: dict[str, object] = {"candidates": [candidate]}
    if usage is not None:
        chunk["usageMetadata"] = usage
    chunk["modelVersion"] = "gemini-3.8-flash"
    chunk["responseId"] = "mkkwaKyAI-qz1dkP8vbFqQQ"
    return chunk


GEMINI_FINAL = {"promptTokenCount": 12000, "candidatesTokenCount": 700,
                "cachedContentTokenCount": 8000, "thoughtsTokenCount": 1300,
                "totalTokenCount": 14000,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 12000}],
                "cacheTokensDetails": [{"modality": "TEXT", "tokenCount": 8000}]}


def gemini_chunks() -> list[dict]:
    chunks = [gemini_chunk(f"line {i}\n", {"promptTokenCount": 12000,
                                            "candidatesTokenCount": 10 * i,
                                            "totalTokenCount": 12000 + 10 * i})
              for i in range(1, 20)]
    chunks.append(gemini_chunk("", GEMINI_FINAL, finish="STOP"))
    return chunks


def test_gemini_whole_generate_content() -> None:
    answer = {**gemini_chunk("done", GEMINI_FINAL, finish="STOP")}
    reader = read("gemini", json.dumps(answer).encode())
    assert reader.model == "gemini-3.8-flash"
    assert reader.usage == Usage(input_tokens=4000, output_tokens=2000, cache_read_tokens=8000)


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_gemini_sse_stream_takes_the_last_usage(chunking: str) -> None:
    # alt=sse frames its events with CRLF blank lines
    answer = sse(*[(None, c) for c in gemini_chunks()], sep="\r\n\r\n")
    reader = read("gemini", answer, chunking=chunking)
    assert reader.usage == Usage(input_tokens=4000, output_tokens=2000, cache_read_tokens=8000)


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_gemini_json_array_stream(chunking: str) -> None:
    answer = ("[" + ",\r\n".join(json.dumps(c, indent=2) for c in gemini_chunks()) + "]")
    reader = read("gemini", answer.encode(), chunking=chunking)
    assert reader.usage == Usage(input_tokens=4000, output_tokens=2000, cache_read_tokens=8000)
    assert reader.model == "gemini-3.8-flash"


def test_gemini_array_larger_than_kept_is_read_from_its_tail() -> None:
    chunks = [gemini_chunk("x" * 2000, {"promptTokenCount": 1, "totalTokenCount": 1})
              for _ in range(100)]
    chunks.append(gemini_chunk("", GEMINI_FINAL, finish="STOP"))
    answer = ("[" + ",".join(json.dumps(c) for c in chunks) + "]").encode()
    assert len(answer) > WHOLE
    reader = read("gemini", answer, chunking="random")
    assert reader.usage == Usage(input_tokens=4000, output_tokens=2000, cache_read_tokens=8000)


# -- bounded memory, and what cannot be read --------------------------------------------------


def test_memory_stays_bounded_on_long_streams_and_huge_events() -> None:
    reader = AnswerReader(lambda v: None, lambda h, t: None)
    delta = sse(("content_block_delta", {"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "text_delta", "text": "a" * 500}}))
    peak = 0
    for _ in range(20_000):  # ~11 MB of deltas
        reader.feed(delta)
        peak = max(peak, len(reader._buffer))
    assert peak < 2 * len(delta)
    # one event of 5 MB never held whole
    reader.feed(b"event: response.completed\ndata: {\"response\": {\"instructions\": \"")
    for _ in range(5000):
        reader.feed(b"b" * 1024)
        peak = max(peak, len(reader._buffer) + len(reader._head))
    assert peak <= MAX_EVENT + 1024
    assert len(reader._buffer) + len(reader._head) <= HEAD + TAIL
    json_reader = AnswerReader(lambda v: None, lambda h, t: None)
    json_reader.feed(b"{\"content\": \"")
    for _ in range(5000):
        json_reader.feed(b"c" * 1024)
        assert len(json_reader._buffer) + len(json_reader._head) <= WHOLE + 1024
    assert len(json_reader._buffer) + len(json_reader._head) <= HEAD + TAIL


def test_answers_that_are_not_json_have_no_usage() -> None:
    assert read("anthropic", b"<html>502 Bad Gateway</html>").usage is None
    assert read("openai", b"").usage is None
    assert read("openai", b"{\"usage\": {\"prompt_tokens\": 3").usage is None  # cut short
    assert read("gemini", sse((None, "{not json usage}"))).usage is None


def test_counts_that_are_not_counts_count_as_none() -> None:
    answer = {"usage": {"input_tokens": "12", "output_tokens": -4,
                        "cache_read_input_tokens": True}}
    assert read("anthropic", json.dumps(answer).encode()).usage == Usage()


# -- the model a request asks for -------------------------------------------------------------


def test_model_from_the_request() -> None:
    body = json.dumps({"model": "claude-sonnet-5-5", "max_tokens": 32000, "stream": True,
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    assert _request_model(body, "v1/messages") == "claude-sonnet-5-5"
    # not first: read from the whole body, the top-level key
    late = json.dumps({"instructions": "x" * 10_000, "tools": [
        {"name": "pick", "parameters": {"properties": {"model": {"type": "string"}}}}],
        "input": [{"role": "user", "content": "use \"model\": \"gpt-1\""}],
        "model": "gpt-6.2-sol"}).encode()
    assert _request_model(late, "v1/responses") == "gpt-6.2-sol"
    # Gemini names it in the path
    assert _request_model(b'{"contents": []}',
                          "v1beta/models/gemini-4-argon:streamGenerateContent") \
        == "gemini-4-argon"
    assert _request_model(b"", "") is None
    assert model_from_request({"model": 5}, "") is None
