"""Atlassian media service: uploads and file metadata, playing either open reading of the upload
form (config `media_upload`, shared/apis/open-readings.md §1):
- "multipart" (the seed's): `POST {mediaBaseUrl}/file?name=...` stores multipart field `file`;
  `/file/binary` is gone (404), as the seed says Atlassian moved uploads away from it.
- "binary" (Atlassian's media client): `POST /file` creates an EMPTY file, answering
  `{data: {id, createdAt}}` with no size, whatever body it was sent; the bytes go raw (with the
  file's Content-Type) to `POST /file/binary?name=...`, answering `{data: MediaFile}`.
- "multipart-sizeless": as "multipart", but the answer carries no size (the seed script would
  read `data.size || local size` and never notice).
`GET /file/{id}` answers `{data: {id, size, processingStatus, ...}}` under each, to the JWT +
X-Client-Id pair of the object the file was uploaded for; with `media_read_back` false it answers
403 (an upload-only token: whether the Assets JWT may read is unknown).

Auth is `Authorization: Bearer <mediaJwtToken>` plus `X-Client-Id: <clientId>`, both from the
Assets credentials endpoint; Basic auth is refused [LZ]. Error statuses/bodies are UNCONFIRMED:
- missing X-Client-Id -> 401: the service authenticates the *pair* (client id + token), so half a
  credential is an authentication failure; clients should treat 401 as "fetch fresh
  credentials", which also restores the client id.
- X-Client-Id not matching the token's issuer -> 403 (authenticated, but not for this client).
- expired / bad token -> 401.
"""

from __future__ import annotations

import mimetypes
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox import auth
from sandbox.blobs import drain, is_multipart
from sandbox.common import credential, read_form, read_raw, state_of
from sandbox.errors import ApiError, json_response
from sandbox.state import Blob, now_ms

OBJECT_CLAIM = "urn:assets:object:"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


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


def _name(request: Request) -> str:
    name = request.query_params.get("name")
    if not name:
        raise ApiError(400, "Query parameter 'name' is required")
    return name


def _store(request: Request, claims: dict[str, Any], blob: Blob, name: str, route: str) -> Response:
    """Keep an uploaded file and answer its MediaFile (without its size under the sizeless reading)."""
    st = state_of(request)
    mime = blob.content_type or "application/octet-stream"
    if mime == "application/octet-stream":
        mime = mimetypes.guess_type(name)[0] or mime
    blob.filename, blob.content_type = name, mime
    data = _media_file(name, mime, blob.size)
    st.media_files[data["id"]] = {**data, "sha256": blob.sha256, "objectKey": _object_key(claims)}
    st.record_upload(blob, "media", route, credential(request))
    if st.config.media_upload == "multipart-sizeless":
        data = {k: v for k, v in data.items() if k != "size"}
    return json_response(request, {"data": data}, 201, f"201 media {data['id']} ({route})")


def _media_file(name: str, mime: str, size: int) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "mediaType": _media_type(mime),
        "mimeType": mime,
        "name": name,
        "processingStatus": "succeeded",
        "size": size,
        "createdAt": now_ms(),
    }


async def upload_file(request: Request) -> Response:
    claims = authenticate(request)
    object_key = _object_key(claims)
    name = _name(request)
    st = state_of(request)
    if st.config.media_upload == "binary":
        # createFile: an empty file, whatever was sent; the answer has no size to check.
        await drain(request.stream())
        data = _media_file(name, mimetypes.guess_type(name)[0] or "application/octet-stream", 0)
        st.media_files[data["id"]] = {**data, "sha256": EMPTY_SHA256, "objectKey": object_key}
        empty_file = {"id": data["id"], "createdAt": data["createdAt"]}
        return json_response(request, {"data": empty_file}, 201, f"201 EMPTY media {data['id']} (binary reading)")
    form = await read_form(request)
    blob = form.files.get("file")
    if blob is None:
        got = ", ".join(form.part_names) or "nothing"
        raise ApiError(400, f"No file in multipart field 'file' (got: {got})")
    return _store(request, claims, blob, name, "file")


async def upload_binary(request: Request) -> Response:
    claims = authenticate(request)
    name = _name(request)
    if state_of(request).config.media_upload != "binary":
        await drain(request.stream())
        raise ApiError(404, "Not Found (multipart reading: uploads moved to POST /file)")
    if is_multipart(request.headers.get("content-type")):
        # The PYSCRIPT pitfall: a multipart envelope sent here would be stored as the file.
        raise ApiError(400, "POST /file/binary takes the raw bytes, not multipart/form-data")
    blob = await read_raw(request)
    blob.content_type = request.headers.get("content-type", "").split(";")[0].strip() or None
    return _store(request, claims, blob, name, "file/binary")


async def file_metadata(request: Request) -> Response:
    claims = authenticate(request)
    if not state_of(request).config.media_read_back:
        raise ApiError(403, "Token does not grant read access")
    media = state_of(request).media_files.get(request.path_params["media_id"])
    if media is None or media["objectKey"] != _object_key(claims):
        raise ApiError(404, f"File {request.path_params['media_id']} not found")
    data = {k: v for k, v in media.items() if k not in ("sha256", "objectKey")}
    return json_response(request, {"data": data}, 200, f"200 media {media['id']} size {media['size']}")


routes = [
    Route("/media/file", upload_file, methods=["POST"]),
    Route("/media/file/binary", upload_binary, methods=["POST"]),
    Route("/media/file/{media_id}", file_metadata, methods=["GET"]),
]
