"""Atlassian media service: `POST {mediaBaseUrl}/file?name=...` (multipart field `file`).

Auth is `Authorization: Bearer <mediaJwtToken>` plus `X-Client-Id: <clientId>`, both from the
Assets credentials endpoint; Basic auth is refused [LZ]. Error statuses/bodies are UNCONFIRMED:
- missing X-Client-Id -> 401: the service authenticates the *pair* (client id + token), so half a
  credential is an authentication failure; clients should treat 401 as "fetch fresh
  credentials", which also restores the client id.
- X-Client-Id not matching the token's issuer -> 403 (authenticated, but not for this client).
- expired / bad token -> 401.
The older raw-body variant `/file/binary` is deliberately not served (Atlassian moved uploads to
multipart `/file` [LZ]).
"""

from __future__ import annotations

import mimetypes
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox import auth
from sandbox.common import credential, read_form, state_of
from sandbox.errors import ApiError, json_response
from sandbox.state import now_ms

OBJECT_CLAIM = "urn:assets:object:"


def _media_type(mime: str) -> str:
    major = mime.split("/", 1)[0]
    if major in ("image", "audio", "video"):
        return major
    if mime in ("application/pdf", "text/plain") or major == "text":
        return "doc"
    return "unknown"


def authenticate(request: Request) -> dict[str, Any]:
    """Verified JWT claims, or 401/403 as documented at the top of this module."""
    header = request.headers.get("authorization")
    if auth.parse_basic(header) is not None:
        raise ApiError(401, "Basic authentication is not supported; use Bearer <mediaJwtToken>")
    token = auth.bearer_token(header)
    if token is None:
        raise ApiError(401, "Missing Authorization: Bearer <mediaJwtToken>")
    client_id = request.headers.get("x-client-id")
    if not client_id:
        raise ApiError(401, "Missing X-Client-Id header")
    try:
        claims = auth.verify_jwt(state_of(request).jwt_secret, token)
    except auth.JwtError as exc:
        raise ApiError(401, str(exc)) from exc
    if claims.get("iss") != client_id:
        raise ApiError(403, "X-Client-Id does not match the token issuer")
    access = claims.get("access") or {}
    if "create" not in access.get("urn:filestore:upload", []):
        raise ApiError(403, "Token does not grant upload access")
    return claims


def _object_key(claims: dict[str, Any]) -> str:
    for key in claims.get("access", {}):
        if key.startswith(OBJECT_CLAIM):
            return str(key[len(OBJECT_CLAIM) :])
    raise ApiError(403, "Token is not bound to an Assets object")


async def upload_file(request: Request) -> Response:
    claims = authenticate(request)
    object_key = _object_key(claims)
    name = request.query_params.get("name")
    if not name:
        raise ApiError(400, "Query parameter 'name' is required")
    form = await read_form(request)
    blob = form.files.get("file")
    if blob is None:
        got = ", ".join(form.part_names) or "nothing"
        raise ApiError(400, f"No file in multipart field 'file' (got: {got})")
    st = state_of(request)
    mime = blob.content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
    if mime == "application/octet-stream":
        mime = mimetypes.guess_type(name)[0] or mime
    blob.filename = name
    blob.content_type = mime
    media_id = str(uuid.uuid4())
    data = {
        "id": media_id,
        "mediaType": _media_type(mime),
        "mimeType": mime,
        "name": name,
        "processingStatus": "succeeded",
        "size": blob.size,
        "createdAt": now_ms(),
    }
    st.media_files[media_id] = {**data, "sha256": blob.sha256, "objectKey": object_key}
    st.record_upload(blob, "media", "file", credential(request))
    return json_response(request, {"data": data}, 201, f"201 media {media_id}")


routes = [Route("/media/file", upload_file, methods=["POST"])]
