"""Every PorterError that reaches HTTP becomes `{"error": message}` with the error's status."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from porter.errors import PorterError


def error_response(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PorterError)
    return JSONResponse({"error": exc.message}, exc.status_code)
