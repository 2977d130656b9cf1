"""Error bodies in each service's own shape, plus the verdict recorded in the request log.

Shapes (see shared/apis/README.md):
- Jira / Assets: ErrorCollection `{"errorMessages": [...], "errors": {field: msg}}`.
- Media service: UNCONFIRMED; we answer `{"error": {"code", "title"}}` (a client should only rely
  on the status code there).
- Marketplace: UNCONFIRMED (the v2 "Errors" page was not captured); we answer
  `{"errors": [{"message": ...}]}` - again, clients should rely on status codes.
- awork: `{"code", "description", "link", "details", "validationErrors"}` [AW-ERR].
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

AWORK_LINK = "https://developers.awork.com/#response-types"


def set_verdict(request: Request, message: str) -> None:
    """Remember why we answered as we did; the request log shows it."""
    request.scope.setdefault("state", {})["verdict"] = message


def json_response(request: Request, body: Any, status: int = 200, verdict: str = "ok") -> JSONResponse:
    set_verdict(request, verdict)
    return JSONResponse(body, status_code=status)


def empty(request: Request, status: int = 204, verdict: str = "ok") -> Response:
    set_verdict(request, verdict)
    return Response(status_code=status)


def error_body(service: str, status: int, message: str, field: str | None = None) -> Any:
    """The error document a given service would send."""
    if service in ("jira", "assets"):
        return {
            "errorMessages": [] if field else [message],
            "errors": {field: message} if field else {},
        }
    if service == "media":
        return {"error": {"code": _media_code(status), "title": message}}
    if service == "marketplace":
        return {"errors": [{"message": message, **({"path": field} if field else {})}]}
    if service == "awork":
        return awork_body(_awork_code(status), message, field)
    return {"error": message}


def awork_body(code: str, description: str, field: str | None = None) -> dict[str, Any]:
    validation = [{"property": field, "message": description}] if field else []
    return {
        "code": code,
        "description": description,
        "link": AWORK_LINK,
        "details": [description],
        "validationErrors": validation,
    }


def _awork_code(status: int) -> str:
    # awork reports an invalid token as `workspaceid-missing` [AW-ERR].
    return {
        400: "validation-failed",
        401: "workspaceid-missing",
        403: "forbidden",
        404: "not-found",
        413: "request-too-large",
        429: "too-many-requests",
    }.get(status, "internal-error")


def _media_code(status: int) -> str:
    return {
        400: "BadRequest",
        401: "Unauthorized",
        403: "Forbidden",
        404: "NotFound",
        429: "TooManyRequests",
    }.get(status, "InternalServerError")


def error(
    request: Request,
    service: str,
    status: int,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    set_verdict(request, f"{status} {message}")
    body = error_body(service, status, message, field)
    return JSONResponse(body, status_code=status, headers=headers)


def plain_error(request: Request, status: int, message: str) -> Response:
    """Atlassian's XSRF rejection is a bare text body ("XSRF check failed"), not JSON."""
    set_verdict(request, f"{status} {message}")
    return Response(message, status_code=status, media_type="text/plain")


def service_of(path: str) -> str:
    """Which emulated service a path belongs to (for error shapes and 429 headers)."""
    if path.startswith("/_sandbox"):
        return "sandbox"
    if path.startswith("/jsm/assets/"):
        return "assets"
    if path.startswith("/media/"):
        return "media"
    if path.startswith("/rest/2/"):
        return "marketplace"
    if path.startswith("/api/v1/"):
        return "awork"
    return "jira"


class ApiError(Exception):
    """Raised by handlers; rendered in the shape of the service that owns the path."""

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        body: Any = None,
        plain: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers
        self.body = body
        self.plain = plain


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if exc.plain:
        return plain_error(request, exc.status, exc.message)
    set_verdict(request, f"{exc.status} {exc.message}")
    body = exc.body
    if body is None:
        body = error_body(service_of(request.url.path), exc.status, exc.message, exc.field)
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)
