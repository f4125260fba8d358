"""What a run leaves on its task as artifacts (porter/artifacts.py): its log, its verification
results and its changeset as a diff, kept when the machine reports its result.

Everything here is the machine's output, so it reaches the store redacted: the log already is
(the run service's stream redactor), the rest is redacted here with the run's redactor.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import orjson

from porter.artifacts import Name
from porter.verification import Verification

MAX_SHOWN_FILE = 256 * 1024  # a file's content in the listing, when the machine sent no diff


class KeepsArtifacts(Protocol):
    async def run_logs(self, run_id: str) -> list[tuple[int, str]]: ...

    async def put_artifact(self, task_id: int, run_id: str, name: Name, media: str | None,
                           content: bytes) -> int: ...


async def keep_run_artifacts(store: KeepsArtifacts, *, task_id: int, run_id: str,
                             verification: Verification | None, patch: object,
                             changeset: object, redact: Callable[[str], str]) -> None:
    """Store the run's artifacts; a repeat (a re-sent completion) adds nothing."""
    log = "".join(text for _, text in await store.run_logs(run_id))
    if log:
        await store.put_artifact(task_id, run_id, "log", None, log.encode())
    if verification is not None:
        data = orjson.dumps(verification.dump(), option=orjson.OPT_INDENT_2)
        await store.put_artifact(task_id, run_id, "verification", None, data)
    if isinstance(patch, str) and patch.strip():
        await store.put_artifact(task_id, run_id, "changeset", None, redact(patch).encode())
    elif isinstance(changeset, Mapping) and (listing := changeset_listing(changeset)):
        # An entrypoint that sends no diff: what changed, file by file, as text.
        await store.put_artifact(task_id, run_id, "changeset", "text/plain; charset=utf-8",
                                 redact(listing).encode())


def changeset_listing(changeset: Mapping[str, Any]) -> str:
    """The changeset's files and their new text, for reading. Pure; the changeset is not yet
    validated (the publisher does that), so anything malformed is shown as such."""
    files = changeset.get("files")
    if not isinstance(files, list):
        return ""
    parts = []
    for entry in files:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("path"), str):
            parts.append("(a malformed entry)")
            continue
        path = entry["path"]
        if entry.get("deleted"):
            parts.append(f"--- deleted: {path}")
            continue
        content = _decoded(entry.get("content_b64"))
        header = f"+++ {path} ({entry.get('mode', '100644')})"
        if content is None:
            parts.append(f"{header}: binary or unreadable content")
        elif len(content) > MAX_SHOWN_FILE:
            parts.append(f"{header}: {len(content)} characters, not shown")
        else:
            parts.append(f"{header}\n{content}")
    return "\n\n".join(parts) + "\n" if parts else ""


def _decoded(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
