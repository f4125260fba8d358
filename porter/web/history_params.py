"""The history's query string: filters checked and read, cursors, and links that keep them.

Every value is checked against the shape of what it names (a repository is `owner/name`, a
login is GitHub's), so a mistyped filter is a 400 that says what was expected instead of an
empty page that looks like "no tasks". Empty fields (what a submitted form sends for a blank
input) mean "any".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from porter.errors import BadRequest
from porter.models import TaskFilter
from porter.states import TaskState
from porter.web.params import ascii_int

PAGE = 50
MAX_PAGE = 200

# GitHub's shapes; `_` appears in the logins of enterprise managed users (`name_shortcode`).
_OWNER = r"[A-Za-z0-9][A-Za-z0-9_-]{0,38}"
_REPO = re.compile(_OWNER + r"/(?!\.\.?$)[A-Za-z0-9_.-]{1,100}")
_LOGIN = re.compile(_OWNER + r"(?:\[bot\])?")
_AGENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# What git allows in a branch name, roughly: no spaces, controls or the characters it reserves.
_BRANCH = re.compile(r"[^\x00-\x20\x7f~^:?*\[\\]{1,255}")
STATES = tuple(state.value for state in TaskState)


@dataclass(frozen=True)
class HistoryQuery:
    where: TaskFilter
    before: int | None = None
    after: int | None = None
    limit: int = PAGE

    def filters(self) -> dict[str, str]:
        """The filters as the form shows them (empty: any)."""
        where = self.where
        values = {"repo": where.repo, "branch": where.branch, "issue": where.issue,
                  "state": where.state, "agent": where.agent, "requester": where.requester}
        return {name: "" if value is None else str(value) for name, value in values.items()}

    def link(self, *, before: int | None = None, after: int | None = None) -> str:
        """/tasks with the same filters (and page size), at another page."""
        params = {name: value for name, value in self.filters().items() if value}
        if self.limit != PAGE:
            params["limit"] = str(self.limit)
        if before is not None:
            params["before"] = str(before)
        if after is not None:
            params["after"] = str(after)
        return "/tasks" + ("?" + urlencode(params) if params else "")

    @property
    def filtered(self) -> bool:
        return any(self.filters().values())


def _text(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name, "").strip()
    return value or None


def _shaped(value: str | None, pattern: re.Pattern[str], message: str) -> str | None:
    if value is not None and not pattern.fullmatch(value):
        raise BadRequest(message)
    return value


def parse(query: Mapping[str, str], visible: tuple[str, ...] | None) -> HistoryQuery:
    """The page asked for, restricted to `visible` (None: every repository)."""
    repo = _shaped(_text(query, "repo"), _REPO, "repo must be a repository's owner/name, "
                   "like octo/hello")
    if repo is not None and visible is not None:
        # GitHub's names ignore case; the viewer's list has each one as GitHub spells it.
        repo = next((name for name in visible if name.lower() == repo.lower()), repo)
    state = _text(query, "state")
    if state is not None and state not in STATES:
        raise BadRequest(f"state must be one of {', '.join(STATES)}")
    issue = _text(query, "issue")
    requester = _text(query, "requester")
    where = TaskFilter(
        repo=repo,
        state=state,
        agent=_shaped(_text(query, "agent"), _AGENT,
                      "agent must be an agent's name, like claude or codex"),
        requester=_shaped(requester.removeprefix("@") if requester else None, _LOGIN,
                          "requester must be a GitHub login, like octocat"),
        issue=ascii_int(issue.removeprefix("#") if issue else None, "issue"),
        branch=_shaped(_text(query, "branch"), _BRANCH,
                       "branch must be a branch name, like main or release/1.2"),
        repos=visible,
    )
    before = ascii_int(_text(query, "before"), "before")
    after = ascii_int(_text(query, "after"), "after")
    if before is not None and after is not None:
        raise BadRequest("give before or after, not both")
    limit = ascii_int(_text(query, "limit"), "limit")
    if limit is not None and not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be from 1 to {MAX_PAGE}")
    return HistoryQuery(where, before, after, PAGE if limit is None else limit)

