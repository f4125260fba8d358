"""The GitHub adapter: the only module that imports githubkit. Returns Porter's own types.

githubkit is configured for a server that must not hang or retry behind our back: no HTTP cache,
no automatic retries (jobs.py owns retries and honours the wait github_errors.py reads from an
error answer), explicit timeouts, and a cache per client so tokens from one App never leak into
another (docs/platform-notes.md §D.2, D.4). Webhook payloads never pass through githubkit's
models (D.3).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import httpx
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from githubkit import AppAuthStrategy, AppInstallationAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy
from githubkit.exception import RequestError, RequestFailed, RequestTimeout
from githubkit.utils import UNSET

from porter.errors import ConfigError, GitHubError
from porter.github_deliveries import PER_PAGE, DeliveryPage, delivery_page, request_payload
from porter.github_errors import failed
from porter.logs import remember_secret

Clock = Callable[[], float]
ReactionContent = Literal["+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes"]
TIMEOUT = httpx.Timeout(10.0, read=30.0)


@dataclass(frozen=True)
class Token:
    token: str
    expires_at: float


@dataclass(frozen=True)
class Comment:
    id: int
    body: str
    html_url: str
    author_id: int | None  # None: the author's account was deleted


@dataclass(frozen=True)
class Pull:
    number: int
    html_url: str
    state: str
    head_ref: str
    head_sha: str
    head_repo: str | None
    base_ref: str


@dataclass(frozen=True)
class Issue:
    number: int
    title: str
    body: str
    html_url: str


@dataclass(frozen=True)
class TreeEntry:
    """One path in a new tree: `sha` None deletes the path."""

    path: str
    mode: str
    sha: str | None


def load_private_key(pem: str | None, path: str | None) -> str:
    """The App's private key from PEM text or a file; a clear error when it is not one."""
    if pem:
        text = pem.replace("\\n", "\n")
    elif path:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise ConfigError(
                f"PORTER_GITHUB_PRIVATE_KEY_FILE: cannot read {path}: {exc.strerror}") from None
    else:
        raise ConfigError("the GitHub App private key is not set")
    try:
        serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError("the GitHub App private key is not a readable PEM private key "
                          "(PORTER_GITHUB_PRIVATE_KEY or PORTER_GITHUB_PRIVATE_KEY_FILE)") from None
    return text


