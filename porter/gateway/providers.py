"""The model providers the LLM gateway speaks for, and what it lets through. Pure.

Per provider: its upstream (a setting, never the request), the API paths an agent may call, the
header its SDKs carry the key in (where the agent's run token arrives, and where the real key
goes out), the env names of the real key and the shape of its errors, so an SDK that gets a
refusal from Porter reports it as it would the provider's own.

Paths are checked on the raw request path, before any percent-decoding: the gateway forwards
exactly the bytes it checked, so `..`, `%2F`, `//` or an absolute URL can never turn into a
path or host the check did not see. Only the paths the agents' dialects use are open:

- anthropic: POST /v1/messages, /v1/messages/count_tokens; GET /v1/models[/{id}]
- openai: POST /v1/chat/completions, /v1/responses[/…] (Codex also calls /v1/responses/compact);
  GET /v1/models[/{id}]. Not /v1/embeddings, /v1/files, /v1/batches or anything else: no agent
  Porter runs calls them (docs/platform-notes.md §E.2), and every call the gateway forwards is
  one the accounting can read usage and cost from.
- gemini: /v1beta/models/{model}:generateContent|streamGenerateContent|countTokens and GET
  /v1beta/models[/{model}], the same under /v1.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

import orjson

if TYPE_CHECKING:
    from porter.settings import Settings

# One path segment as the gateway forwards it: unreserved characters and ':' (Gemini's
# `model:method`), no '%' (nothing legitimate here is encoded), never '.' or '..' alone.
_SEGMENT = r"[A-Za-z0-9_~:.-]+"
_SAFE_PATH = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*")
_MODEL = r"[A-Za-z0-9][A-Za-z0-9_.-]*"

# Request headers an agent's SDK sends that the provider may use, and nothing else: never
# cookies, the run token (x-api-key, authorization, x-goog-api-key), hop-by-hop headers, Host or
# Content-Length (the client library sets both), nor headers that pick whose account is billed
# (openai-organization, openai-project, x-goog-user-project): the key decides that.
REQUEST_HEADERS = frozenset({
    "content-type", "accept", "user-agent", "idempotency-key",
    "anthropic-version", "anthropic-beta", "anthropic-dangerous-direct-browser-access", "x-app",
    "openai-beta", "x-client-request-id", "originator", "session_id", "conversation_id",
    "x-goog-api-client",
})
REQUEST_PREFIXES = ("x-stainless-",)
# Response headers passed back: the content type, the ids that identify a call in the
# provider's logs, and what SDKs read to decide on retries. Not set-cookie, not the operator's
# organization id, not length or encoding (the gateway sets those for what it sends).
RESPONSE_HEADERS = frozenset({
    "content-type", "cache-control", "request-id", "x-request-id", "retry-after",
    "retry-after-ms", "x-should-retry", "openai-processing-ms", "openai-version",
})
RESPONSE_PREFIXES = ("anthropic-ratelimit-", "x-ratelimit-")


@dataclass(frozen=True)
class Provider:
    name: str
    upstream_setting: str  # the Settings field holding its base URL
    key_names: tuple[str, ...]  # env names of its real key, the first one present wins
    paths: tuple[re.Pattern[str], ...]
    # The header its SDKs send the key in: the run token arrives there, the real key leaves
    # there, after `auth_scheme` ("Bearer " in Authorization).
    auth_header: str
    auth_scheme: str
    error_shape: Callable[[int, str], dict[str, Any]]
    auth_query: str | None = None  # Gemini also takes the key as ?key=

    def upstream(self, settings: Settings) -> str:
        base: str = getattr(settings, self.upstream_setting)
        return base.rstrip("/")

    def allows(self, path: str) -> bool:
        return any(pattern.fullmatch(path) for pattern in self.paths)

    def key_out(self, key: str) -> tuple[str, str]:
        return self.auth_header, self.auth_scheme + key

    def error_body(self, status: int, message: str) -> bytes:
        return orjson.dumps(self.error_shape(status, message))


def _anthropic_error(status: int, message: str) -> dict[str, Any]:
    kinds = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
             403: "permission_error", 404: "not_found_error", 405: "invalid_request_error",
             408: "timeout_error", 413: "request_too_large", 429: "rate_limit_error",
             504: "timeout_error"}
    return {"type": "error", "error": {"type": kinds.get(status, "api_error"),
                                       "message": message}}


def _openai_error(status: int, message: str) -> dict[str, Any]:
    codes = {401: "invalid_api_key", 402: "insufficient_quota", 404: "unknown_url"}
    kind = "server_error" if status >= 500 else (
        "insufficient_quota" if status == 402 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": None,
                      "code": codes.get(status)}}


def _gemini_error(status: int, message: str) -> dict[str, Any]:
    # google.rpc.Status names; a budget refusal is not a quota to wait out, so not 429's
    # RESOURCE_EXHAUSTED (which SDKs retry) but FAILED_PRECONDITION.
    names = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 402: "FAILED_PRECONDITION",
             403: "PERMISSION_DENIED", 404: "NOT_FOUND", 405: "INVALID_ARGUMENT",
             408: "DEADLINE_EXCEEDED", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED",
             502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
    return {"error": {"code": status, "message": message,
                      "status": names.get(status, "INTERNAL")}}


def _paths(*patterns: str) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(pattern) for pattern in patterns)


PROVIDERS: Mapping[str, Provider] = {provider.name: provider for provider in (
    Provider(
        "anthropic", "llm_anthropic_url", ("ANTHROPIC_API_KEY",),
        _paths(r"v1/messages", r"v1/messages/count_tokens", rf"v1/models(?:/{_MODEL})?"),
        auth_header="x-api-key", auth_scheme="", error_shape=_anthropic_error,
    ),
    Provider(
        "openai", "llm_openai_url", ("OPENAI_API_KEY", "CODEX_API_KEY"),
        _paths(r"v1/chat/completions", rf"v1/responses(?:/{_SEGMENT})*",
               rf"v1/models(?:/{_MODEL})?"),
        auth_header="authorization", auth_scheme="Bearer ", error_shape=_openai_error,
    ),
    Provider(
        "gemini", "llm_gemini_url", ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
        _paths(rf"v1(?:beta)?/models/{_MODEL}:(?:generateContent|streamGenerateContent"
               r"|countTokens)",
               rf"v1(?:beta)?/models(?:/{_MODEL})?"),
        auth_header="x-goog-api-key", auth_scheme="", error_shape=_gemini_error,
        auth_query="key",
    ),
)}


def api_path(raw_path: bytes, provider: Provider) -> str | None:
    """The API path of `/llm/{provider}/{path}` as it arrived on the wire (no query), or None
    when it is not one of the provider's API paths."""
    prefix = b"/llm/" + provider.name.encode() + b"/"
    if not raw_path.startswith(prefix) or not raw_path.isascii():
        return None
    path = raw_path[len(prefix):].decode("ascii")
    if not _SAFE_PATH.fullmatch(path) or any(s in {".", ".."} for s in path.split("/")):
        return None
    return path if provider.allows(path) else None


