"""A task's artifacts (porter/artifacts.py): listed on its page and in its JSON, and downloaded
from `/tasks/{task_id}/artifacts/{artifact_id}`.

An artifact is an agent's output, so a download must never become a page of Porter's origin: it
is served as an attachment, with one of the few types Porter serves, `nosniff`, and a sandboxing
Content-Security-Policy for a browser that renders it anyway. Whoever may see the task may
download its artifacts; to anyone else they answer as the task page does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from porter.artifacts import ALLOWED_MEDIA_TYPES, NAMES, ArtifactInfo
from porter.errors import BadRequest, NotFound, Unauthorized
from porter.models import Task
from porter.web.params import MAX_DIGITS, ascii_int
from porter.web.services import Services, services
from porter.web.task_access import visible_task
from porter.web.viewer import identify

EXTENSIONS = {"log": "log", "verification": "json", "changeset": "diff"}
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ArtifactRow:
    """One artifact as the page lists it and the API describes it."""

    info: ArtifactInfo
    attempt: int | None  # None: its run is no longer known

    @property
    def url(self) -> str:
        return download_path(self.info.task_id, self.info.id)

    @property
    def size_text(self) -> str:
        return human_size(self.info.size)

    @property
    def stored_text(self) -> str:
        return human_size(self.info.stored)

    def to_json(self) -> dict[str, Any]:
        info = self.info
        return {"id": info.id, "name": info.name, "run_id": info.run_id,
                "attempt": self.attempt, "media_type": served_type(info), "size": info.size,
                "stored": info.stored, "truncated": info.truncated, "sha256": info.sha256,
                "created_at": info.created_at, "url": self.url}


def human_size(size: int) -> str:
    """'512 B', '1.5 KiB', '10.0 MiB'."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def download_path(task_id: int, artifact_id: int) -> str:
    return f"/tasks/{task_id}/artifacts/{artifact_id}"


def filename(task_id: int, name: str) -> str:
    """`task-<id>-<name>.<ext>`: only Porter's own names reach the header, never stored text."""
    known = name if name in NAMES else "artifact"
    return f"task-{task_id}-{known}.{EXTENSIONS.get(known, 'bin')}"


def served_type(info: ArtifactInfo) -> str:
    """The stored type when it is one Porter serves (a row written by hand is not trusted)."""
    return info.media_type if info.media_type in ALLOWED_MEDIA_TYPES \
        else "application/octet-stream"


async def artifact_rows(svc: Services, task: Task) -> list[ArtifactRow]:
    """The task's artifacts, oldest first, each with the attempt of its run."""
    infos = await svc.store.artifacts(task.id)
    attempts: dict[str, int | None] = {}
    for run_id in dict.fromkeys(info.run_id for info in infos):  # one lookup per attempt
        run = await svc.store.get_run(run_id)
        attempts[run_id] = run.attempt if run is not None else None
    return [ArtifactRow(info, attempts[info.run_id]) for info in infos]


def _path_id(raw: str) -> int | None:
    """A path's id as porter/web/params.py reads numbers; None when it is not one: a
    malformed id names nothing, so here it is a 404 like any other."""
    try:
        return ascii_int(raw, "id")
    except BadRequest:
        return None


async def download(request: Request) -> Response:
    viewer = await identify(request)
    if not viewer.signed_in:
        raise Unauthorized("Sign in with GitHub to see this task.")  # as the task page says
    if _path_id(str(request.path_params["task_id"])) is None:
        raise NotFound("no such task")
    raw = str(request.path_params["artifact_id"])
    artifact_id = _path_id(raw)
    # The task first: an outsider learns nothing of which artifact ids exist.
    task = await visible_task(request, viewer)
    artifact = await services(request).store.artifact(artifact_id) \
        if artifact_id is not None else None
    if artifact is None or artifact.info.task_id != task.id:
        raise NotFound(f"task {task.id} has no artifact {raw[:MAX_DIGITS + 2]}")
    info = artifact.info
    headers = {
        "Content-Disposition": f'attachment; filename="{filename(task.id, info.name)}"',
        "X-Content-Type-Options": "nosniff",
        # Rendered anyway (a browser that ignores attachment, a viewer opened on it): no
        # script runs, no form posts, and the content is an opaque origin, not Porter's.
        "Content-Security-Policy": "sandbox; default-src 'none'",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
        # Cached only by the browser, and asked again each time: access is checked per request.
        "Cache-Control": "private, no-cache",
    }
    if _SHA256.fullmatch(info.sha256):
        headers["ETag"] = f'"{info.sha256}"'
        if headers["ETag"] in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
    return Response(artifact.content, media_type=served_type(info), headers=headers)


routes: list[BaseRoute] = [
    Route("/tasks/{task_id}/artifacts/{artifact_id}", download, methods=["GET"]),
]