class GitHubApp:
    """Porter's identity as a GitHub App: JWT-authenticated calls and installation clients."""

    def __init__(
        self,
        *,
        app_id: str,
        private_key: str,
        api_url: str,
        clock: Clock = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._app_id = str(app_id)
        self._private_key = private_key
        self._api_url = api_url.rstrip("/") + "/"
        self._clock = clock
        self._transport = transport
        # One cache for the App and all its installations: a fresh cache per installation would
        # sign a new App JWT from the PEM (tens of ms on the event loop) for each one's first
        # token. Token entries are keyed by installation, so sharing leaks nothing across them.
        self._cache = MemCacheStrategy()
        self._app = self._client(AppAuthStrategy(self._app_id, private_key))
        self._installations: dict[int, InstallationClient] = {}
        self._bot_id: int | None = None

    def _client(self, auth: Any) -> GitHub[Any]:
        return GitHub(
            auth,
            base_url=self._api_url,
            http_cache=False,
            auto_retry=False,
            timeout=TIMEOUT,
            cache_strategy=self._cache,
            async_transport=self._transport,
            user_agent="porter",
        )

    def installation(self, installation_id: int) -> InstallationClient:
        """A client acting as the installation; its token is minted lazily and cached."""
        client = self._installations.get(installation_id)
        if client is None:
            github = self._client(
                AppInstallationAuthStrategy(self._app_id, self._private_key, installation_id)
            )
            client = InstallationClient(github, clock=self._clock)
            self._installations[installation_id] = client
        return client

    async def read_token(self, installation_id: int, repo: str) -> Token:
        """A token for one repository with `contents: read` only: what a machine may hold."""
        name = repo.split("/", 1)[1]
        response = await _call(
            self._app.rest.apps.async_create_installation_access_token(
                installation_id, repositories=[name], permissions={"contents": "read"}
            ),
            clock=self._clock,
        )
        data = response.parsed_data
        remember_secret(data.token)  # no log line may show it, shaped like a token or not
        return Token(token=data.token, expires_at=_epoch(data.expires_at))

    async def own_comments(self, installation_id: int, repo: str, number: int) -> list[Comment]:
        """The comments this App wrote on an issue: only they can hold a marker Porter left.

        Anyone can post the same text, another App's `[bot]` too, so the author's id decides:
        the App's bot is `<slug>[bot]`, asked for once per process (as the installation: a JWT
        opens only the /app endpoints).
        """
        client = self.installation(installation_id)
        if self._bot_id is None:
            app = (await _call(self._app.rest.apps.async_get_authenticated(),
                               clock=self._clock)).parsed_data
            slug = getattr(app, "slug", None)
            if not isinstance(slug, str) or not slug:
                raise GitHubError("GitHub did not say which App Porter is")
            self._bot_id = await client.user_id(f"{slug}[bot]")
        return [c for c in await client.comments(repo, number) if c.author_id == self._bot_id]

    async def repo_installation(self, repo: str) -> int:
        owner, name = repo.split("/", 1)
        response = await _call(self._app.rest.apps.async_get_repo_installation(owner, name),
                               clock=self._clock)
        return int(response.parsed_data.id)

    # -- webhook deliveries, for the lost-delivery reconciler (porter/deliveries.py) --

    async def webhook_deliveries(self, cursor: str | None = None) -> DeliveryPage:
        """One page of the App's webhook deliveries, newest first, and the next page's cursor."""
        apps = self._app.rest.apps
        response = await _call(apps.async_list_webhook_deliveries(
            per_page=PER_PAGE, cursor=cursor or UNSET), clock=self._clock)
        return delivery_page(response.json(), response.headers.get("link"))

    async def delivery_payload(self, delivery_id: int) -> dict[str, Any] | None:
        """The payload GitHub sent in one delivery, as plain JSON."""
        response = await _call(self._app.rest.apps.async_get_webhook_delivery(delivery_id),
                               clock=self._clock)
        return request_payload(response.json())

    async def redeliver(self, delivery_id: int) -> None:
        """Ask GitHub to send a delivery again, later, under the same guid (it answers 202)."""
        await _call(self._app.rest.apps.async_redeliver_webhook_delivery(delivery_id),
                    clock=self._clock)


class InstallationClient:
    """REST calls as one installation. Every method maps failures to GitHubError."""

    def __init__(self, github: GitHub[Any], *, clock: Clock) -> None:
        self._gh = github
        self._clock = clock

    async def call(self, request: Callable[[Any], Any]) -> Any:
        """A REST call no method here wraps (porter/check_runs.py, github_repo_files.py), its
        failures as GitHubError: `request` is given githubkit's `rest` and returns the call."""
        return await _call(request(self._gh.rest), clock=self._clock)

    async def permission(self, repo: str, login: str) -> str:
        owner, name = repo.split("/", 1)
        try:
            response = await _call(
                self._gh.rest.repos.async_get_collaborator_permission_level(owner, name, login),
                clock=self._clock,
            )
        except GitHubError as exc:
            if exc.status == 404:  # not a collaborator, or no such user
                return "none"
            raise
        data = response.parsed_data
        role = getattr(data, "role_name", None)
        return str(role if role in ("admin", "maintain", "write", "triage", "read")
                   else data.permission)

    async def react(self, repo: str, comment_kind: str, comment_id: int,
                    content: ReactionContent) -> None:
        owner, name = repo.split("/", 1)
        reactions = self._gh.rest.reactions
        # Review comments live under /pulls/comments, not /issues/comments
        # (docs/platform-notes.md §B.6).
        call = (reactions.async_create_for_pull_request_review_comment
                if comment_kind == "review" else reactions.async_create_for_issue_comment)
        await _call(call(owner, name, comment_id, content=content), clock=self._clock)

    async def create_comment(self, repo: str, number: int, body: str) -> Comment:
        owner, name = repo.split("/", 1)
        issues = self._gh.rest.issues
        return await self._written(issues.async_create_comment(owner, name, number, body=body))

    async def update_comment(self, repo: str, comment_id: int, body: str) -> Comment:
        owner, name = repo.split("/", 1)
        issues = self._gh.rest.issues
        return await self._written(
            issues.async_update_comment(owner, name, comment_id, body=body))

    async def _written(self, request: Any) -> Comment:
        """The comment a create or update call answers with."""
        return _comment((await _call(request, clock=self._clock)).parsed_data)

    async def comments(self, repo: str, number: int) -> list[Comment]:
        owner, name = repo.split("/", 1)
        found: list[Comment] = []
        for page in range(1, 21):  # 2,000 comments: a marker search never runs forever
            response = await _call(
                self._gh.rest.issues.async_list_comments(owner, name, number, per_page=100,
                                                          page=page),
                clock=self._clock,
            )
            batch = [_comment(c) for c in response.parsed_data]
            found += batch
            if len(batch) < 100:
                break
        return found

    async def user_id(self, login: str) -> int:
        data = (await _call(self._gh.rest.users.async_get_by_username(login),
                            clock=self._clock)).parsed_data
        return int(data.id)

    async def issue(self, repo: str, number: int) -> Issue:
        owner, name = repo.split("/", 1)
        data = (await _call(self._gh.rest.issues.async_get(owner, name, number),
                            clock=self._clock)).parsed_data
        return Issue(number=data.number, title=data.title, body=data.body or "",
                     html_url=data.html_url)

    async def pull(self, repo: str, number: int) -> Pull:
        owner, name = repo.split("/", 1)
        data = (await _call(self._gh.rest.pulls.async_get(owner, name, number),
                            clock=self._clock)).parsed_data
        return _pull(data)

    async def default_branch(self, repo: str) -> str:
        owner, name = repo.split("/", 1)
        data = (await _call(self._gh.rest.repos.async_get(owner, name),
                            clock=self._clock)).parsed_data
        return str(data.default_branch)

    async def ref_sha(self, repo: str, ref: str) -> str | None:
        """The sha a ref (`heads/main`) points at, or None when it does not exist."""
        owner, name = repo.split("/", 1)
        try:
            data = (await _call(self._gh.rest.git.async_get_ref(owner, name, ref),
                                clock=self._clock)).parsed_data
        except GitHubError as exc:
            if exc.status == 404:
                return None
            raise
        return str(data.object_.sha)

    async def commit_tree(self, repo: str, sha: str) -> tuple[str, list[str]]:
        """A commit's tree sha and parent shas."""
        owner, name = repo.split("/", 1)
        data = (await _call(self._gh.rest.git.async_get_commit(owner, name, sha),
                            clock=self._clock)).parsed_data
        return data.tree.sha, [parent.sha for parent in data.parents]

    async def create_blob(self, repo: str, content: bytes) -> str:
        owner, name = repo.split("/", 1)
        data = (await _call(self._gh.rest.git.async_create_blob(
            owner, name, content=base64.b64encode(content).decode(), encoding="base64",
        ), clock=self._clock)).parsed_data
        return str(data.sha)

    async def create_tree(self, repo: str, base_tree: str, entries: Sequence[TreeEntry]) -> str:
        owner, name = repo.split("/", 1)
        tree: Any = [{"path": e.path, "mode": e.mode, "type": "blob", "sha": e.sha}
                     for e in entries]
        data = (await _call(self._gh.rest.git.async_create_tree(
            owner, name, tree=tree, base_tree=base_tree,
        ), clock=self._clock)).parsed_data
        return str(data.sha)

    async def create_commit(self, repo: str, *, message: str, tree: str,
                            parents: Sequence[str]) -> str:
        owner, name = repo.split("/", 1)
        data = (await _call(self._gh.rest.git.async_create_commit(
            owner, name, message=message, tree=tree, parents=list(parents),
        ), clock=self._clock)).parsed_data
        return str(data.sha)

    async def create_ref(self, repo: str, ref: str, sha: str) -> None:
        owner, name = repo.split("/", 1)
        await _call(self._gh.rest.git.async_create_ref(owner, name, ref=f"refs/{ref}", sha=sha),
                    clock=self._clock)

    async def update_ref(self, repo: str, ref: str, sha: str, *, force: bool = False) -> None:
        """Move a ref; without force GitHub refuses (422) anything but a fast-forward."""
        owner, name = repo.split("/", 1)
        await _call(self._gh.rest.git.async_update_ref(owner, name, ref, sha=sha, force=force),
                    clock=self._clock)

    async def find_pull(self, repo: str, branch: str) -> Pull | None:
        """The PR (open or closed) whose head is `branch` in this repository."""
        owner, name = repo.split("/", 1)
        data = (await _call(self._gh.rest.pulls.async_list(
            owner, name, head=f"{owner}:{branch}", state="all", per_page=10,
        ), clock=self._clock)).parsed_data
        pulls = [_pull(p) for p in data if p.head.ref == branch]
        return pulls[0] if pulls else None

    async def create_pull(self, repo: str, *, title: str, head: str, base: str,
                          body: str, draft: bool = False) -> Pull:
        owner, name = repo.split("/", 1)
        data = (await _call(self._gh.rest.pulls.async_create(
            owner, name, title=title, head=head, base=base, body=body, draft=draft,
        ), clock=self._clock)).parsed_data
        return _pull(data)


async def _call(request: Any, *, clock: Clock) -> Any:
    """Await a githubkit call, turning its failures into GitHubError (no token in messages)."""
    try:
        return await request
    except RequestFailed as exc:
        response = exc.response
        try:
            body = response.json()
        except ValueError:
            body = None
        raise failed(response.status_code, response.headers, body, now=clock()) from None
    except RequestTimeout:
        raise GitHubError("GitHub did not answer in time", retryable=True) from None
    except RequestError as exc:
        raise GitHubError(f"could not reach GitHub: {type(exc.exc).__name__}",
                          retryable=True) from None


def _comment(data: Any) -> Comment:
    return Comment(id=int(data.id), body=data.body or "", html_url=data.html_url,
                   author_id=int(data.user.id) if data.user else None)


def _pull(data: Any) -> Pull:
    head_repo = data.head.repo.full_name if getattr(data.head, "repo", None) else None
    return Pull(number=int(data.number), html_url=data.html_url, state=data.state,
                head_ref=data.head.ref, head_sha=data.head.sha, head_repo=head_repo,
                base_ref=data.base.ref)


def _epoch(value: datetime | str) -> float:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.timestamp()
