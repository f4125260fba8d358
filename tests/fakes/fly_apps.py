"""FakeFly's accounts: organizations, apps, and tokens that each reach their own (mixed in).

    fly = FakeFly(token="fm2_x", app="porter-runs")   # fm2_x: org "personal", app porter-runs
    fly.add_token("fm2_bob", orgs=["bob-org"])       # another Fly account, with its own org
    fly.add_token("fm2_deploy", orgs=[], apps=["porter-runs"])  # an app-scoped deploy token

The apps resource of the Machines API (docs/platform-notes.md §A.2):
    GET  /v1/apps/{app_name}     → {"id","name","status","organization":{"name","slug"}}
    POST /v1/apps                → 201 {"id","created_at"}; names are unique across all of Fly
    GET  /v1/apps?org_slug=…     → {"total_apps": N, "apps": [{"id","name","machine_count",
                                    "network"}]}
A token reaches the apps of its organizations plus the apps it was given; any other app is
"app not found" (404), an organization it is not in "organization not found" (404). An app made
through the API is "pending" until its first machine, then "deployed"; apps registered by the
test (constructor, add_token, add_app) start "deployed".
"""

from __future__ import annotations

import hmac
import re
import secrets
import string
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

if TYPE_CHECKING:
    from tests.fakes.fly import MachineRecord

APP_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass
class FlyOrg:
    slug: str
    name: str
    id: str


@dataclass
class FlyApp:
    id: str
    name: str
    org: str  # the organization's slug
    network: str
    created_at: int  # unix milliseconds, as Fly answers a create
    status: str = "deployed"
    enable_subdomains: bool = False


@dataclass
class FlyToken:
    authorization: str = field(repr=False)  # the one header value Fly accepts for it
    orgs: set[str]
    apps: set[str]

    def reaches(self, app: FlyApp) -> bool:
        return app.org in self.orgs or app.name in self.apps


def _fly_id(n: int = 16) -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(n))


def _error(code: int, message: str, **extra: str) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, code)


class FlyAccounts:
    """Mixed into FakeFly: `orgs`, `apps`, `add_org()`, `add_app()`, `add_token()`."""

    _machines: dict[str, MachineRecord]

    def _init_accounts(self, token: str, app: str) -> None:
        self.orgs: dict[str, FlyOrg] = {}
        self.apps: dict[str, FlyApp] = {}
        self._tokens: list[FlyToken] = []
        self.add_token(token, orgs=["personal"], apps=[app])

    # -- test helpers -----------------------------------------------------------------------

    def add_org(self, slug: str, *, name: str | None = None) -> FlyOrg:
        if slug not in self.orgs:
            self.orgs[slug] = FlyOrg(slug, name or slug, _fly_id(10))
        return self.orgs[slug]

    def add_app(
        self,
        name: str,
        *,
        org: str = "personal",
        network: str = "default",
        status: str = "deployed",
    ) -> FlyApp:
        """An app that already exists on Fly (ValueError if the name is taken anywhere)."""
        if name in self.apps:
            raise ValueError(f"Fly app {name!r} already exists")
        self.add_org(org)
        app = FlyApp(_fly_id(), name, org, network, int(time.time() * 1000), status)
        self.apps[name] = app
        return app

    def add_token(
        self, token: str, *, orgs: Iterable[str] = ("personal",), apps: Iterable[str] = ()
    ) -> None:
        """Accept `token` (sent as Fly wants it: macaroons as `FlyV1 …`, others as `Bearer …`).

        It reaches every app of `orgs` (created when new) and each app in `apps`; an app named
        there that does not exist yet is created in the token's first organization.
        """
        from tests.fakes.fly import _expected_authorization

        org_list = list(orgs)
        for slug in org_list:
            self.add_org(slug)
        for name in apps:
            if name not in self.apps:
                if not org_list:
                    raise ValueError(f"no organization to create app {name!r} in")
                self.add_app(name, org=org_list[0])
        self._tokens.append(FlyToken(_expected_authorization(token), set(org_list), set(apps)))

    def machines_in(self, app: str) -> list[MachineRecord]:
        """The machines ever created in one app, destroyed ones included, oldest first."""
        return [m for m in self._machines.values() if m.app == app]

    # -- the request pipeline's questions -----------------------------------------------------

    def token_for(self, authorization: str | None) -> FlyToken | None:
        """The registered token this Authorization header presents, compared in constant time."""
        if authorization is None:
            return None
        found = None
        for token in self._tokens:
            if hmac.compare_digest(authorization.encode(), token.authorization.encode()):
                found = token
        return found

    def app_for(self, token: FlyToken, name: str) -> FlyApp | None:
        app = self.apps.get(name)
        return app if app is not None and token.reaches(app) else None

    def machine_created(self, app_name: str) -> None:
        app = self.apps.get(app_name)
        if app is not None and app.status == "pending":
            app.status = "deployed"

    # -- endpoints ----------------------------------------------------------------------------

    async def _get_app(self, request: Request, _body: Any) -> Response:
        app = self.apps[request.path_params["app"]]  # the pipeline checked it exists and is seen
        org = self.orgs[app.org]
        return JSONResponse(
            {
                "id": app.id,
                "name": app.name,
                "status": app.status,
                "organization": {"name": org.name, "slug": org.slug},
            }
        )

    async def _create_app(self, request: Request, body: Any) -> Response:
        token: FlyToken = request.state.fly_token
        if not isinstance(body, dict):
            return _error(400, "request body must be a JSON object")
        name, slug = body.get("app_name"), body.get("org_slug")
        if not isinstance(name, str) or not name:
            return _error(422, "app_name is required")
        if not isinstance(slug, str) or not slug:
            return _error(422, "org_slug is required")
        network = body.get("network", "")
        subdomains = body.get("enable_subdomains", False)
        if not isinstance(network, str) or not isinstance(subdomains, bool):
            return _error(422, "network must be a string and enable_subdomains a boolean")
        if not APP_NAME.match(name):
            return _error(422, "app name may contain only lowercase letters, numbers and dashes")
        if slug not in self.orgs or slug not in token.orgs:
            return _error(404, "organization not found")
        if name in self.apps:  # any organization's, any account's: names are global
            return _error(
                422, "Validation failed: Name has already been taken", status="name_taken"
            )
        app = self.add_app(name, org=slug, network=network or "default", status="pending")
        app.enable_subdomains = subdomains
        return JSONResponse({"id": app.id, "created_at": app.created_at}, 201)

    async def _list_apps(self, request: Request, _body: Any) -> Response:
        token: FlyToken = request.state.fly_token
        slug = request.query_params.get("org_slug")
        if not slug:
            return _error(400, "org_slug is required")
        if slug not in self.orgs or slug not in token.orgs:
            return _error(404, "organization not found")
        apps = [a for a in self.apps.values() if a.org == slug]
        return JSONResponse(
            {
                "total_apps": len(apps),
                "apps": [
                    {
                        "id": a.id,
                        "name": a.name,
                        "machine_count": sum(
                            1 for m in self.machines_in(a.name) if m.state != "destroyed"
                        ),
                        "network": a.network,
                    }
                    for a in apps
                ],
            }
        )
