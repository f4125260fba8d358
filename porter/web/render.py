"""HTML pages: Jinja2 templates with autoescaping, and the headers every page carries.

Text from GitHub and from agents (titles, instructions, summaries, logs) reaches templates only
as data: autoescaping makes it inert, and the Content-Security-Policy allows no inline script,
so even an escaping mistake could not run code.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from porter.web.services import services
from porter.web.viewer import Viewer, remember_anonymous

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("porter.web", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _static_version() -> str:
    digest = hashlib.sha256()
    for entry in sorted(resources.files("porter.web").joinpath("static").iterdir(),
                        key=lambda e: e.name):
        if entry.is_file():
            digest.update(entry.read_bytes())
    return digest.hexdigest()[:10]


def age(at: float | None, now: float | None = None) -> str:
    """'5 s', '3 min', '2 h', '4 d' ago."""
    if at is None:
        return ""
    seconds = max(0, int((now if now is not None else time.time()) - at))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def money(value: float | None) -> str:
    return "" if value is None else f"${value:.2f}" if value >= 0.01 else f"${value:.4f}"


def moment(at: float | None) -> str:
    if at is None:
        return ""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_ENV.filters.update(age=age, money=money, moment=moment)
_ENV.globals["static_version"] = _static_version()


def page_headers(github_url: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": (
            "default-src 'self'; script-src 'self'; style-src 'self'; "
            "img-src 'self' data: https://avatars.githubusercontent.com; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
            # /setup posts the App manifest to GitHub: the one form that leaves Porter.
            f"form-action 'self' {github_url}"),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


def redirect(request: Request, url: str, status: int = 303) -> Response:
    """A redirect with the headers every page carries: some browsers render a redirect's body,
    and none may cache one that follows a sign-in or a form."""
    return RedirectResponse(url, status,
                            headers=page_headers(services(request).settings.github_url))


def fragment(name: str, **context: Any) -> str:
    """A template rendered alone (a feed row for a live update)."""
    return _ENV.get_template(name).render(**context)


def render(request: Request, viewer: Viewer, name: str, *, status: int = 200,
           **context: Any) -> Response:
    svc = services(request)
    html = _ENV.get_template(name).render(
        viewer=viewer, request=request, public_url=svc.settings.public_url,
        sign_in_ready=svc.users is not None, now=svc.clock(), **context)
    response = HTMLResponse(html, status, headers=page_headers(svc.settings.github_url))
    remember_anonymous(response, svc, viewer)
    return response
