"""Helpers shared by the service modules: state access, auth guards, bounded body reads."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from sandbox import auth
from sandbox.blobs import (
    BadMultipart,
    FormData,
    TooLarge,
    is_multipart,
    multipart_boundary,
    receive_multipart,
    receive_raw,
)
from sandbox.errors import ApiError
from sandbox.state import Blob, State

MAX_JSON_BYTES = 1024 * 1024


def state_of(request: Request) -> State:
    st: State = request.app.state.sandbox
    return st


def base_url(request: Request) -> str:
    """Scheme://host:port the client used; every URL we hand out points back at us."""
    return str(request.base_url).rstrip("/")


def credential(request: Request) -> str | None:
    return auth.credential_label(dict(request.headers), state_of(request).config)


def require_basic(request: Request) -> str:
    """Email of a valid Basic credential, else 401 (Atlassian/Marketplace auth)."""
    user = auth.basic_user(request, state_of(request).config)
    if user is None:
        if auth.bearer_token(request.headers.get("authorization")):
            raise ApiError(401, "Bearer tokens are not accepted here; use Basic email:api_token")
        raise ApiError(401, "Client must be authenticated to access this resource.")
    return user


def require_xsrf(request: Request) -> None:
    """Atlassian blocks multipart/raw uploads without `X-Atlassian-Token: no-check`.

    Only the exact value `no-check` passes: `nocheck` is an old alias some servers reject, so
    refusing it here is the careful choice.
    """
    if request.headers.get("x-atlassian-token") != "no-check":
        raise ApiError(403, "XSRF check failed", plain=True)


async def read_json(request: Request) -> Any:
    """A small JSON body (bounded), or 400/415 in the service's shape."""
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("application/json"):
        raise ApiError(415, f"Unsupported Media Type: expected application/json, got {ctype!r}")
    data = bytearray()
    async for chunk in request.stream():
        data.extend(chunk)
        if len(data) > MAX_JSON_BYTES:
            raise ApiError(413, "Request body too large")
    if not data:
        raise ApiError(400, "No content to map due to end-of-input")
    try:
        return json.loads(data)
    except ValueError as exc:
        raise ApiError(400, f"Invalid JSON: {exc}") from exc


async def read_form(request: Request, file_limit: int | None = None) -> FormData:
    """Stream a multipart body to disk; 415/400 for the classic Content-Type mistakes."""
    ctype = request.headers.get("content-type")
    if not is_multipart(ctype):
        raise ApiError(415, f"Unsupported Media Type: expected multipart/form-data, got {ctype!r}")
    boundary = multipart_boundary(ctype)
    if boundary is None:
        # The hand-set `Content-Type: multipart/form-data` pitfall: no boundary, nothing parses.
        raise ApiError(400, "Missing multipart boundary in Content-Type")
    try:
        return await receive_multipart(request.stream(), boundary, state_of(request).data_dir / "blobs", file_limit)
    except BadMultipart as exc:
        raise ApiError(400, f"Malformed multipart body: {exc}") from exc
    except TooLarge as exc:
        raise ApiError(413, f"File too large: {exc}") from exc


async def read_raw(request: Request, limit: int | None = None) -> Blob:
    try:
        return await receive_raw(request.stream(), state_of(request).data_dir / "blobs", limit)
    except TooLarge as exc:
        raise ApiError(413, f"Request body too large: {exc}") from exc


def human_size(size: int) -> str:
    """Assets DC style file size ("490 B", "1.5 kB")."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"
