"""The Check Runs API of the fake: create, update, get and list per commit, as an App sees them.

    run = fake.check_runs("octo/hello")[0]        # recorded runs, oldest first
    run.history                                   # [("queued", None), ("completed", "success")]

Only installation tokens reach these routes (GitHub lets only Apps create check runs); writing
needs `checks: write`, reading `checks: read`. A `head_sha` must be a commit of the repository.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tests.fakes import github_git as gitcmd
from tests.fakes import github_shapes as shapes
from tests.fakes.github_contents import commit_of
from tests.fakes.github_http import ApiError, Ctx, not_found, validation_failed
from tests.fakes.github_routes import route
from tests.fakes.github_state import Repo

if TYPE_CHECKING:
    from tests.fakes.github import FakeGitHub

# "waiting", "requested" and "pending" are reserved for GitHub Actions.
STATUSES = ("queued", "in_progress", "completed")
CONCLUSIONS = (
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "success",
    "skipped",
    "timed_out",
)
MAX_OUTPUT_CHARS = 65535  # GitHub's limit on output.summary and output.text
MAX_ANNOTATIONS = 50  # per request


@dataclass
class CheckRun:
    id: int
    repo: str  # full name
    head_sha: str
    name: str
    check_suite_id: int
    status: str
    conclusion: str | None
    started_at: float | None
    completed_at: float | None
    details_url: str | None = None
    external_id: str | None = None
    output: dict[str, Any] = field(default_factory=dict)  # title, summary, text
    annotations: list[dict[str, Any]] = field(default_factory=list)
    # (status, conclusion) at creation and after every update that changed them, for tests.
    history: list[tuple[str, str | None]] = field(default_factory=list)


class CheckRunStore:
    """Mixed into FakeGitHub: the check runs Apps created, and the suites they belong to."""

    lock: threading.RLock
    now: Callable[[], float]

    def _init_check_runs(self) -> None:
        self._check_runs: dict[int, CheckRun] = {}
        self._check_suites: dict[tuple[str, str], int] = {}  # (repo, head_sha) -> suite id
        self._check_ids = itertools.count(4_000_000_001)

    def check_runs(self, repo: str) -> list[CheckRun]:
        """The check runs recorded on a repository, oldest first."""
        with self.lock:
            key = repo.lower()
            return [r for r in self._check_runs.values() if r.repo.lower() == key]

    def find_check_run(self, check_run_id: int) -> CheckRun | None:
        return self._check_runs.get(check_run_id)

    def new_check_run(self, repo: str, head_sha: str, name: str) -> CheckRun:
        """A queued run in the commit's check suite, not recorded until `record_check_run`."""
        with self.lock:
            suite = self._check_suites.setdefault((repo, head_sha), next(self._check_ids))
            return CheckRun(
                next(self._check_ids), repo, head_sha, name, suite, "queued", None, self.now(), None
            )

    def record_check_run(self, run: CheckRun) -> None:
        with self.lock:
            self._check_runs[run.id] = run


# --- validation ----------------------------------------------------------------------------


def _invalid(name: str, value: Any) -> ApiError:
    return ApiError(422, f"Invalid request.\n\nFor '{name}', {value!r} is not a valid value.")


def _time(ctx: Ctx, name: str) -> float | None:
    value = ctx.field(name, required=False)
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise _invalid(name, value) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()  # ISO 8601, UTC


def _text(output: dict[str, Any], key: str, *, required: bool) -> str | None:
    value = output.get(key)
    if value is None:
        if required:
            raise validation_failed(
                [{"resource": "CheckRun", "field": f"output.{key}", "code": "missing_field"}]
            )
        return None
    if not isinstance(value, str):
        raise _invalid(f"output.{key}", value)
    if len(value) > MAX_OUTPUT_CHARS:
        raise ApiError(
            422,
            f"Invalid request.\n\nOnly {MAX_OUTPUT_CHARS} characters are allowed; "
            f"{len(value)} were supplied.",
        )
    return value


def _apply(ctx: Ctx, run: CheckRun) -> None:
    """Apply the optional fields of a create or update body to `run`, validating as GitHub."""
    name = ctx.field("name", required=False)
    status = ctx.field("status", required=False)
    conclusion = ctx.field("conclusion", required=False)
    if status is not None and status not in STATUSES:
        raise _invalid("status", status)
    if conclusion is not None and conclusion not in CONCLUSIONS:
        raise _invalid("conclusion", conclusion)
    started_at = _time(ctx, "started_at")
    completed_at = _time(ctx, "completed_at")
    output = ctx.field("output", dict, required=False)
    links = {k: ctx.field(k, required=False) for k in ("details_url", "external_id")}
    # Everything is validated before anything changes: a refused update leaves the run as it was.
    # A conclusion completes the run; completing (by status or completed_at) needs a conclusion.
    if conclusion is not None:
        status = "completed"
    elif status == "completed" or completed_at is not None:
        raise validation_failed(
            [{"resource": "CheckRun", "field": "conclusion", "code": "missing_field"}]
        )
    if output is not None:
        texts = {k: _text(output, k, required=k != "text") for k in ("title", "summary", "text")}
        notes = output.get("annotations") or []
        if not isinstance(notes, list) or len(notes) > MAX_ANNOTATIONS:
            raise _invalid("output.annotations", notes)
        run.output = texts
        run.annotations.extend(n for n in notes if isinstance(n, dict))
    if name is not None:
        run.name = name
    for key, value in links.items():
        if value is not None:
            setattr(run, key, value)
    if started_at is not None:
        run.started_at = started_at
    if status is not None:
        run.status = status
    if conclusion is not None:
        run.conclusion = conclusion
        run.completed_at = completed_at if completed_at is not None else ctx.gh.now()
    if not run.history or run.history[-1] != (run.status, run.conclusion):
        run.history.append((run.status, run.conclusion))


