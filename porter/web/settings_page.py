"""`/settings`: a signed-in person's agent API keys, default agent and model, and Fly account.

Keys are sealed the moment they arrive (porter/vault.py) and never come back: pages and the JSON
answer show only whether each is set and its last four characters, and a form that fails
validation is shown again with its secret fields empty. A Fly token and app are checked against
the Machines API before they are saved; when the app does not exist yet, the page offers to
create it, carrying the token only as ciphertext bound to this user and that app name. Every
change is in the audit log, naming the key, never its value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from porter.agents import MODEL_PATTERN
from porter.crypto import open_sealed
from porter.errors import BadRequest, ConfigError, CryptoError, FlyError, Forbidden
from porter.fly import FlyClient
from porter.keys import FLY_TOKEN, PROVIDER_NAMES, PROVIDERS
from porter.models import User
from porter.web.render import redirect, render
from porter.web.services import Services, services
from porter.web.viewer import Viewer, audit, form_with_csrf, identify

# Fly app names and organization slugs: lowercase letters, digits and dashes.
FLY_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
MAX_KEY = 1000
FLY = "fly"  # what a Remove button names for the Fly token and app together


@dataclass
class Outcome:
    """What a save did or could not do, for the page shown after it."""

    errors: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    create: dict[str, str] | None = None  # the create-the-app offer: app, sealed token


# -- pages -----------------------------------------------------------------------------------


async def settings_page(request: Request) -> Response:
    viewer, user = await _person(request)
    saved = request.query_params.get("done", "")
    notices = {"saved": ["Saved."], "removed": ["Removed."]}.get(saved, [])
    return await _page(request, viewer, user, Outcome(notices=list(notices)))


async def settings_api(request: Request) -> Response:
    _, user = await _person(request)
    svc = services(request)
    shown = await svc.vault.described(user.id)
    return JSONResponse({
        "keys": {p.name: _state(shown.get(p.name)) for p in PROVIDERS},
        "fly": {"token": _state(shown.get(FLY_TOKEN)), "app": user.fly_app},
        "default_agent": user.default_agent,
        "default_model": user.default_model,
    })


async def save(request: Request) -> Response:
    viewer, user = await _person(request)
    fields = await form_with_csrf(request, viewer)
    svc = services(request)
    outcome = Outcome()
    keys = _keys(fields, outcome)
    agent = fields.get("default_agent", "").strip()
    model = fields.get("default_model", "").strip()
    if agent and agent not in svc.agents:
        outcome.errors.append(f"Porter has no agent called {agent[:40]!r}.")
    if model and not MODEL_PATTERN.fullmatch(model):
        outcome.errors.append("The default model is not a model name (letters, digits and "
                              "._:/@+- only).")
    token = fields.get(FLY_TOKEN, "").strip()
    app = fields.get("fly_app", "").strip()
    fly_changed = bool(token) or (bool(app) and app != user.fly_app)
    if fly_changed:
        saved = token or await _saved_fly_token(svc, user, outcome)
        if saved is not None:
            token = saved
            _check_fly_fields(token, app, outcome)
    if outcome.errors:
        return await _page(request, viewer, user, outcome, status=400)

    # The Fly pair is checked with Fly before it is saved, so a missing app or a token Fly
    # refuses never lands; the keys and defaults are saved either way.
    fly_ok = fly_changed and await _fly_app_exists(svc, user, token, app, outcome)
    if keys:
        await svc.vault.put(user.id, keys)
        for name in keys:
            await audit(request, viewer, "key.set", name, detail={"name": name})
    defaults: dict[str, object] = {"default_agent": agent or None,
                                   "default_model": model or None}
    changed = defaults != {"default_agent": user.default_agent,
                           "default_model": user.default_model}
    if changed:
        await svc.store.update_user(user.id, **defaults)
        await audit(request, viewer, "settings.update", "defaults", detail=defaults)
    if fly_ok:
        await _save_fly(request, viewer, user, token, app, replaced=bool(fields.get(FLY_TOKEN)))
    if fly_changed and not fly_ok:
        refreshed = await svc.store.get_user(user.id) or user
        if keys or changed:
            outcome.notices.append("Your keys and defaults were saved; the Fly settings "
                                   "were not.")
        return await _page(request, viewer, refreshed, outcome,
                           status=200 if outcome.create else 400)
    return redirect(request, "/settings?done=saved")


async def create_app(request: Request) -> Response:
    """The offer's answer: create the app in the chosen organization, then save the token and
    the app as a normal save would."""
    viewer, user = await _person(request)
    fields = await form_with_csrf(request, viewer)
    svc = services(request)
    app = fields.get("fly_app", "").strip()
    org = fields.get("fly_org", "").strip()
    outcome = Outcome()
    if not FLY_NAME.fullmatch(app):
        raise BadRequest("the Fly app name is missing or not a Fly app name")
    try:
        token = open_sealed(svc.runtime.keyring, fields.get("pending", ""),
                            user_id=str(user.id), name=_pending_name(app))
    except CryptoError:
        raise BadRequest("this form has expired: enter the Fly token and app again") from None
    if not FLY_NAME.fullmatch(org):
        outcome.errors.append("Enter the slug of the Fly organization to create the app in "
                              "(e.g. personal).")
    else:
        try:
            async with _fly(svc, token, app) as client:
                await client.create_app(org)
        except FlyError as exc:
            outcome.errors.append(_create_refused(exc, app, org))
        else:
            await audit(request, viewer, "fly.create_app", app, detail={"app": app, "org": org})
    if outcome.errors or not await _fly_app_exists(svc, user, token, app, outcome):
        outcome.create = outcome.create or _offer(svc, user, token, app)
        return await _page(request, viewer, user, outcome, status=400)
    await _save_fly(request, viewer, user, token, app, replaced=True)
    return redirect(request, "/settings?done=saved")


async def remove(request: Request) -> Response:
    viewer, user = await _person(request)
    fields = await form_with_csrf(request, viewer)
    svc = services(request)
    name = fields.get("name", "")
    if name in PROVIDER_NAMES:
        await svc.vault.put(user.id, {name: None})
        await audit(request, viewer, "key.remove", name, detail={"name": name})
    elif name == FLY:
        await svc.vault.put(user.id, {FLY_TOKEN: None})
        await svc.store.update_user(user.id, fly_app=None)
        await audit(request, viewer, "fly.remove", user.fly_app or "",
                    detail={"app": user.fly_app})
    else:
        raise BadRequest("nothing of that name can be removed here")
    return redirect(request, "/settings?done=removed")


# -- helpers ---------------------------------------------------------------------------------


async def _person(request: Request) -> tuple[Viewer, User]:
    viewer = await identify(request)
    viewer.require_signed_in()
    if viewer.user is None:  # the admin token: settings belong to a GitHub account
        raise Forbidden("settings belong to a person: sign in with GitHub to see yours")
    return viewer, viewer.user


async def _page(request: Request, viewer: Viewer, user: User, outcome: Outcome, *,
                status: int = 200) -> Response:
    svc = services(request)
    shown = await svc.vault.described(user.id)
    return render(
        request, viewer, "settings.html", status=status, user=user,
        providers=[(p, shown.get(p.name)) for p in PROVIDERS],
        fly_token=shown.get(FLY_TOKEN), agents=sorted(svc.agents),
        operator_agent=svc.settings.default_agent, outcome=outcome, remove_fly=FLY)


def _state(last4: str | None) -> dict[str, object]:
    return {"set": last4 is not None, "last4": last4}


def _keys(fields: dict[str, str], outcome: Outcome) -> dict[str, str | None]:
    """The keys typed in (blank: unchanged), checked for shape. Errors never quote a value."""
    keys: dict[str, str | None] = {}
    for provider in PROVIDERS:
        value = fields.get(provider.name, "").strip()
        if not value:
            continue
        if len(value) > MAX_KEY or not value.isprintable() or any(c.isspace() for c in value):
            outcome.errors.append(f"The {provider.label} has spaces or unusual characters in "
                                  "it, or is too long: paste it again.")
            continue
        keys[provider.name] = value
    return keys


async def _saved_fly_token(svc: Services, user: User, outcome: Outcome) -> str | None:
    """The token already saved, for a save that changes only the app ("" if none); None when
    it does not open (the outcome says so)."""
    try:
        return (await svc.vault.open(user.id, (FLY_TOKEN,))).get(FLY_TOKEN, "")
    except CryptoError:
        outcome.errors.append("Your saved Fly API token could not be opened: paste it again.")
        return None


def _check_fly_fields(token: str, app: str, outcome: Outcome) -> None:
    if not token:
        outcome.errors.append("Enter a Fly API token to use with the Fly app.")
    elif len(token) > 4 * MAX_KEY or not token.isprintable():
        outcome.errors.append("The Fly API token has unusual characters in it: paste it again.")
    if not app:
        outcome.errors.append("Enter the name of the Fly app to run your machines in.")
    elif not FLY_NAME.fullmatch(app):
        outcome.errors.append("A Fly app name has only lowercase letters, digits and dashes.")


async def _fly_app_exists(svc: Services, user: User, token: str, app: str,
                          outcome: Outcome) -> bool:
    """GET /v1/apps/{app} with the token: True when Fly shows it; otherwise why not, in
    `outcome` (a missing app also gets the offer to create it)."""
    try:
        async with _fly(svc, token, app) as client:
            found = await client.get_app()
    except ConfigError as exc:  # a token that is only a scheme ("Bearer ")
        outcome.errors.append(exc.message)
        return False
    except FlyError as exc:
        outcome.errors.append(
            "Fly refused the token: check it and paste it again." if exc.status == 401
            else f"Porter could not check the Fly app: {exc.message}")
        return False
    if found is None:
        outcome.errors.append(f"App {app} does not exist (or this token cannot see it). "
                              "Porter can create it in one of your Fly organizations.")
        outcome.create = _offer(svc, user, token, app)
        return False
    return True


async def _save_fly(request: Request, viewer: Viewer, user: User, token: str, app: str, *,
                    replaced: bool) -> None:
    svc = services(request)
    await svc.vault.put(user.id, {FLY_TOKEN: token})
    await svc.store.update_user(user.id, fly_app=app)
    await audit(request, viewer, "fly.set", app,
                detail={"app": app, "token": "replaced" if replaced else "kept"})


def _fly(svc: Services, token: str, app: str) -> FlyClient:
    return FlyClient(token=token, app=app, base_url=svc.settings.fly_api_url)


def _pending_name(app: str) -> str:
    return f"fly-pending:{app}"


def _offer(svc: Services, user: User, token: str, app: str) -> dict[str, str]:
    """The create form's hidden token: sealed to this user and this app name, so the page
    carries ciphertext only, and it opens for no one else and for no other app."""
    sealed, _ = svc.vault.sealed(user.id, {_pending_name(app): token})[_pending_name(app)]
    return {"app": app, "pending": sealed}


def _create_refused(exc: FlyError, app: str, org: str) -> str:
    if exc.status == 401:
        return "Fly refused the token: check it and paste it again."
    if exc.status == 404:
        return f"Fly has no organization {org} that this token can create apps in."
    if exc.status in (409, 422) and "taken" in exc.message.lower():
        return f"The name {app} is taken on Fly (names are unique across Fly): choose another."
    return f"Fly did not create the app: {exc.message}"


routes: list[BaseRoute] = [
    Route("/settings", settings_page, methods=["GET"]),
    Route("/settings", save, methods=["POST"]),
    Route("/settings/remove", remove, methods=["POST"]),
    Route("/settings/fly/create", create_app, methods=["POST"]),
    Route("/api/settings", settings_api, methods=["GET"]),
]
