"""A task as a GitHub Check Run on the commit Porter created: queued → in progress → completed.

Creating a run is a content creation for GitHub's per-installation pacing, so `create_check_run`
awaits the caller's `creating` (a job's `JobContext.creating`) just before its request; updates
are edits and are not charged. Only Apps holding `checks: write` may write check runs: an
installation that has not accepted that permission gets a GitHubError saying what to do, which
no retry can fix.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from porter.errors import GitHubError
from porter.github import InstallationClient
from porter.verification import Conclusion

CHECK_NAME = "Porter"
MAX_OUTPUT_CHARS = 65_535  # GitHub's limit on output.summary and output.text
MAX_TITLE_CHARS = 1_000  # GitHub states no limit; a title is one line, not a log
CUT = "\n\n… (cut: {} characters more)"

Status = Literal["queued", "in_progress"]


class ChecksForbidden(GitHubError):
    """GitHub refused to write a check run: the App lacks the "Checks: write" permission."""


# The operator's fix, in the error every task without the permission is given.
CHECKS_HELP = ("GitHub refused to write a check run: give the Porter App the \"Checks: write\" "
               "permission (the App's settings on GitHub, Permissions & events), then accept "
               "the new permission on each installation (GitHub asks the owner of each one)")


@dataclass(frozen=True)
class CheckOutput:
    """What the check's page shows: Markdown, bounded when sent."""

    title: str
    summary: str
    text: str | None = None


@dataclass(frozen=True)
class CheckRun:
    id: int
    status: str
    conclusion: str | None
    html_url: str


async def create_check_run(client: InstallationClient, repo: str, *, head_sha: str,
                           details_url: str, external_id: str,
                           creating: Callable[[], Awaitable[None]],
                           status: Status = "queued", name: str = CHECK_NAME,
                           output: CheckOutput | None = None) -> CheckRun:
    """A new check run on `head_sha` linking to the task's page; `external_id` is the task's
    id, so the run can be found again from GitHub's side. `creating` may raise `Paced`."""
    owner, repo_name = repo.split("/", 1)
    fields: dict[str, Any] = {"name": name, "head_sha": head_sha, "status": status,
                              "details_url": details_url, "external_id": external_id}
    if output is not None:
        fields["output"] = bounded(output)
    await creating()
    return await _written(client, lambda rest: rest.checks.async_create(
        owner, repo_name, **fields))


async def start_check_run(client: InstallationClient, repo: str, check_run_id: int, *,
                          output: CheckOutput | None = None) -> CheckRun:
    """Mark the run in progress (an edit: not paced)."""
    fields: dict[str, Any] = {"status": "in_progress"}
    if output is not None:
        fields["output"] = bounded(output)
    return await _update(client, repo, check_run_id, fields)


async def complete_check_run(client: InstallationClient, repo: str, check_run_id: int, *,
                             conclusion: Conclusion, output: CheckOutput) -> CheckRun:
    """Complete the run with its conclusion and what the check's page shows (an edit)."""
    fields = {"status": "completed", "conclusion": conclusion, "output": bounded(output)}
    return await _update(client, repo, check_run_id, fields)


async def find_check_run(client: InstallationClient, repo: str, *, head_sha: str,
                         external_id: str, app_id: int | None) -> CheckRun | None:
    """This App's run on `head_sha` for `external_id`, if one exists: a create whose answer was
    lost (a crash, a timeout) must not leave a second run beside it."""
    owner, repo_name = repo.split("/", 1)
    fields: dict[str, Any] = {"check_name": CHECK_NAME, "filter_": "all", "per_page": 100}
    if app_id is not None:
        fields["app_id"] = app_id  # another App may name its runs "Porter" too
    data = (await client.call(lambda rest: rest.checks.async_list_for_ref(
        owner, repo_name, head_sha, **fields))).parsed_data
    for run in data.check_runs:
        if run.external_id == external_id:
            return _check_run(run)
    return None


def bounded(output: CheckOutput) -> dict[str, str]:
    """The output as GitHub takes it, each text within GitHub's limit (a longer one is refused
    with a 422, and the whole update with it). Pure."""
    fields = {"title": _cut(output.title, MAX_TITLE_CHARS),
              "summary": _cut(output.summary, MAX_OUTPUT_CHARS)}
    if output.text is not None:
        fields["text"] = _cut(output.text, MAX_OUTPUT_CHARS)
    return fields


def _cut(text: str, limit: int) -> str:
    """`text` within `limit` characters, saying how much was left out when it was cut."""
    if len(text) <= limit:
        return text
    # The note's own length depends on the count; size it for the largest count it can show.
    keep = limit - len(CUT.format(len(text)))
    return text[:keep] + CUT.format(len(text) - keep)


async def _update(client: InstallationClient, repo: str, check_run_id: int,
                  fields: dict[str, Any]) -> CheckRun:
    owner, repo_name = repo.split("/", 1)
    return await _written(client, lambda rest: rest.checks.async_update(
        owner, repo_name, check_run_id, **fields))


async def _written(client: InstallationClient, request: Callable[[Any], Any]) -> CheckRun:
    """The run a create or update answers with; a refusal for want of `checks: write` (a 403
    that is not a rate limit) becomes ChecksForbidden."""
    try:
        data = (await client.call(request)).parsed_data
    except GitHubError as exc:
        if exc.status == 403 and not exc.retryable:
            raise ChecksForbidden(f"{CHECKS_HELP}. {exc}", status=403) from None
        raise
    return _check_run(data)


def _check_run(data: Any) -> CheckRun:
    return CheckRun(id=int(data.id), status=str(data.status),
                    conclusion=data.conclusion if isinstance(data.conclusion, str) else None,
                    html_url=str(data.html_url or ""))
