"""REST endpoints besides Git Data: apps, repos, users, issues, comments, reactions, pulls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.fakes import github_git as gitcmd
from tests.fakes import github_shapes as shapes
from tests.fakes.github_http import ApiError, Ctx, Handler, RouteAuth, not_found, validation_failed
from tests.fakes.github_state import (
    REACTIONS,
    ROLE_TO_PERMISSION,
    ROLES,
    ReactionSubject,
    level_at_least,
)

RouteSpec = tuple[str, str, RouteAuth, Handler]
ROUTES: list[RouteSpec] = []


def route(method: str, path: str, auth: RouteAuth = "installation") -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        ROUTES.append((method, path, auth, fn))
        return fn

    return register


# --- the App itself (JWT) ------------------------------------------------------------------


@route("GET", "/app", "jwt")
def get_app(ctx: Ctx) -> tuple[int, Any]:
    return 200, shapes.app(ctx.gh)


@route("GET", "/app/installations", "jwt")
def list_installations(ctx: Ctx) -> tuple[int, Any]:
    return 200, [shapes.installation(ctx.gh, i) for i in ctx.gh.state_installations()]


@route("GET", "/app/installations/{installation_id}", "jwt")
def get_installation(ctx: Ctx) -> tuple[int, Any]:
    inst = ctx.gh.find_installation(ctx.int_arg("installation_id"))
    if inst is None:
        raise not_found()
    return 200, shapes.installation(ctx.gh, inst)


@route("POST", "/app/installations/{installation_id}/access_tokens", "jwt")
def create_access_token(ctx: Ctx) -> tuple[int, Any]:
    gh = ctx.gh
    inst = gh.find_installation(ctx.int_arg("installation_id"))
    if inst is None:
        raise not_found()
    owned = [r for r in gh.state_repos() if r.installation_id == inst.id]
    names = ctx.field("repositories", list, required=False)
    ids = ctx.field("repository_ids", list, required=False)
    selected: list[Any] | None = None
    if names is not None or ids is not None:
        by_name = {r.name: r for r in owned}
        by_id = {r.id: r for r in owned}
        wanted = [(by_name.get(n) if isinstance(n, str) else None) for n in names or []]
        wanted += [by_id.get(i) for i in ids or []]
        if any(r is None for r in wanted):
            raise ApiError(
                422,
                "There is at least one repository that does not exist or is not accessible "
                "to the parent installation.",
            )
        selected = list({r.full_name: r for r in wanted if r is not None}.values())
    requested = ctx.field("permissions", dict, required=False)
    if requested is not None:
        for name, level in requested.items():
            if level not in ("read", "write", "admin") or not level_at_least(
                inst.permissions.get(name), level
            ):
                raise ApiError(
                    422, "The permissions requested are not granted to this installation."
                )
        permissions = {**requested, "metadata": "read"}
    else:
        permissions = dict(inst.permissions)
    token = gh.mint_token(
        inst.id,
        repositories=None if selected is None else frozenset(r.full_name for r in selected),
        permissions=permissions,
        requested=requested,
    )
    body: dict[str, Any] = {
        "token": token.token,
        "expires_at": shapes.iso(token.expires_at),
        "permissions": permissions,
        "repository_selection": "selected" if selected is not None else inst.repository_selection,
    }
    if selected is not None:
        body["repositories"] = [shapes.repository(gh, r) for r in selected]
    return 201, body


@route("GET", "/repos/{owner}/{repo}/installation", "jwt")
def get_repo_installation(ctx: Ctx) -> tuple[int, Any]:
    repo = ctx.repo()
    inst = ctx.gh.find_installation(repo.installation_id) if repo.installation_id else None
    if inst is None:
        raise not_found()
    return 200, shapes.installation(ctx.gh, inst)


@route("GET", "/installation/repositories")
def list_installation_repositories(ctx: Ctx) -> tuple[int, Any]:
    token = ctx.token
    assert token is not None
    repos = [
        r
        for r in ctx.gh.state_repos()
        if r.installation_id == token.installation_id
        and (token.repositories is None or r.full_name in token.repositories)
    ]
    return 200, {
        "total_count": len(repos),
        "repository_selection": "all" if token.repositories is None else "selected",
        "repositories": [shapes.repository(ctx.gh, r) for r in repos],
    }


# --- repositories and users ----------------------------------------------------------------


@route("GET", "/repos/{owner}/{repo}")
def get_repo(ctx: Ctx) -> tuple[int, Any]:
    return 200, shapes.repository(ctx.gh, ctx.repo())


@route("GET", "/repos/{owner}/{repo}/collaborators/{username}/permission")
def get_permission(ctx: Ctx) -> tuple[int, Any]:
    repo = ctx.repo()
    u = ctx.gh.find_user(ctx.arg("username"))
    if u is None:
        raise ApiError(404, f"{ctx.arg('username')} is not a user")
    role = "admin" if u.login == repo.owner else repo.roles.get(u.login, "none")
    rank = ROLES.index(role)
    user_json = shapes.user(ctx.gh, u)
    user_json["role_name"] = role
    user_json["permissions"] = {
        "admin": rank >= ROLES.index("admin"),
        "maintain": rank >= ROLES.index("maintain"),
        "push": rank >= ROLES.index("write"),
        "triage": rank >= ROLES.index("triage"),
        "pull": rank >= ROLES.index("read"),
    }
    return 200, {"permission": ROLE_TO_PERMISSION[role], "role_name": role, "user": user_json}


@route("GET", "/users/{username}", "any")
def get_user(ctx: Ctx) -> tuple[int, Any]:
    u = ctx.gh.find_user(ctx.arg("username"))
    if u is None:
        raise not_found()
    return 200, shapes.public_user(ctx.gh, u)


# --- issues and issue comments -------------------------------------------------------------


@route("GET", "/repos/{owner}/{repo}/issues/{issue_number}")
def get_issue(ctx: Ctx) -> tuple[int, Any]:
    repo = ctx.repo()
    ctx.require(("issues", "read"), ("pull_requests", "read"))
    issue = ctx.gh.find_issue(repo, ctx.int_arg("issue_number"))
    if issue is None:
        raise not_found()
    return 200, shapes.issue(ctx.gh, repo, issue)


@route("GET", "/repos/{owner}/{repo}/issues/{issue_number}/comments")
def list_issue_comments(ctx: Ctx) -> tuple[int, Any]:
    repo = ctx.repo()
    ctx.require(("issues", "read"), ("pull_requests", "read"))
    number = ctx.int_arg("issue_number")
    if ctx.gh.find_issue(repo, number) is None:
        raise not_found()
    comments = ctx.gh.state_comments(repo, number)
    per_page = int(ctx.request.query_params.get("per_page", "30"))
    page = int(ctx.request.query_params.get("page", "1"))
    chunk = comments[(page - 1) * per_page : page * per_page]
    return 200, [shapes.comment(ctx.gh, repo, c) for c in chunk]


def _issue_write(ctx: Ctx, number: int) -> None:
    issue = ctx.gh.find_issue(ctx.repo(), number)
    if issue is not None and issue.is_pull:
        ctx.require(("issues", "write"), ("pull_requests", "write"))
    else:
        ctx.require(("issues", "write"))


@route("POST", "/repos/{owner}/{repo}/issues/{issue_number}/comments")
def create_issue_comment(ctx: Ctx) -> tuple[int, Any]:
    repo = ctx.repo()
    number = ctx.int_arg("issue_number")
    _issue_write(ctx, number)
    body = ctx.field("body")
    if ctx.gh.find_issue(repo, number) is None:
        raise not_found()
    comment = ctx.gh.add_issue_comment(repo.full_name, number, body, user=ctx.gh.bot_login)
    comment.via_app = True
    return 201, shapes.comment(ctx.gh, repo, comment)


def _own_comment(ctx: Ctx) -> Any:
    repo = ctx.repo()
    comment = ctx.gh.find_comment(ctx.int_arg("comment_id"))
    if comment is None or comment.repo != repo.full_name:
        raise not_found()
    return repo, comment


@route("GET", "/repos/{owner}/{repo}/issues/comments/{comment_id}")
def get_issue_comment(ctx: Ctx) -> tuple[int, Any]:
    ctx.require(("issues", "read"), ("pull_requests", "read"))
    repo, comment = _own_comment(ctx)
    return 200, shapes.comment(ctx.gh, repo, comment)


@route("PATCH", "/repos/{owner}/{repo}/issues/comments/{comment_id}")
def update_issue_comment(ctx: Ctx) -> tuple[int, Any]:
    repo, comment = _own_comment(ctx)
    _issue_write(ctx, comment.issue_number)
    comment.body = ctx.field("body")
    comment.updated_at = ctx.gh.now()
    return 200, shapes.comment(ctx.gh, repo, comment)


@route("DELETE", "/repos/{owner}/{repo}/issues/comments/{comment_id}")
def delete_issue_comment(ctx: Ctx) -> tuple[int, Any]:
    _repo, comment = _own_comment(ctx)
    _issue_write(ctx, comment.issue_number)
    ctx.gh.remove_comment(comment.id)
    return 204, None


# --- reactions -----------------------------------------------------------------------------


def _react(ctx: Ctx, subject: ReactionSubject) -> tuple[int, Any]:
    content = ctx.field("content")
    if content not in REACTIONS:
        raise validation_failed([{"resource": "Reaction", "field": "content", "code": "invalid"}])
    existing, reaction = ctx.gh.add_reaction(
        subject, ctx.int_arg("comment_id"), content, user=ctx.gh.bot_login
    )
    # GitHub answers 200 with the earlier reaction when the same user already reacted so.
    return (200 if existing else 201), shapes.reaction(ctx.gh, reaction)


@route("POST", "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions")
def react_issue_comment(ctx: Ctx) -> tuple[int, Any]:
    _repo, comment = _own_comment(ctx)
    _issue_write(ctx, comment.issue_number)
    return _react(ctx, "issue_comment")


def _own_review_comment(ctx: Ctx) -> Any:
    repo = ctx.repo()
    comment = ctx.gh.find_review_comment(ctx.int_arg("comment_id"))
    if comment is None or comment.repo != repo.full_name:
        raise not_found()
    return repo, comment


@route("POST", "/repos/{owner}/{repo}/pulls/comments/{comment_id}/reactions")
def react_review_comment(ctx: Ctx) -> tuple[int, Any]:
    _own_review_comment(ctx)
    ctx.require(("pull_requests", "write"))
    return _react(ctx, "review_comment")


@route("GET", "/repos/{owner}/{repo}/pulls/comments/{comment_id}")
def get_review_comment(ctx: Ctx) -> tuple[int, Any]:
    repo, comment = _own_review_comment(ctx)
    ctx.require(("pull_requests", "read"))
    return 200, shapes.review_comment(ctx.gh, repo, comment)


@route("POST", "/repos/{owner}/{repo}/pulls/{pull_number}/comments/{comment_id}/replies")
def reply_review_comment(ctx: Ctx) -> tuple[int, Any]:
    repo, parent = _own_review_comment(ctx)
    ctx.require(("pull_requests", "write"))
    if parent.pull_number != ctx.int_arg("pull_number"):
        raise not_found()
    body = ctx.field("body")
    top = parent.in_reply_to or parent.id  # replies attach to the thread's first comment
    reply = ctx.gh.add_review_comment(
        repo.full_name,
        parent.pull_number,
        body,
        user=ctx.gh.bot_login,
        path=parent.path,
        line=parent.line,
        in_reply_to=top,
    )
    return 201, shapes.review_comment(ctx.gh, repo, reply)


# --- pull requests -------------------------------------------------------------------------


@route("POST", "/repos/{owner}/{repo}/pulls")
def create_pull(ctx: Ctx) -> tuple[int, Any]:
    gh = ctx.gh
    repo = ctx.repo()
    ctx.require(("pull_requests", "write"))
    title = ctx.field("title")
    head = ctx.field("head")
    base = ctx.field("base")
    body = ctx.field("body", required=False)
    draft = bool(ctx.field("draft", bool, required=False))
    owner, _, branch = head.rpartition(":")
    if owner and owner.lower() != repo.owner.lower():
        # Cross-repository (fork) pull requests are out of the fake's scope.
        raise validation_failed([{"resource": "PullRequest", "field": "head", "code": "invalid"}])
    head_sha = gitcmd.ref_sha(repo.path, f"refs/heads/{branch}")
    base_sha = gitcmd.ref_sha(repo.path, f"refs/heads/{base}")
    errors = []
    if base_sha is None:
        errors.append({"resource": "PullRequest", "field": "base", "code": "invalid"})
    if head_sha is None:
        errors.append({"resource": "PullRequest", "field": "head", "code": "invalid"})
    if errors:
        raise validation_failed(errors)
    assert head_sha is not None and base_sha is not None
    for p in gh.pulls(repo.full_name):
        if p.state == "open" and p.head_ref == branch and p.base_ref == base:
            raise validation_failed(
                [
                    {
                        "resource": "PullRequest",
                        "code": "custom",
                        "message": f"A pull request already exists for {repo.owner}:{branch}.",
                    }
                ]
            )
    if gitcmd.is_ancestor(repo.path, head_sha, base_sha):
        raise validation_failed(
            [
                {
                    "resource": "PullRequest",
                    "code": "custom",
                    "message": f"No commits between {base} and {branch}",
                }
            ]
        )
    pull = gh.add_pull(
        repo.full_name,
        head_ref=branch,
        base_ref=base,
        title=title,
        body=body,
        user=gh.bot_login,
        draft=draft,
    )
    return 201, shapes.pull(gh, repo, pull)


@route("GET", "/repos/{owner}/{repo}/pulls")
def list_pulls(ctx: Ctx) -> tuple[int, Any]:
    repo = ctx.repo()
    ctx.require(("pull_requests", "read"))
    q = ctx.request.query_params
    state = q.get("state", "open")
    pulls = [p for p in ctx.gh.pulls(repo.full_name) if state == "all" or p.state == state]
    head = q.get("head")
    # GitHub silently ignores a head filter without the "owner:" prefix.
    if head and ":" in head:
        owner, _, branch = head.partition(":")
        pulls = [p for p in pulls if owner.lower() == repo.owner.lower() and p.head_ref == branch]
    if q.get("base"):
        pulls = [p for p in pulls if p.base_ref == q["base"]]
    pulls.sort(key=lambda p: p.number, reverse=q.get("direction", "desc") == "desc")
    per_page = int(q.get("per_page", "30"))
    page = int(q.get("page", "1"))
    chunk = pulls[(page - 1) * per_page : page * per_page]
    return 200, [shapes.pull(ctx.gh, repo, p) for p in chunk]


def _find_pull(ctx: Ctx) -> Any:
    repo = ctx.repo()
    pull = ctx.gh.find_pull(repo, ctx.int_arg("pull_number"))
    if pull is None:
        raise not_found()
    return repo, pull


@route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}")
def get_pull(ctx: Ctx) -> tuple[int, Any]:
    ctx.require(("pull_requests", "read"))
    repo, pull = _find_pull(ctx)
    return 200, shapes.pull(ctx.gh, repo, pull)


@route("PATCH", "/repos/{owner}/{repo}/pulls/{pull_number}")
def update_pull(ctx: Ctx) -> tuple[int, Any]:
    ctx.require(("pull_requests", "write"))
    repo, pull = _find_pull(ctx)
    issue = pull.issue
    title = ctx.field("title", required=False)
    body = ctx.field("body", required=False)
    state = ctx.field("state", required=False)
    if title is not None:
        issue.title = title
    if body is not None:
        issue.body = body
    if state in ("open", "closed") and state != issue.state:
        issue.state = state
        issue.closed_at = ctx.gh.now() if state == "closed" else None
    issue.updated_at = ctx.gh.now()
    return 200, shapes.pull(ctx.gh, repo, pull)
