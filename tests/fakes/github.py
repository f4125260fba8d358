"""A stateful fake GitHub for tests: a real HTTP peer on loopback, backed by real git repositories.

    fake = FakeGitHub(tmp_path, app_id="1")
    fake.add_installation(42, account="octo")
    fake.add_repo("octo/hello", files={"README.md": b"hi\\n"}, installation_id=42)
    async with fake.serve() as urls:          # or: with fake.serve() as urls:
        gh = GitHub(AppAuthStrategy(fake.app_id, fake.private_key_pem), base_url=urls.api_url, ...)

REST lives under {web_url}/api/v3 (GitHub Enterprise layout), git smart HTTP under
{web_url}/{owner}/{repo}.git. Auth is checked as GitHub checks it (app JWT on /app routes,
installation tokens elsewhere, scoped to repositories and permissions; user tokens from the OAuth
web flow on /user routes, see github_oauth); every request is recorded in
`fake.calls`; `fake.fail()` / `fake.delay()` inject faults. Objects come from real webhook payloads
(see github_shapes) so githubkit's strict parsing accepts them.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes import (
    github_contents,  # noqa: F401  (registers the contents route)
    github_gitdata,  # noqa: F401  (registers the Git Data routes)
)
from tests.fakes import github_git as gitcmd
from tests.fakes import github_shapes as shapes
from tests.fakes.github_auth import (
    TOKEN_LIFETIME,
    generate_private_key_pem,
    new_token,
    public_key_pem,
)
from tests.fakes.github_checks_api import CheckRunStore  # + /repos/…/check-runs routes
from tests.fakes.github_deliveries import DeliveryLog  # + /app/hook/deliveries routes
from tests.fakes.github_faults import CallsAndFaults
from tests.fakes.github_git import CommitInfo, Ident
from tests.fakes.github_http import API_PREFIX, Handler, RouteAuth, dispatch
from tests.fakes.github_oauth import DEFAULT_CLIENT_SECRET, OAuthApp  # + /user routes
from tests.fakes.github_oauth_web import web_routes
from tests.fakes.github_routes import ROUTES
from tests.fakes.github_serve import Serving, Urls
from tests.fakes.github_smart_http import smart_http
from tests.fakes.github_state import (
    DEFAULT_INSTALLATION_PERMISSIONS,
    ROLES,
    Call,
    Comment,
    Installation,
    Issue,
    Pull,
    Reaction,
    ReactionSubject,
    Repo,
    ReviewComment,
    Token,
    User,
)

__all__ = [
    "Call",
    "Comment",
    "FakeGitHub",
    "Installation",
    "Issue",
    "Pull",
    "Reaction",
    "Repo",
    "ReviewComment",
    "Token",
    "Urls",
    "User",
]

FileSpec = bytes | str | tuple[bytes | str, int | str]
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _mode(mode: int | str) -> str:
    if isinstance(mode, str):
        return mode
    known = {
        0o644: "100644",
        0o100644: "100644",
        0o755: "100755",
        0o100755: "100755",
        0o120000: "120000",
    }
    if mode not in known:
        raise ValueError(f"unsupported file mode {oct(mode)}")
    return known[mode]


def _file(spec: FileSpec) -> tuple[bytes, str]:
    data, mode = spec if isinstance(spec, tuple) else (spec, "100644")
    return (data.encode() if isinstance(data, str) else data), _mode(mode)


class FakeGitHub(CallsAndFaults, OAuthApp, DeliveryLog, CheckRunStore):
    def __init__(
        self,
        root: Path,
        *,
        app_id: str = "1",
        private_key_pem: str | None = None,
        app_slug: str = "porter",
        client_id: str = "Iv23liFakeP0rter",
        client_secret: str = DEFAULT_CLIENT_SECRET,
        app_owner: str = "porter-dev",
        stateless_tokens: bool = False,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.app_id = app_id
        self.app_slug = app_slug
        self.client_id = client_id
        self.app_owner = app_owner
        self.private_key_pem = private_key_pem or generate_private_key_pem()
        self.public_key_pem = public_key_pem(self.private_key_pem)
        self.stateless_tokens = stateless_tokens
        self.now = now  # injectable clock: JWT checks, token expiry, timestamps
        self.lock = threading.RLock()
        self._init_calls_and_faults()
        self.web_url = "http://127.0.0.1"
        self.api_url = self.web_url + API_PREFIX
        self.minted_tokens: list[Token] = []
        self.signed_commits: set[str] = set()
        self._ids = itertools.count(1001)
        self._users: dict[str, User] = {}
        self._installations: dict[int, Installation] = {}
        self._repos: dict[str, Repo] = {}
        self._issues: dict[tuple[str, int], Issue] = {}
        self._pulls: dict[tuple[str, int], Pull] = {}
        self._comments: dict[int, Comment] = {}
        self._review_comments: dict[int, ReviewComment] = {}
        self._reactions: list[Reaction] = []
        self._tokens: dict[str, Token] = {}
        self.add_user(app_owner, type="Organization")
        self.bot_login = f"{app_slug}[bot]"
        self.add_user(self.bot_login, type="Bot")
        self._init_oauth(client_secret)  # OAuth sign-in, user tokens, manifests (github_oauth)
        self._init_deliveries()  # the webhook delivery log (github_deliveries)
        self._init_check_runs()  # check runs Apps created (github_checks_api)
        self.app = self._build_app()

    # --- serving ---------------------------------------------------------------------------

    def serve(self) -> Serving:
        """Run on 127.0.0.1:<ephemeral> in a background thread; `with` or `async with`."""
        return Serving(self)

    def _build_app(self) -> Starlette:
        def rest(handler: Handler | None, auth: RouteAuth) -> Callable[[Request], Any]:
            async def endpoint(request: Request) -> Response:
                return await dispatch(self, request, handler=handler, auth=auth)

            return endpoint

        async def git_endpoint(request: Request) -> Response:
            return await smart_http(self, request)

        routes = [
            Route(API_PREFIX + path, rest(handler, auth), methods=[method])
            for method, path, auth, handler in ROUTES
        ]
        routes += web_routes(self)  # /login/oauth/…, /settings/apps/new (github_oauth_web)
        routes.append(
            Route("/{owner}/{repo}.git/{rest:path}", git_endpoint, methods=["GET", "POST"])
        )
        routes.append(Route("/{path:path}", rest(None, "any"), methods=_ALL_METHODS))
        return Starlette(routes=routes)

    # --- users, installations, repositories ------------------------------------------------

    def _id(self) -> int:
        return next(self._ids)

    def add_user(self, login: str, *, type: str = "User", name: str | None = None) -> User:
        with self.lock:
            key = login.lower()
            if key not in self._users:
                self._users[key] = User(login, self._id(), type, name, self.now())
            return self._users[key]

    def user(self, login: str) -> User:
        """The user with this login, created on first mention."""
        return self.add_user(login)

    def find_user(self, login: str) -> User | None:
        return self._users.get(login.lower())

    def add_installation(
        self,
        installation_id: int,
        *,
        account: str,
        permissions: Mapping[str, str] | None = None,
        account_type: str = "User",
    ) -> Installation:
        with self.lock:
            self.add_user(account, type=account_type)
            inst = Installation(
                installation_id,
                account,
                dict(permissions or DEFAULT_INSTALLATION_PERMISSIONS),
                self.now(),
            )
            self._installations[installation_id] = inst
            return inst

    def find_installation(self, installation_id: int) -> Installation | None:
        return self._installations.get(installation_id)

    def state_installations(self) -> list[Installation]:
        return list(self._installations.values())

    def add_repo(
        self,
        full_name: str,
        *,
        files: Mapping[str, FileSpec] | None = None,
        default_branch: str = "main",
        installation_id: int | None = None,
        private: bool = False,
        message: str = "Initial commit",
    ) -> Repo:
        """A bare repository at root/<owner>/<name>.git, one commit of `files` on default_branch.

        File values are bytes/str, or (content, mode) with mode 0o644, 0o755, 0o120000 (symlink:
        content is the target) or a git mode string like "100755".
        """
        owner, name = full_name.split("/")
        with self.lock:
            self.add_user(owner)
            if installation_id is not None and installation_id not in self._installations:
                self.add_installation(installation_id, account=owner)
            path = self.root / owner / f"{name}.git"
            if full_name.lower() in self._repos or path.exists():
                raise ValueError(f"{full_name} already exists")
            gitcmd.init_bare(path, default_branch)
            repo = Repo(
                owner, name, self._id(), path, default_branch, installation_id, private, self.now()
            )
            self._repos[full_name.lower()] = repo
            self.commit_files(full_name, default_branch, files or {}, message=message)
            return repo

    def find_repo(self, full_name: str) -> Repo | None:
        return self._repos.get(full_name.lower())

    def repo(self, full_name: str) -> Repo:
        repo = self.find_repo(full_name)
        if repo is None:
            raise KeyError(full_name)
        return repo

    def state_repos(self) -> list[Repo]:
        return list(self._repos.values())

    def set_permission(self, repo: str, login: str, role: str) -> None:
        """role: admin | maintain | write | triage | read | none (the default)."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        with self.lock:
            self.add_user(login)
            self.repo(repo).roles[login] = role

    # --- git state -------------------------------------------------------------------------

    def ref_sha(self, repo: str, ref: str) -> str | None:
        """ref: "heads/main" or "refs/heads/main"."""
        full = ref if ref.startswith("refs/") else f"refs/{ref}"
        return gitcmd.ref_sha(self.repo(repo).path, full)

    def read_tree(self, repo: str, sha: str) -> dict[str, tuple[str, bytes]]:
        """path -> (git mode string like "100755", content) for a commit or tree, via real git."""
        path = self.repo(repo).path
        if gitcmd.object_type(path, sha) == "commit":
            sha = gitcmd.read_commit(path, sha).tree
        entries = gitcmd.flat_tree(path, sha)
        blobs = gitcmd.read_blobs(path, [s for m, s in entries.values() if m != "160000"])
        return {p: (m, blobs.get(s, b"")) for p, (m, s) in entries.items()}

    def commit_parents(self, repo: str, sha: str) -> list[str]:
        return self.commit_info(repo, sha).parents

    def commit_info(self, repo: str, sha: str) -> CommitInfo:
        return gitcmd.read_commit(self.repo(repo).path, sha)

    def commit_verified(self, sha: str) -> bool:
        """Whether GitHub would show it Verified (made via the API with the default committer)."""
        return sha in self.signed_commits

    def commit_files(
        self,
        repo: str,
        branch: str,
        files: Mapping[str, FileSpec | None],
        *,
        message: str = "Update files",
        author: str | None = None,
    ) -> str:
        """Commit changes (None deletes a path) on top of branch (created if missing); returns sha.

        This is a push by someone other than Porter, e.g. to move the base branch under a task.
        """
        with self.lock:
            r = self.repo(repo)
            ref = f"refs/heads/{branch}"
            parent = gitcmd.ref_sha(r.path, ref)
            if parent is None and branch != r.default_branch:
                parent = gitcmd.ref_sha(r.path, f"refs/heads/{r.default_branch}")
            entries = gitcmd.flat_tree(r.path, parent) if parent else {}
            for file_path, spec in files.items():
                if spec is None:
                    entries.pop(file_path, None)
                else:
                    data, mode = _file(spec)
                    entries[file_path] = (mode, gitcmd.hash_blob(r.path, data))
            tree = gitcmd.write_tree(r.path, entries)
            who = author or r.owner
            ident = Ident(who, f"{who}@users.noreply.github.com", int(self.now()))
            sha = gitcmd.commit_tree(
                r.path, tree, [parent] if parent else [], message, author=ident, committer=ident
            )
            gitcmd.update_ref(r.path, ref, sha, gitcmd.ref_sha(r.path, ref))
            return sha

    # --- issues, pulls, comments, reactions ------------------------------------------------

    def _number(self, repo: Repo, number: int | None) -> int:
        if number is None:
            number = repo.next_number
        if (repo.full_name, number) in self._issues:
            raise ValueError(f"{repo.full_name}#{number} already exists")
        repo.next_number = max(repo.next_number, number + 1)
        return number

    def add_issue(
        self,
        repo: str,
        number: int | None = None,
        title: str = "An issue",
        body: str | None = "",
        user: str = "octocat",
    ) -> Issue:
        with self.lock:
            r = self.repo(repo)
            self.add_user(user)
            now = self.now()
            issue = Issue(
                r.full_name, self._number(r, number), self._id(), title, body, user, now, now
            )
            self._issues[(r.full_name, issue.number)] = issue
            return issue

    def add_pull(
        self,
        repo: str,
        number: int | None = None,
        *,
        head_ref: str,
        head_sha: str | None = None,
        base_ref: str | None = None,
        title: str = "A pull request",
        body: str | None = "",
        user: str = "octocat",
        draft: bool = False,
    ) -> Pull:
        """A same-repository PR; head_sha (if given) is where refs/heads/<head_ref> is set to."""
        with self.lock:
            r = self.repo(repo)
            head = f"refs/heads/{head_ref}"
            if head_sha is not None and gitcmd.ref_sha(r.path, head) != head_sha:
                gitcmd.git(r.path, "update-ref", head, head_sha)
            sha = gitcmd.ref_sha(r.path, head)
            base = base_ref or r.default_branch
            base_sha = gitcmd.ref_sha(r.path, f"refs/heads/{base}")
            if sha is None or base_sha is None:
                raise ValueError(f"branches {head_ref!r} and {base!r} must exist in {repo}")
            issue = self.add_issue(repo, number, title, body, user)
            issue.is_pull = True
            pull = Pull(issue, self._id(), head_ref, base, sha, base_sha, draft)
            self._pulls[(r.full_name, issue.number)] = pull
            return pull

    def _refresh(self, repo: Repo, pull: Pull) -> Pull:
        # A PR's head and base follow their branches, as on GitHub.
        if pull.state == "open":
            pull.head_sha = (
                gitcmd.ref_sha(repo.path, f"refs/heads/{pull.head_ref}") or pull.head_sha
            )
            pull.base_sha = (
                gitcmd.ref_sha(repo.path, f"refs/heads/{pull.base_ref}") or pull.base_sha
            )
        return pull

    def pulls(self, repo: str) -> list[Pull]:
        with self.lock:
            r = self.repo(repo)
            return [
                self._refresh(r, p)
                for (name, _), p in sorted(self._pulls.items())
                if name == r.full_name
            ]

    def find_pull(self, repo: Repo, number: int) -> Pull | None:
        pull = self._pulls.get((repo.full_name, number))
        return self._refresh(repo, pull) if pull else None

    def state_pull(self, repo: Repo, number: int) -> Pull:
        pull = self.find_pull(repo, number)
        assert pull is not None
        return pull

    def state_diff_stats(self, repo: Repo, pull: Pull) -> tuple[int, int, int, int]:
        return gitcmd.diff_stats(repo.path, pull.base_sha, pull.head_sha)

    def find_issue(self, repo: Repo, number: int) -> Issue | None:
        return self._issues.get((repo.full_name, number))

    def state_issue(self, repo: Repo, number: int) -> Issue:
        return self._issues[(repo.full_name, number)]

    def state_issues(self, repo: Repo) -> list[Issue]:
        return [i for (name, _), i in self._issues.items() if name == repo.full_name]

    def add_issue_comment(self, repo: str, issue_number: int, body: str, *, user: str) -> Comment:
        with self.lock:
            r = self.repo(repo)
            if (r.full_name, issue_number) not in self._issues:
                raise KeyError(f"{repo}#{issue_number}")
            self.add_user(user, type="Bot" if user.endswith("[bot]") else "User")
            now = self.now()
            comment = Comment(self._id(), r.full_name, issue_number, body, user, now, now)
            self._comments[comment.id] = comment
            return comment

    def comments(self, repo: str, issue_number: int) -> list[Comment]:
        return self.state_comments(self.repo(repo), issue_number)

    def state_comments(self, repo: Repo, issue_number: int) -> list[Comment]:
        with self.lock:
            return [
                c
                for c in self._comments.values()
                if c.repo == repo.full_name and c.issue_number == issue_number
            ]

    def find_comment(self, comment_id: int) -> Comment | None:
        return self._comments.get(comment_id)

    def remove_comment(self, comment_id: int) -> None:
        with self.lock:
            self._comments.pop(comment_id, None)

    def add_review_comment(
        self,
        repo: str,
        pull_number: int,
        body: str,
        *,
        user: str,
        path: str = "README.md",
        line: int = 1,
        in_reply_to: int | None = None,
    ) -> ReviewComment:
        with self.lock:
            r = self.repo(repo)
            pull = self.find_pull(r, pull_number)
            if pull is None:
                raise KeyError(f"{repo} pull #{pull_number}")
            self.add_user(user, type="Bot" if user.endswith("[bot]") else "User")
            now = self.now()
            comment = ReviewComment(
                self._id(),
                r.full_name,
                pull_number,
                body,
                user,
                path,
                line,
                pull.head_sha,
                self._id(),
                now,
                now,
                in_reply_to,
            )
            self._review_comments[comment.id] = comment
            return comment

    def review_comments(self, repo: str, pull_number: int) -> list[ReviewComment]:
        return self.state_review_comments(self.repo(repo), pull_number)

    def state_review_comments(self, repo: Repo, pull_number: int) -> list[ReviewComment]:
        with self.lock:
            return [
                c
                for c in self._review_comments.values()
                if c.repo == repo.full_name and c.pull_number == pull_number
            ]

    def find_review_comment(self, comment_id: int) -> ReviewComment | None:
        return self._review_comments.get(comment_id)

    def add_reaction(
        self, subject: ReactionSubject, comment_id: int, content: str, *, user: str
    ) -> tuple[bool, Reaction]:
        """(already_existed, reaction); subject is "issue_comment" or "review_comment"."""
        with self.lock:
            for r in self._reactions:
                if (r.subject, r.comment_id, r.content, r.user) == (
                    subject,
                    comment_id,
                    content,
                    user,
                ):
                    return True, r
            reaction = Reaction(
                self._id(),
                subject,
                comment_id,
                content,
                user,
                self.now(),
            )
            self._reactions.append(reaction)
            return False, reaction

    def reactions(
        self, comment_id: int, *, subject: ReactionSubject = "issue_comment"
    ) -> list[Reaction]:
        return self.state_reactions(subject, comment_id)

    def state_reactions(self, subject: str, comment_id: int) -> list[Reaction]:
        with self.lock:
            return [
                r for r in self._reactions if r.subject == subject and r.comment_id == comment_id
            ]

    # --- tokens ----------------------------------------------------------------------------

    def mint_token(
        self,
        installation_id: int,
        *,
        repositories: frozenset[str] | None = None,
        permissions: Mapping[str, str] | None = None,
        requested: Mapping[str, str] | None = None,
    ) -> Token:
        """An installation token, as POST /app/installations/{id}/access_tokens makes them.

        repositories are full names (None = all the installation's repositories).
        """
        with self.lock:
            inst = self._installations[installation_id]
            now = self.now()
            token = Token(
                self._id(),
                new_token(app_id=self.app_id, stateless=self.stateless_tokens),
                installation_id,
                repositories,
                dict(permissions or inst.permissions),
                now,
                now + TOKEN_LIFETIME,
                dict(requested) if requested is not None else None,
            )
            self._tokens[token.token] = token
            self.minted_tokens.append(token)
            return token

    def find_token(self, value: str) -> Token | None:
        """The installation token with this value, if it is still valid at fake.now()."""
        token = self._tokens.get(value)
        if token is None or token.expires_at <= self.now():
            return None
        return token

    # --- JSON as the API would render it (e.g. to build webhook payloads from state) --------

    def json_user(self, login: str) -> dict[str, Any]:
        return shapes.user(self, self.user(login))

    def json_repository(self, repo: str) -> dict[str, Any]:
        return shapes.repository(self, self.repo(repo))

    def json_installation(self, installation_id: int) -> dict[str, Any]:
        return shapes.installation(self, self._installations[installation_id])

    def json_issue(self, repo: str, number: int) -> dict[str, Any]:
        r = self.repo(repo)
        return shapes.issue(self, r, self.state_issue(r, number))

    def json_pull(self, repo: str, number: int) -> dict[str, Any]:
        r = self.repo(repo)
        return shapes.pull(self, r, self.state_pull(r, number))

    def json_comment(self, comment_id: int) -> dict[str, Any]:
        c = self._comments[comment_id]
        return shapes.comment(self, self.repo(c.repo), c)

    def json_review_comment(self, comment_id: int) -> dict[str, Any]:
        c = self._review_comments[comment_id]
        return shapes.review_comment(self, self.repo(c.repo), c)
