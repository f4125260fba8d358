"""The records a FakeGitHub keeps in memory (git objects live in real bare repositories on disk)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

AuthKind = Literal["jwt", "installation", "user", "none"]  # user: a ghu_ user access token
ReactionSubject = Literal["issue_comment", "review_comment"]

# Repository roles, weakest first; the permission API folds them into admin|write|read|none.
ROLES = ("none", "read", "triage", "write", "maintain", "admin")
ROLE_TO_PERMISSION = {
    "admin": "admin",
    "maintain": "write",
    "write": "write",
    "triage": "read",
    "read": "read",
    "none": "none",
}
# Installation-token permission levels, weakest first.
LEVELS = ("none", "read", "write", "admin")

REACTIONS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")

DEFAULT_INSTALLATION_PERMISSIONS = {
    "checks": "write",
    "contents": "write",
    "issues": "write",
    "metadata": "read",
    "pull_requests": "write",
}


def level_at_least(have: str | None, need: str) -> bool:
    return LEVELS.index(have or "none") >= LEVELS.index(need)


@dataclass
class User:
    login: str
    id: int
    type: str = "User"  # User | Bot | Organization
    name: str | None = None
    created_at: float = 0.0


@dataclass
class Installation:
    id: int
    account: str
    permissions: dict[str, str]
    created_at: float
    # "all": every repository of the account added with this installation id.
    repository_selection: str = "all"


@dataclass
class Repo:
    owner: str
    name: str
    id: int
    path: Path
    default_branch: str
    installation_id: int | None
    private: bool
    created_at: float
    roles: dict[str, str] = field(default_factory=dict)  # login -> role
    next_number: int = 1

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass
class Issue:
    repo: str
    number: int
    id: int
    title: str
    body: str | None
    user: str
    created_at: float
    updated_at: float
    state: str = "open"
    closed_at: float | None = None
    is_pull: bool = False


@dataclass
class Pull:
    """A same-repository pull request; title/body/state live on its issue (GitHub shares them)."""

    issue: Issue
    id: int
    head_ref: str
    base_ref: str
    head_sha: str
    base_sha: str
    draft: bool = False
    merged: bool = False

    @property
    def number(self) -> int:
        return self.issue.number

    @property
    def title(self) -> str:
        return self.issue.title

    @property
    def body(self) -> str | None:
        return self.issue.body

    @property
    def state(self) -> str:
        return self.issue.state

    @property
    def user(self) -> str:
        return self.issue.user


@dataclass
class Comment:
    id: int
    repo: str
    issue_number: int
    body: str
    user: str
    created_at: float
    updated_at: float
    via_app: bool = False


@dataclass
class ReviewComment:
    id: int
    repo: str
    pull_number: int
    body: str
    user: str
    path: str
    line: int
    commit_id: str
    review_id: int
    created_at: float
    updated_at: float
    in_reply_to: int | None = None
    diff_hunk: str = "@@ -1 +1 @@"


@dataclass
class Reaction:
    id: int
    subject: ReactionSubject
    comment_id: int
    content: str
    user: str
    created_at: float


@dataclass
class Token:
    id: int
    token: str = field(repr=False)
    installation_id: int
    repositories: frozenset[str] | None  # full names; None = every repo of the installation
    permissions: dict[str, str]
    created_at: float
    expires_at: float
    requested_permissions: dict[str, str] | None = None


@dataclass
class UserToken:
    """A user access token (ghu_) from the OAuth web flow: it acts for `login` through the App."""

    id: int
    token: str = field(repr=False)
    login: str
    created_at: float
    expires_at: float | None  # None: the App has user-token expiration turned off
    refresh_token: str | None = field(default=None, repr=False)


@dataclass
class Call:
    method: str
    # Without the /api/v3 prefix; git smart-HTTP calls keep their /{owner}/{repo}.git/... path.
    path: str
    query: dict[str, str]
    auth: AuthKind
    token_id: int | None  # the installation (or user) token's id when one was presented and valid
    json: Any
    status: int
    time: float  # fake.now() when the request arrived
    headers: dict[str, str]  # request headers, lower-cased, Authorization removed


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    times: int
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    seconds: float = 0.0  # for delays
    lost: bool = False  # the request is carried out, then its answer replaced by the fault's

    def matches(self, method: str, path: str) -> bool:
        return (
            self.times > 0
            and self.method in ("*", method.upper())
            and self.pattern.fullmatch(path) is not None
        )
