"""The response envelope of the Instagram v1 API, and the errors it carries.

Success: ``{"meta": {"code": 200}, "data": ..., "pagination": {...}}``.
Failure: ``{"meta": {"code": 400, "error_type": "...", "error_message": "..."}}``.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.web.iweb import IRequest

JSON = b"application/json; charset=utf-8"


class APIError(Exception):
    """A failure to report to the client in the error envelope."""

    def __init__(self, code: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.error_type = error_type
        self.message = message


def invalid(message: str) -> APIError:
    """400 APIInvalidParametersError."""
    return APIError(400, "APIInvalidParametersError", message)


def not_found(message: str) -> APIError:
    """404 APINotFoundError."""
    return APIError(404, "APINotFoundError", message)


def render(
    request: IRequest, data: Any, *, code: int = 200, pagination: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
) -> bytes:
    """The success envelope around ``data``, with the status and content type set; ``meta``
    adds fields to the envelope's meta."""
    request.setResponseCode(code)
    request.setHeader(b"content-type", JSON)
    body: dict[str, Any] = {"meta": {"code": code, **(meta or {})}, "data": data}
    if pagination is not None:
        body["pagination"] = pagination
    return json.dumps(body, separators=(",", ":")).encode()


def render_error(request: IRequest, error: APIError, request_id: str | None = None) -> bytes:
    """The error envelope for ``error``, with the status and content type set."""
    request.setResponseCode(error.code)
    request.setHeader(b"content-type", JSON)
    meta: dict[str, Any] = {
        "code": error.code,
        "error_type": error.error_type,
        "error_message": error.message,
    }
    if request_id:
        meta["request_id"] = request_id
    return json.dumps({"meta": meta}, separators=(",", ":")).encode()
