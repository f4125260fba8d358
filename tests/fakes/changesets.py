"""Building changesets as a machine hands them back, and reading why one is refused."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from porter.changesets import parse_changeset
from porter.errors import ChangesetError

SHA = "0123456789abcdef0123456789abcdef01234567"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def written(path: str, content: bytes = b"hello\n", mode: str = "100644") -> dict[str, Any]:
    return {"path": path, "mode": mode, "content_b64": b64(content)}


def changeset(*files: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"base_sha": SHA, "message": "Add a thing", "files": list(files), **fields}


def refusal(data: object, **kwargs: Any) -> str:
    """The one-line reason parse_changeset gives for refusing `data`."""
    with pytest.raises(ChangesetError) as excinfo:
        parse_changeset(data, **kwargs)
    message = excinfo.value.message
    assert "\n" not in message
    return message