# --- JSON ----------------------------------------------------------------------------------


def check_run_json(gh: FakeGitHub, repo: Repo, run: CheckRun) -> dict[str, Any]:
    api = f"{gh.api_url}/repos/{repo.full_name}"
    app = shapes.app(gh)
    return {
        "id": run.id,
        "head_sha": run.head_sha,
        "node_id": shapes.node_id("CheckRun", run.id),
        "external_id": run.external_id or "",
        "url": f"{api}/check-runs/{run.id}",
        "html_url": f"{gh.web_url}/{repo.full_name}/runs/{run.id}",
        # Without a details_url GitHub links the App's homepage.
        "details_url": run.details_url or app["external_url"],
        "status": run.status,
        "conclusion": run.conclusion,
        "started_at": shapes.iso(run.started_at),
        "completed_at": shapes.iso(run.completed_at),
        "output": {
            "title": run.output.get("title"),
            "summary": run.output.get("summary"),
            "text": run.output.get("text"),
            "annotations_count": len(run.annotations),
            "annotations_url": f"{api}/check-runs/{run.id}/annotations",
        },
        "name": run.name,
        "check_suite": {"id": run.check_suite_id},
        "app": app,
        "pull_requests": [],
    }


# --- routes --------------------------------------------------------------------------------


def _own_run(ctx: Ctx, repo: Repo) -> CheckRun:
    run = ctx.gh.find_check_run(ctx.int_arg("check_run_id"))
    if run is None or run.repo != repo.full_name:
        raise not_found()
    return run


@route("POST", "/repos/{owner}/{repo}/check-runs")
def create_check_run(ctx: Ctx) -> tuple[int, Any]:
    repo = ctx.repo()
    ctx.require(("checks", "write"))
    name = ctx.field("name")
    head_sha = ctx.field("head_sha")
    if gitcmd.object_type(repo.path, head_sha) != "commit":
        raise ApiError(422, f"No commit found for SHA: {head_sha}")
    run = ctx.gh.new_check_run(repo.full_name, head_sha, name)
    _apply(ctx, run)  # a refused create records nothing
    ctx.gh.record_check_run(run)
    return 201, check_run_json(ctx.gh, repo, run)


@route("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}")
def update_check_run(ctx: Ctx) -> tuple[int, Any]:
    repo = ctx.repo()
    ctx.require(("checks", "write"))
    run = _own_run(ctx, repo)
    _apply(ctx, run)
    return 200, check_run_json(ctx.gh, repo, run)


@route("GET", "/repos/{owner}/{repo}/check-runs/{check_run_id}")
def get_check_run(ctx: Ctx) -> tuple[int, Any]:
    repo = ctx.repo()
    ctx.require(("checks", "read"))
    return 200, check_run_json(ctx.gh, repo, _own_run(ctx, repo))


@route("GET", "/repos/{owner}/{repo}/commits/{ref:path}/check-runs")
def list_check_runs_for_ref(ctx: Ctx) -> tuple[int, Any]:
    repo = ctx.repo()
    ctx.require(("checks", "read"))
    ref = ctx.arg("ref")
    sha = commit_of(repo, ref)
    if sha is None:
        raise ApiError(422, f"No commit found for SHA: {ref}")
    q = ctx.request.query_params
    runs = [r for r in ctx.gh.check_runs(repo.full_name) if r.head_sha == sha]
    if q.get("check_name"):
        runs = [r for r in runs if r.name == q["check_name"]]
    if q.get("status"):
        runs = [r for r in runs if r.status == q["status"]]
    runs.sort(key=lambda r: r.id, reverse=True)  # newest first, as GitHub lists them
    if q.get("filter", "latest") == "latest":
        latest: dict[str, CheckRun] = {}
        for r in runs:
            latest.setdefault(r.name, r)
        runs = list(latest.values())
    per_page = min(int(q.get("per_page", "30")), 100)
    page = int(q.get("page", "1"))
    chunk = runs[(page - 1) * per_page : page * per_page]
    return 200, {
        "total_count": len(runs),
        "check_runs": [check_run_json(ctx.gh, repo, r) for r in chunk],
    }
