"""Every PorterError that reaches HTTP: `{"error": message}` for API clients and machines, an
HTML page for browsers, with the error's status either way."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from porter.errors import PorterError

HEADINGS = {400: "Bad request", 401: "Sign in first", 403: "Not allowed", 404: "Not found",
            409: "Conflict", 413: "Too large"}


def wants_html(request: Request) -> bool:
    path = request.url.path
    if path.startswith(("/api/", "/webhooks/", "/llm/")):
        return False
    return "text/html" in request.headers.get("accept", "")


async def unexpected(request: Request, exc: Exception) -> Response:
    """A bug, answered without its text (which may hold anything) in the same shapes as every
    other error, page headers included; Starlette raises it again afterwards, so the server
    logs its traceback."""
    return await _shown(request, 500, "Porter failed to answer this request; the error is in "
                        "its log.")


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no such route, method not allowed), in the same two shapes."""
    assert isinstance(exc, HTTPException)
    if exc.status_code >= 500 or exc.status_code < 400:
        return Response(status_code=exc.status_code, headers=exc.headers)
    return await _shown(request, exc.status_code, exc.detail,
                        dict(exc.headers) if exc.headers else None)


async def error_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PorterError)
    return await _shown(request, exc.status_code, exc.message)


async def _shown(request: Request, status: int, message: str,
                 headers: dict[str, str] | None = None) -> Response:
    if wants_html(request):
        # Imported here: the page machinery needs the app's services, which JSON errors
        # (raised before the app has started, in tests of bare routes) do not.
        from porter.web.render import render
        from porter.web.viewer import anonymous_viewer, identify

        try:
            viewer = await identify(request)
        except Exception:  # the error page must not fail on what failed the request
            viewer = anonymous_viewer(request)
        response = render(request, viewer, "error.html", status=status, code=status,
                          heading=HEADINGS.get(status, "Something went wrong"), message=message)
        response.headers.update(headers or {})
        return response
    return JSONResponse({"error": message}, status, headers=headers)
