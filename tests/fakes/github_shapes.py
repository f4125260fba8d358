"""GitHub-shaped JSON for the fake: real webhook payloads with ids, urls and numbers swapped.

githubkit parses responses strictly, so every object starts from a complete recorded one
(tests/fixtures/github-webhooks) instead of a hand-written subset.
Fields the REST schema requires but webhook payloads lack (e.g. `app_slug`, `subscribers_count`)
are added here.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from tests.conftest import FIXTURES
from tests.fakes.github_git import CommitInfo, Ident, TreeEntry
from tests.fakes.github_state import (
    REACTIONS,
    Comment,
    Installation,
    Issue,
    Pull,
    Reaction,
    Repo,
    ReviewComment,
    User,
)

if TYPE_CHECKING:
    from tests.fakes.github import FakeGitHub

Json = dict[str, Any]

_TEMPLATE_API = "https://api.github.com"
_TEMPLATE_WEB = "https://github.com"
_TEMPLATE_REPO = "Codertocat/Hello-World"
DOCS = "https://docs.github.com/rest"


@functools.cache
def _fixture(name: str) -> Json:
    data: Json = json.loads((FIXTURES / name).read_text())
    return data


def _template(name: str, *keys: str) -> Json:
    obj: Any = _fixture(name)
    for key in keys:
        obj = obj[key]
    return copy.deepcopy(obj)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def node_id(kind: str, ident: int | str) -> str:
    return base64.b64encode(f"0{len(kind)}:{kind}{ident}".encode()).decode()


def error(status: int, message: str, errors: list[Json] | None = None) -> Json:
    body: Json = {"message": message, "documentation_url": DOCS, "status": str(status)}
    if errors is not None:
        body["errors"] = errors
    return body


def user(gh: FakeGitHub, u: User) -> Json:
    t = _template("issue_comment/created.payload.json", "sender")
    login = quote(u.login)
    html = f"{gh.web_url}/apps/{u.login.removesuffix('[bot]')}" if u.type == "Bot" else None
    for key, value in list(t.items()):
        if isinstance(value, str):
            t[key] = value.replace(
                f"{_TEMPLATE_API}/users/Codertocat", f"{gh.api_url}/users/{login}"
            )
    t.update(
        login=u.login,
        id=u.id,
        node_id=node_id("User", u.id),
        avatar_url=f"{gh.web_url}/avatars/u/{u.id}?v=4",
        html_url=html or f"{gh.web_url}/{login}",
        type=u.type,
        site_admin=False,
        user_view_type="public",
    )
    return t


def public_user(gh: FakeGitHub, u: User) -> Json:
    t = user(gh, u)
    t.update(
        name=u.name,
        company=None,
        blog="",
        location=None,
        email=None,
        hireable=None,
        bio=None,
        twitter_username=None,
        public_repos=0,
        public_gists=0,
        followers=0,
        following=0,
        created_at=iso(u.created_at),
        updated_at=iso(u.created_at),
    )
    return t


def _rebase(obj: Any, subs: list[tuple[str, str]]) -> Any:
    if isinstance(obj, str):
        for old, new in subs:
            obj = obj.replace(old, new)
        return obj
    if isinstance(obj, dict):
        return {k: _rebase(v, subs) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rebase(v, subs) for v in obj]
    return obj


def repository(gh: FakeGitHub, repo: Repo) -> Json:
    host = gh.web_url.split("://", 1)[-1]
    t = _rebase(
        _template("issue_comment/created.payload.json", "repository"),
        [
            (f"{_TEMPLATE_API}/repos/{_TEMPLATE_REPO}", f"{gh.api_url}/repos/{repo.full_name}"),
            (f"{_TEMPLATE_WEB}/{_TEMPLATE_REPO}", f"{gh.web_url}/{repo.full_name}"),
            (f"git://github.com/{_TEMPLATE_REPO}", f"git://{host}/{repo.full_name}"),
            (f"git@github.com:{_TEMPLATE_REPO}", f"git@{host}:{repo.full_name}"),
        ],
    )
    open_issues = sum(1 for i in gh.state_issues(repo) if i.state == "open")
    t.update(
        id=repo.id,
        node_id=node_id("Repository", repo.id),
        name=repo.name,
        full_name=repo.full_name,
        private=repo.private,
        visibility="private" if repo.private else "public",
        owner=user(gh, gh.user(repo.owner)),
        default_branch=repo.default_branch,
        created_at=iso(repo.created_at),
        updated_at=iso(repo.created_at),
        pushed_at=iso(repo.created_at),
        open_issues_count=open_issues,
        open_issues=open_issues,
        # Required by the REST FullRepository schema, absent from webhook payloads.
        has_discussions=False,
        subscribers_count=0,
        network_count=0,
    )
    return t  # type: ignore[no-any-return]


def app(gh: FakeGitHub) -> Json:
    owner = gh.user(gh.app_owner)
    return {
        "id": int(gh.app_id) if gh.app_id.isdigit() else 1,
        "slug": gh.app_slug,
        "client_id": gh.client_id,
        "node_id": node_id("App", gh.app_id),
        "owner": user(gh, owner),
        "name": gh.app_name,
        "description": gh.app_description,
        "external_url": gh.app_external_url or gh.web_url,
        "html_url": f"{gh.web_url}/apps/{gh.app_slug}",
        "created_at": iso(gh.app_created_at),
        "updated_at": iso(gh.app_updated_at),
        # Registration state (github_oauth.OAuthApp): a manifest conversion replaces these.
        "permissions": dict(gh.app_permissions),
        "events": list(gh.app_events),
        "installations_count": len(gh.state_installations()),
    }


def installation(gh: FakeGitHub, inst: Installation) -> Json:
    t = _rebase(
        _template("installation/created.payload.json", "installation"),
        [(_TEMPLATE_API, gh.api_url), (_TEMPLATE_WEB, gh.web_url)],
    )
    account = gh.user(inst.account)
    t.update(
        id=inst.id,
        account=user(gh, account),
        repository_selection=inst.repository_selection,
        access_tokens_url=f"{gh.api_url}/app/installations/{inst.id}/access_tokens",
        repositories_url=f"{gh.api_url}/installation/repositories",
        html_url=f"{gh.web_url}/settings/installations/{inst.id}",
        app_id=app(gh)["id"],
        app_slug=gh.app_slug,
        client_id=gh.client_id,
        target_id=account.id,
        target_type=account.type,
        permissions=dict(inst.permissions),
        events=app(gh)["events"],
        created_at=iso(inst.created_at),
        updated_at=iso(inst.created_at),
    )
    return t  # type: ignore[no-any-return]


def reaction_rollup(url: str, reactions: list[Reaction]) -> Json:
    rollup: Json = {"url": f"{url}/reactions", "total_count": len(reactions)}
    for content in REACTIONS:
        rollup[content] = sum(1 for r in reactions if r.content == content)
    return rollup


def association(gh: FakeGitHub, repo: Repo, login: str) -> str:
    if login == repo.owner:
        return "OWNER"
    if repo.roles.get(login, "none") not in ("none", "read"):
        return "COLLABORATOR"
    return "NONE"


def issue(gh: FakeGitHub, repo: Repo, i: Issue) -> Json:
    t = _template("issue_comment/created.payload.json", "issue")
    api = f"{gh.api_url}/repos/{repo.full_name}/issues/{i.number}"
    kind = "pull" if i.is_pull else "issues"
    html = f"{gh.web_url}/{repo.full_name}/{kind}/{i.number}"
    t.update(
        url=api,
        repository_url=f"{gh.api_url}/repos/{repo.full_name}",
        labels_url=f"{api}/labels{{/name}}",
        comments_url=f"{api}/comments",
        events_url=f"{api}/events",
        timeline_url=f"{api}/timeline",
        html_url=html,
        id=i.id,
        node_id=node_id("Issue", i.id),
        number=i.number,
        title=i.title,
        user=user(gh, gh.user(i.user)),
        labels=[],
        state=i.state,
        state_reason="completed" if i.state == "closed" else None,
        locked=False,
        assignee=None,
        assignees=[],
        milestone=None,
        comments=len(gh.state_comments(repo, i.number)),
        created_at=iso(i.created_at),
        updated_at=iso(i.updated_at),
        closed_at=iso(i.closed_at),
        author_association=association(gh, repo, i.user),
        body=i.body,
        reactions=reaction_rollup(api, []),
        performed_via_github_app=None,
    )
    if i.is_pull:
        pull = gh.state_pull(repo, i.number)
        t["draft"] = pull.draft
        t["pull_request"] = {
            "url": f"{gh.api_url}/repos/{repo.full_name}/pulls/{i.number}",
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "merged_at": None,
        }
    else:
        t.pop("draft", None)
    return t


def comment(gh: FakeGitHub, repo: Repo, c: Comment) -> Json:
    t = _template("issue_comment/created.payload.json", "comment")
    url = f"{gh.api_url}/repos/{repo.full_name}/issues/comments/{c.id}"
    issue_rec = gh.state_issue(repo, c.issue_number)
    kind = "pull" if issue_rec.is_pull else "issues"
    t.update(
        url=url,
        html_url=f"{gh.web_url}/{repo.full_name}/{kind}/{c.issue_number}#issuecomment-{c.id}",
        issue_url=f"{gh.api_url}/repos/{repo.full_name}/issues/{c.issue_number}",
        id=c.id,
        node_id=node_id("IssueComment", c.id),
        user=user(gh, gh.user(c.user)),
        created_at=iso(c.created_at),
        updated_at=iso(c.updated_at),
        author_association=association(gh, repo, c.user),
        performed_via_github_app=app(gh) if c.via_app else None,
        body=c.body,
        reactions=reaction_rollup(url, gh.state_reactions("issue_comment", c.id)),
    )
    return t


def review_comment(gh: FakeGitHub, repo: Repo, c: ReviewComment) -> Json:
    t = _template("pull_request_review_comment/created.payload.json", "comment")
    url = f"{gh.api_url}/repos/{repo.full_name}/pulls/comments/{c.id}"
    pull_url = f"{gh.api_url}/repos/{repo.full_name}/pulls/{c.pull_number}"
    html = f"{gh.web_url}/{repo.full_name}/pull/{c.pull_number}#discussion_r{c.id}"
    t.update(
        url=url,
        pull_request_review_id=c.review_id,
        id=c.id,
        node_id=node_id("PullRequestReviewComment", c.id),
        diff_hunk=c.diff_hunk,
        path=c.path,
        position=c.line,
        original_position=c.line,
        commit_id=c.commit_id,
        original_commit_id=c.commit_id,
        user=user(gh, gh.user(c.user)),
        body=c.body,
        created_at=iso(c.created_at),
        updated_at=iso(c.updated_at),
        html_url=html,
        pull_request_url=pull_url,
        author_association=association(gh, repo, c.user),
        _links={"self": {"href": url}, "html": {"href": html}, "pull_request": {"href": pull_url}},
        reactions=reaction_rollup(url, gh.state_reactions("review_comment", c.id)),
        line=c.line,
        original_line=c.line,
        side="RIGHT",
        subject_type="line",
    )
    if c.in_reply_to is not None:
        t["in_reply_to_id"] = c.in_reply_to
    return t


def reaction(gh: FakeGitHub, r: Reaction) -> Json:
    return {
        "id": r.id,
        "node_id": node_id("Reaction", r.id),
        "user": user(gh, gh.user(r.user)),
        "content": r.content,
        "created_at": iso(r.created_at),
    }


def pull(gh: FakeGitHub, repo: Repo, p: Pull) -> Json:
    t = _template("pull_request/opened.payload.json", "pull_request")
    api = f"{gh.api_url}/repos/{repo.full_name}"
    url = f"{api}/pulls/{p.number}"
    html = f"{gh.web_url}/{repo.full_name}/pull/{p.number}"
    issue_url = f"{api}/issues/{p.number}"
    commits, additions, deletions, files = gh.state_diff_stats(repo, p)
    owner = user(gh, gh.user(repo.owner))
    repo_json = repository(gh, repo)

    def side(ref: str, sha: str) -> Json:
        return {
            "label": f"{repo.owner}:{ref}",
            "ref": ref,
            "sha": sha,
            "user": owner,
            "repo": repo_json,
        }

    statuses = f"{api}/statuses/{p.head_sha}"
    t.update(
        url=url,
        id=p.id,
        node_id=node_id("PullRequest", p.id),
        html_url=html,
        diff_url=f"{html}.diff",
        patch_url=f"{html}.patch",
        issue_url=issue_url,
        commits_url=f"{url}/commits",
        review_comments_url=f"{url}/comments",
        review_comment_url=f"{api}/pulls/comments{{/number}}",
        comments_url=f"{issue_url}/comments",
        statuses_url=statuses,
        number=p.number,
        state=p.state,
        locked=False,
        title=p.title,
        user=user(gh, gh.user(p.user)),
        body=p.body,
        labels=[],
        milestone=None,
        active_lock_reason=None,
        created_at=iso(p.issue.created_at),
        updated_at=iso(p.issue.updated_at),
        closed_at=iso(p.issue.closed_at),
        merged_at=None,
        merge_commit_sha=None,
        assignee=None,
        assignees=[],
        requested_reviewers=[],
        requested_teams=[],
        head=side(p.head_ref, p.head_sha),
        base=side(p.base_ref, p.base_sha),
        _links={
            "self": {"href": url},
            "html": {"href": html},
            "issue": {"href": issue_url},
            "comments": {"href": f"{issue_url}/comments"},
            "review_comments": {"href": f"{url}/comments"},
            "review_comment": {"href": f"{api}/pulls/comments{{/number}}"},
            "commits": {"href": f"{url}/commits"},
            "statuses": {"href": statuses},
        },
        author_association=association(gh, repo, p.user),
        auto_merge=None,
        draft=p.draft,
        merged=p.merged,
        mergeable=None,
        rebaseable=None,
        mergeable_state="unknown",
        merged_by=None,
        comments=len(gh.state_comments(repo, p.number)),
        review_comments=len(gh.state_review_comments(repo, p.number)),
        maintainer_can_modify=False,
        commits=commits,
        additions=additions,
        deletions=deletions,
        changed_files=files,
    )
    return t


# --- Git Data API objects -------------------------------------------------------------------


def git_ref(gh: FakeGitHub, repo: Repo, ref: str, sha: str, obj_type: str) -> Json:
    api = f"{gh.api_url}/repos/{repo.full_name}/git"
    kind = {"commit": "commits", "tag": "tags", "tree": "trees", "blob": "blobs"}[obj_type]
    return {
        "ref": ref,
        "node_id": node_id("Ref", f"{repo.id}:{ref}"),
        "url": f"{api}/{ref}",
        "object": {"type": obj_type, "sha": sha, "url": f"{api}/{kind}/{sha}"},
    }


def short_blob(gh: FakeGitHub, repo: Repo, sha: str) -> Json:
    return {"url": f"{gh.api_url}/repos/{repo.full_name}/git/blobs/{sha}", "sha": sha}


def blob(gh: FakeGitHub, repo: Repo, sha: str, data: bytes) -> Json:
    # GitHub wraps base64 at 60 columns with a trailing newline.
    raw = base64.b64encode(data).decode()
    wrapped = "".join(raw[i : i + 60] + "\n" for i in range(0, len(raw), 60))
    return {
        **short_blob(gh, repo, sha),
        "node_id": node_id("Blob", sha),
        "size": len(data),
        "content": wrapped,
        "encoding": "base64",
    }


def tree(gh: FakeGitHub, repo: Repo, sha: str, entries: list[TreeEntry]) -> Json:
    api = f"{gh.api_url}/repos/{repo.full_name}/git"
    items = []
    for e in entries:
        item: Json = {"path": e.path, "mode": e.mode, "type": e.type, "sha": e.sha}
        if e.type == "blob":
            item["size"] = e.size
            item["url"] = f"{api}/blobs/{e.sha}"
        elif e.type == "tree":
            item["url"] = f"{api}/trees/{e.sha}"
        items.append(item)
    return {"sha": sha, "url": f"{api}/trees/{sha}", "tree": items, "truncated": False}


def _ident(i: Ident) -> Json:
    return {"name": i.name, "email": i.email, "date": iso(i.when)}


def git_commit(gh: FakeGitHub, repo: Repo, c: CommitInfo, *, verified: bool) -> Json:
    api = f"{gh.api_url}/repos/{repo.full_name}/git"
    html = f"{gh.web_url}/{repo.full_name}/commit"
    return {
        "sha": c.sha,
        "node_id": node_id("Commit", c.sha),
        "url": f"{api}/commits/{c.sha}",
        "html_url": f"{html}/{c.sha}",
        "author": _ident(c.author),
        "committer": _ident(c.committer),
        "message": c.message,
        "tree": {"sha": c.tree, "url": f"{api}/trees/{c.tree}"},
        "parents": [
            {"sha": p, "url": f"{api}/commits/{p}", "html_url": f"{html}/{p}"} for p in c.parents
        ],
        # GitHub signs commits it creates through the API with its own key when the committer is
        # left to default; the fake records that fact rather than producing a real signature.
        "verification": {
            "verified": verified,
            "reason": "valid" if verified else "unsigned",
            "signature": None,
            "payload": None,
            "verified_at": iso(c.committer.when) if verified else None,
        },
    }
