"""awork API v1 profile images: `/api/v1/files/images/{kind}/{id}` POST/GET/DELETE [AW-FILES].

Bearer auth; an invalid token surfaces as `workspaceid-missing` (401) [AW-ERR]. Multipart part
`File`, at most 100 MB: we read "MB" as 10^6 bytes (the stricter reading) and stop storing as
soon as the limit is crossed, answering 413 in awork's error shape (status UNCONFIRMED).
Choices where the docs are silent (UNCONFIRMED): the part name is matched case-sensitively
(ASP.NET might bind `file` too; a client sending `File` works either way), only image bytes are
accepted, DELETE without an image is 404 `not-found`, GET ignores query parameters.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from sandbox import auth
from sandbox.common import credential, read_form, state_of
from sandbox.errors import ApiError, awork_body, empty, json_response, set_verdict
from sandbox.images import dimensions, sniff_file
from sandbox.state import AWORK_KINDS, iso_now

FIELD = "File"
ACCEPTED = ("image/png", "image/jpeg", "image/gif", "image/bmp", "image/webp")
ENTITY_KEYS = {
    "companies": "companyId",
    "contactpersons": "contactPersonId",
    "projects": "projectId",
    "projecttemplates": "projectTemplateId",
    "users": "userId",
    "workspaces": "workspaceId",
}


def target(request: Request) -> str:
    """`kind/id` after auth and existence checks, else awork-shaped 401/404."""
    if not auth.awork_ok(request, state_of(request).config):
        raise ApiError(401, "The workspace id is missing. The access token is invalid or missing.")
    kind, entity_id = request.path_params["kind"], request.path_params["entity_id"]
    if kind not in AWORK_KINDS:
        raise ApiError(404, f"The resource 'files/images/{kind}' was not found.")
    if entity_id not in state_of(request).awork_entities[kind]:
        raise ApiError(404, f"The {kind[:-1]} with id {entity_id} was not found.")
    return f"{kind}/{entity_id}"


def file_info(key: str, image: dict[str, Any]) -> dict[str, Any]:
    kind, entity_id = key.split("/", 1)
    ids = dict.fromkeys(("projectId", "projectTemplateId", "companyId", "userId"))
    ids[ENTITY_KEYS[kind]] = entity_id
    width, height = image["dims"]
    version = {
        "id": image["versionId"],
        "fileInfoId": image["id"],
        "version": 1,
        "size": image["size"],
        "width": width,
        "height": height,
        "createdOn": image["createdOn"],
        "updatedOn": image["createdOn"],
    }
    return {
        "name": image["fileName"],
        "description": None,
        "id": image["id"],
        **ids,
        "taskId": None,
        "taskTemplateId": None,
        "documentId": None,
        "fileName": image["fileName"],
        "entityType": kind[:-1],
        "mimeType": image["mime"],
        "createdOn": image["createdOn"],
        "updatedOn": image["createdOn"],
        "fileVersions": [version],
        "isCommentFile": False,
        "externalProvider": None,
        "externalFileUrl": None,
        "isHiddenForConnectUsers": False,
        "entityId": entity_id,
    }


async def upload(request: Request) -> Response:
    key = target(request)
    st = state_of(request)
    try:
        form = await read_form(request, file_limit=st.config.awork_max_bytes)
    except ApiError as exc:
        if exc.status == 413:
            raise ApiError(413, "The file size must not exceed 100MB.", FIELD) from exc
        raise
    blob = form.files.get(FIELD)
    if blob is None:
        got = ", ".join(form.part_names) or "nothing"
        raise ApiError(400, f"'{FIELD}' must not be empty (multipart parts received: {got}).", FIELD)
    mime = sniff_file(blob.path)
    dims = dimensions(blob.path)
    if mime not in ACCEPTED or dims is None:
        raise ApiError(400, "The uploaded file is not a supported image.", FIELD)
    blob.content_type = mime
    st.awork_images[key] = {
        "id": str(uuid.uuid4()),
        "versionId": str(uuid.uuid4()),
        "fileName": blob.filename,
        "mime": mime,
        "size": blob.size,
        "sha256": blob.sha256,
        "path": str(blob.path),
        "dims": dims,
        "createdOn": iso_now(),
        "credential": credential(request),
    }
    st.record_upload(blob, "awork", f"files/images/{key.split('/')[0]}", credential(request))
    return json_response(request, file_info(key, st.awork_images[key]), 200, f"200 image {key}")


def _image(request: Request) -> tuple[str, dict[str, Any]]:
    key = target(request)
    image = state_of(request).awork_images.get(key)
    if image is None:
        raise ApiError(
            404,
            f"No profile image for {key}.",
            body=awork_body("not-found", f"No profile image for {key}."),
        )
    return key, image


async def get_image(request: Request) -> Response:
    _, image = _image(request)
    set_verdict(request, "ok")
    return FileResponse(Path(image["path"]), media_type=image["mime"])


async def delete_image(request: Request) -> Response:
    key, _ = _image(request)
    del state_of(request).awork_images[key]
    return empty(request, 204, f"204 image {key} deleted")


PATH = "/api/v1/files/images/{kind}/{entity_id}"
routes = [
    Route(PATH, upload, methods=["POST"]),
    Route(PATH, get_image, methods=["GET"]),
    Route(PATH, delete_image, methods=["DELETE"]),
]
