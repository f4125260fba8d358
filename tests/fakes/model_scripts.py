"""Scripted model answers that make a real agent CLI write one file, for the fake provider
(tests/fakes/llm_provider.py).

Each script answers by what a request holds, never by its order, so a CLI's side calls (a title,
a token count, a retry) get a sensible answer wherever they fall. Push the script onto its
dialect's queue as many times as the CLI may call (`push_all`): every call is then answered by
it. What the CLIs were seen to send (docs/platform-notes.md §E.2):

- Claude Code (2.1.x): `HEAD /`, then `POST /v1/messages?beta=true`, streamed, with its tools
  (Write among them). The first call is answered with a `Write` tool call, with the path
  absolute, as Claude's Write tool requires; the next call carries the tool_result for it
  and is answered with the final text and end_turn. A call without the Write tool (a title or
  topic side call) gets a short text.
- Aider (0.86.x, --no-stream): one `POST /v1/chat/completions`. Its system prompt says which
  edit format it wants: SEARCH/REPLACE blocks (diff, e.g. gpt-4o), where a new file is a block
  with an empty SEARCH, or a whole-file listing (e.g. gpt-4o-mini).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.llm_dialects import STREAMED, WHOLE, Part, Text, Tool, Usage
from tests.fakes.llm_provider import FakeProvider, Gate, Recorded, Reply, Scripted

CALLS = 40  # how many calls a script stands ready for: far more than a one-file task takes


def push_all(provider: FakeProvider, dialect: str, script: Scripted, calls: int = CALLS) -> None:
    provider.push(dialect, *([script] * calls))


def _body(request: Recorded) -> dict[str, Any]:
    try:
        body = request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _answer(dialect: str, body: dict[str, Any], parts: list[Part], **options: Any) -> Reply:
    """The parts as that dialect sends them: streamed when the request asked for a stream."""
    model = str(body.get("model") or "fake-model")
    if body.get("stream") is True:
        return Reply.sse(STREAMED[dialect](parts, Usage(), model=model), **options)
    return Reply.json(WHOLE[dialect](parts, Usage(), model=model))


@dataclass
class ClaudeWrites:
    """Claude Code writes `text` to `/workspace/<path>`, then ends its turn.

    `hold_final`: the final answer waits at `final_gate` before its first event, so a test can
    look at the running agent (its environment, its HOME) after the file is written and before
    the agent exits; the test releases it."""

    path: str
    text: str
    summary: str = "Wrote the file."
    hold_final: bool = False
    workspace: str = "/workspace"
    final_gate: Gate = field(default_factory=Gate)
    tool: Tool = field(init=False)
    seen: list[str] = field(default_factory=list)  # "write", "final", "side", in arrival order
    tool_results: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tool = Tool("Write", {"file_path": f"{self.workspace}/{self.path}",
                                   "content": self.text})

    def __call__(self, request: Recorded) -> Reply:
        body = _body(request)
        tools = {t.get("name") for t in body.get("tools") or [] if isinstance(t, dict)}
        if "Write" not in tools:
            self.seen.append("side")
            return _answer("anthropic", body, [Text("Writing a file")])
        result = self._result(body)
        if result is None:
            self.seen.append("write")
            return _answer("anthropic", body, [self.tool])
        self.seen.append("final")
        self.tool_results.append(result)
        if self.hold_final and body.get("stream") is True:
            return _answer("anthropic", body, [Text(self.summary)], hold_after=0,
                           gate=self.final_gate)
        return _answer("anthropic", body, [Text(self.summary)])

    def _result(self, body: dict[str, Any]) -> Any:
        """The tool_result answering our Write call, anywhere in the conversation (Claude Code
        may append a system message after it); None before the call was made."""
        for message in body.get("messages") or []:
            content = message.get("content") if isinstance(message, dict) else None
            for block in content if isinstance(content, list) else []:
                if isinstance(block, dict) and block.get("type") == "tool_result" \
                        and block.get("tool_use_id") == self.tool.id:
                    return block.get("content")
        return None


@dataclass
class AiderWrites:
    """Aider creates `path` holding `text`, in whichever edit format its prompt asks for."""

    path: str
    text: str
    seen: list[str] = field(default_factory=list)  # the edit format of each answer

    def __call__(self, request: Recorded) -> Reply:
        body = _body(request)
        system = "\n".join(_text(m.get("content")) for m in body.get("messages") or []
                           if isinstance(m, dict) and m.get("role") == "system")
        text = self.text if self.text.endswith("\n") else self.text + "\n"
        if "SEARCH/REPLACE" in system:
            self.seen.append("diff")
            edit = f"{self.path}\n```\n<<<<<<< SEARCH\n=======\n{text}>>>>>>> REPLACE\n```\n"
        else:
            self.seen.append("whole")
            edit = f"{self.path}\n```\n{text}```\n"
        return _answer("chat", body, [Text(f"Creating {self.path}.\n\n{edit}")])


def _text(content: Any) -> str:
    """A chat message's text, whether a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return json.dumps(content)