def run_token(provider: Provider, headers: Mapping[str, str],
              query: str) -> tuple[str | None, str]:
    """The run token the agent sent, and the query string to forward (without the token)."""
    token = headers.get(provider.auth_header)
    if token is not None and provider.auth_scheme:
        scheme, _, value = token.partition(" ")
        token = value.strip() if scheme.lower() == provider.auth_scheme.strip().lower() else None
    if provider.auth_query is None:
        return token or None, query
    found, rest = take_query_param(query, provider.auth_query)
    return token or found or None, rest


def take_query_param(query: str, name: str) -> tuple[str | None, str]:
    """(the first value of `name`, the query without any `name`), the rest byte for byte."""
    if not query:
        return None, query
    value: str | None = None
    kept = []
    for part in query.split("&"):
        key, _, raw = part.partition("=")
        if unquote_plus(key) == name:
            value = unquote_plus(raw) if value is None else value
        else:
            kept.append(part)
    return value, "&".join(kept)


def request_headers(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The agent's headers that may travel on (names lowercase, as servers give them)."""
    return [(name, value) for name, value in raw
            if (text := name.decode("latin-1").lower()) in REQUEST_HEADERS
            or text.startswith(REQUEST_PREFIXES)]


def response_headers(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The provider's answer headers that may travel back to the agent."""
    return [(name.lower(), value) for name, value in raw
            if (text := name.decode("latin-1").lower()) in RESPONSE_HEADERS
            or text.startswith(RESPONSE_PREFIXES)]


def real_key(provider: Provider, keys: Mapping[str, str]) -> str | None:
    """The run's key for this provider, from the env names the task is entitled to."""
    return next((keys[name] for name in provider.key_names if keys.get(name)), None)
