"""JSM Assets (cloud) gateway: workspace discovery, avatar upload, objects, attachments.

Paths mirror `https://api.atlassian.com/jsm/assets/workspace/{ws}/v1/...` [KB-AV, LZ].
The attachment list and delete routes are INFERRED from the Data Center API (README §2): the
cloud equivalents are not documented anywhere. They are served so Ferry can avoid linking the
same mediaId twice, and flagged as inferred in /_sandbox/.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox import auth
from sandbox.common import (
    base_url,
    credential,
    human_size,
    read_form,
    read_json,
    require_basic,
    require_xsrf,
    state_of,
)
from sandbox.errors import ApiError, empty, json_response, set_verdict
from sandbox.images import dimensions, rendition, sniff_file, solid_png
from sandbox.state import State, iso_now

AVATAR_FIELD = "rlabs-insight-object-avatar"
AVATAR_SIZES = (16, 48, 72, 144, 288)
# Assets avatar formats are UNCONFIRMED; the careful set is what every Atlassian product takes.
AVATAR_TYPES = ("image/png", "image/jpeg", "image/gif")
TCS_404 = {"errorMessage": "TCS 404"}  # observed body for workspace/object mismatch [LZ]
PREFIX = "/jsm/assets/workspace/{ws}/v1"


def workspace(request: Request) -> str:
    ws = str(request.path_params["ws"])
    if ws not in state_of(request).workspaces:
        raise ApiError(404, f"Workspace {ws} not found")
    return ws


def prefix(request: Request, ws: str) -> str:
    return f"{base_url(request)}/jsm/assets/workspace/{ws}/v1"


async def workspaces(request: Request) -> Response:
    require_basic(request)
    values = [{"workspaceId": ws} for ws in state_of(request).workspaces]
    body = {"size": len(values), "start": 0, "limit": 50, "isLastPage": True, "values": values}
    return json_response(request, body)


def _avatar_urls(request: Request, ws: str, server_uuid: str) -> dict[str, str]:
    root = f"{prefix(request, ws)}/avatar/{server_uuid}"
    return {f"url{n}": f"{root}/preview_{n}.png" for n in AVATAR_SIZES}


async def avatar_upload(request: Request) -> Response:
    require_basic(request)
    ws = workspace(request)
    require_xsrf(request)
    form = await read_form(request)
    st = state_of(request)
    blob = form.files.get(AVATAR_FIELD)
    if blob is None:
        got = ", ".join(form.part_names) or "nothing"
        # The field was renamed from `file` [KB-AV revisions]; say which one we expected.
        raise ApiError(400, f"No avatar file in multipart field '{AVATAR_FIELD}' (got: {got})")
    client_uuid = form.fields.get("avatarUUID", "")
    try:
        uuid.UUID(client_uuid)
    except ValueError as exc:
        raise ApiError(400, "avatarUUID must be a UUID", "avatarUUID") from exc
    type_id = form.fields.get("objectTypeId", "")
    if not type_id.isdigit():
        raise ApiError(400, "objectTypeId must be an integer", "objectTypeId")
    if st.object_types.get(type_id, {}).get("workspaceId") != ws:
        raise ApiError(400, f"Object type {type_id} not found", "objectTypeId")
    mime = sniff_file(blob.path)
    if mime not in AVATAR_TYPES or dimensions(blob.path) is None:
        raise ApiError(400, "The uploaded file is not a supported image (png, jpeg, gif)")
    # Always a NEW server UUID: catches clients that reuse their own in step 2 [KB-AV].
    server_uuid = str(uuid.uuid4())
    st.client_avatar_uuids.add(client_uuid)
    st.assets_avatars[server_uuid] = {
        "avatarUUID": server_uuid,
        "clientAvatarUUID": client_uuid,
        "workspaceId": ws,
        "objectTypeId": type_id,
        "sha256": blob.sha256,
        "mime": mime,
        "path": str(blob.path),
    }
    blob.content_type = blob.content_type or mime
    st.record_upload(blob, "assets", "avatar/upload", credential(request))
    body = {"workspaceId": ws, "avatarUUID": server_uuid, **_avatar_urls(request, ws, server_uuid)}
    return json_response(request, body, 201, f"201 avatar {server_uuid}")


async def avatar_preview(request: Request) -> Response:
    require_basic(request)
    ws = workspace(request)
    size = int(request.path_params["size"])
    avatar = state_of(request).assets_avatars.get(request.path_params["uuid"])
    if avatar is None or avatar["workspaceId"] != ws or size not in AVATAR_SIZES:
        raise ApiError(404, "Avatar not found")
    png = rendition(Path(avatar["path"]), _square(Path(avatar["path"])), size)
    set_verdict(request, "ok")
    return Response(png, media_type="image/png")


def _square(path: Path) -> tuple[int, int, int, int] | None:
    dims = dimensions(path)
    if dims is None:
        return None
    side = min(dims)
    return (0, 0, side, side)


async def type_icon(request: Request) -> Response:
    workspace(request)
    size = int(request.query_params.get("size", "48") or 48)
    if request.path_params["type_id"] not in state_of(request).object_types:
        raise ApiError(404, "Object type not found")
    set_verdict(request, "ok")
    return Response(solid_png(max(1, min(size, 288)), 7), media_type="image/png")


def object_json(request: Request, obj: dict[str, Any]) -> dict[str, Any]:
    st = state_of(request)
    ws, oid = obj["workspaceId"], obj["id"]
    root = prefix(request, ws)
    if obj["hasAvatar"] and obj["avatarUUID"]:
        urls = _avatar_urls(request, ws, obj["avatarUUID"])
    else:
        # Objects without their own avatar fall back to the type icon [ASSETS-SPEC example].
        icon = f"{root}/objecttype/{obj['objectTypeId']}/icon.png"
        urls = {f"url{n}": f"{icon}?size={n}" for n in AVATAR_SIZES}
    object_type = st.object_types[obj["objectTypeId"]]
    return {
        "workspaceId": ws,
        "globalId": f"{ws}:{oid}",
        "id": oid,
        "label": obj["label"],
        "objectKey": obj["objectKey"],
        "avatar": {"workspaceId": ws, "globalId": f"{ws}:{oid}", "objectId": oid, **urls},
        "objectType": {"workspaceId": ws, "id": object_type["id"], "name": object_type["name"]},
        "created": obj["created"],
        "updated": obj["updated"],
        "hasAvatar": obj["hasAvatar"],
        "timestamp": int(time.time() * 1000),
        "attributes": obj["attributes"],
        "_links": {"self": f"{root}/object/{oid}"},
    }


def _check_avatar(st: State, ws: str, body: dict[str, Any], current: str | None) -> str | None:
    """The avatar UUID to store; only server-issued UUIDs with hasAvatar: true are accepted."""
    avatar_uuid = body.get("avatarUUID")
    has_avatar = body.get("hasAvatar")
    if avatar_uuid is None:
        if has_avatar is True and current is None:
            raise ApiError(400, "hasAvatar is true but no avatarUUID was given", "avatarUUID")
        return current if has_avatar is True else None
    avatar = st.assets_avatars.get(str(avatar_uuid))
    if avatar is None or avatar["workspaceId"] != ws:
        hint = " (this is the client UUID sent to avatar/upload; use the avatarUUID it returned)"
        known_client = str(avatar_uuid) in st.client_avatar_uuids
        raise ApiError(
            400,
            f"Avatar with UUID {avatar_uuid} not found{hint if known_client else ''}",
            "avatarUUID",
        )
    if has_avatar is not True:
        # Stricter than (possibly) real: an avatarUUID without hasAvatar: true is refused so
        # clients always send the pair the KB documents.
        raise ApiError(400, "hasAvatar must be true when avatarUUID is set", "hasAvatar")
    return str(avatar_uuid)


def _check_object_body(st: State, ws: str, body: Any) -> str:
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object")
    type_id = str(body.get("objectTypeId", ""))
    if st.object_types.get(type_id, {}).get("workspaceId") != ws:
        raise ApiError(400, f"Object type '{type_id}' not found", "objectTypeId")
    if not isinstance(body.get("attributes", []), list):
        raise ApiError(400, "attributes must be a list", "attributes")
    return type_id


async def object_create(request: Request) -> Response:
    require_basic(request)
    ws = workspace(request)
    st = state_of(request)
    body = await read_json(request)
    type_id = _check_object_body(st, ws, body)
    avatar_uuid = _check_avatar(st, ws, body, None)
    oid = str(next(st.object_ids))
    st.objects[oid] = {
        "id": oid,
        "workspaceId": ws,
        "objectTypeId": type_id,
        "label": _label(body, oid),
        "objectKey": f"FER-{oid}",
        "attributes": body.get("attributes", []),
        "avatarUUID": avatar_uuid,
        "hasAvatar": avatar_uuid is not None,
        "created": iso_now(),
        "updated": iso_now(),
    }
    return json_response(request, object_json(request, st.objects[oid]), 201, f"201 object {oid}")


def _label(body: dict[str, Any], oid: str) -> str:
    for attr in body.get("attributes", []):
        for value in (attr or {}).get("objectAttributeValues", []) or []:
            if isinstance(value, dict) and value.get("value"):
                return str(value["value"])
    return f"Object {oid}"


def get_object(request: Request) -> dict[str, Any]:
    ws = workspace(request)
    obj = state_of(request).objects.get(request.path_params["oid"])
    if obj is None or obj["workspaceId"] != ws:
        raise ApiError(404, f"Object {request.path_params['oid']} not found")
    return obj


async def object_update(request: Request) -> Response:
    require_basic(request)
    obj = get_object(request)
    st = state_of(request)
    body = await read_json(request)
    type_id = _check_object_body(st, obj["workspaceId"], body)
    avatar_uuid = _check_avatar(st, obj["workspaceId"], body, obj["avatarUUID"])
    obj.update(objectTypeId=type_id, avatarUUID=avatar_uuid, hasAvatar=avatar_uuid is not None)
    if "attributes" in body:
        obj["attributes"] = body["attributes"]
    obj["updated"] = iso_now()
    return json_response(request, object_json(request, obj), 200, f"200 object {obj['id']}")


async def object_get(request: Request) -> Response:
    require_basic(request)
    return json_response(request, object_json(request, get_object(request)))


async def credentials(request: Request) -> Response:
    require_basic(request)
    st = state_of(request)
    ws, oid = request.path_params["ws"], request.path_params["oid"]
    obj = st.objects.get(oid)
    if ws not in st.workspaces or obj is None or obj["workspaceId"] != ws:
        raise ApiError(404, "TCS 404", body=TCS_404)
    client_id = st.workspaces[ws].setdefault("clientId", str(uuid.uuid4()))
    now = int(time.time())
    claims = {
        "iss": client_id,
        "iat": now,
        "nbf": now,
        "exp": now + int(st.config.jwt_ttl_seconds),
        # The access claim names the object the token may attach to.
        "access": {"urn:filestore:upload": ["create"], f"urn:assets:object:{ws}/{oid}": ["attach"]},
    }
    token = auth.mint_jwt(st.jwt_secret, claims)
    body = {
        "clientId": client_id,
        "mediaBaseUrl": f"{base_url(request)}/media",
        "mediaJwtToken": token,
    }
    return json_response(request, body, 200, f"200 credentials for object {oid}")


def _check_attachment(st: State, ws: str, oid: str, item: Any, index: int) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ApiError(400, f"attachments[{index}] must be an object")
    for key, kind in (("contentType", str), ("filename", str), ("mediaId", str), ("size", int)):
        if not isinstance(item.get(key), kind) or isinstance(item.get(key), bool):
            raise ApiError(400, f"attachments[{index}].{key} is required", key)
    media = st.media_files.get(item["mediaId"])
    if media is None or media["objectKey"] != f"{ws}/{oid}":
        raise ApiError(
            400,
            f"Media {item['mediaId']} was not uploaded with credentials for object {oid}",
            "mediaId",
        )
    if media["size"] != item["size"] and st.config.link_checks_size:
        raise ApiError(400, f"size {item['size']} does not match media size {media['size']}", "size")
    return media


# The only documented attachment record (Data Center), for config attachment_media_id = false.
DC_ATTACHMENT_FIELDS = ("id", "author", "mimeType", "filename", "filesize", "created", "comment",
                        "commentOutput")


def _attachment_json(request: Request, att: dict[str, Any]) -> dict[str, Any]:
    shown = att if state_of(request).config.attachment_media_id else {k: att[k] for k in DC_ATTACHMENT_FIELDS}
    return {k: v for k, v in shown.items() if k != "sha256"} | {
        "url": f"{base_url(request)}/_sandbox/files/{att['sha256']}"
    }


async def attachments_link(request: Request) -> Response:
    user = require_basic(request)
    obj = get_object(request)
    st = state_of(request)
    body = await read_json(request)
    items = body.get("attachments") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise ApiError(400, "attachments must be a non-empty list", "attachments")
    medias = [_check_attachment(st, obj["workspaceId"], obj["id"], it, i) for i, it in enumerate(items)]
    created = []
    for item, media in zip(items, medias, strict=True):
        # No server-side dedup, like the real service [LZ README]: linking twice makes two.
        att_id = str(next(st.attachment_ids))
        comment = str(item.get("comment") or "")
        st.attachments[att_id] = {
            "id": att_id,
            "objectId": obj["id"],
            "workspaceId": obj["workspaceId"],
            "author": user,
            "mimeType": item["contentType"],
            "filename": item["filename"],
            # What the media service stored: the same as the link's size unless link_checks_size
            # is off, when a short file shows its own size here.
            "filesize": human_size(media["size"]),
            "size": media["size"],
            "created": iso_now(),
            "comment": comment,
            "commentOutput": comment,
            "mediaId": item["mediaId"],
            "sha256": media["sha256"],
        }
        created.append(_attachment_json(request, st.attachments[att_id]))
    verdict = f"201 linked {len(created)} attachment(s)"
    if not st.config.link_answer_body:
        return empty(request, 201, verdict + ", empty answer")
    return json_response(request, created, 201, verdict)


async def attachments_list(request: Request) -> Response:
    """INFERRED route (mirrors DC `GET /rest/assets/1.0/attachments/object/{id}`)."""
    require_basic(request)
    obj = get_object(request)
    atts = [a for a in state_of(request).attachments.values() if a["objectId"] == obj["id"]]
    body = [_attachment_json(request, a) for a in atts if a["workspaceId"] == obj["workspaceId"]]
    return json_response(request, body, 200, "ok (inferred route)")


async def attachment_delete(request: Request) -> Response:
    """INFERRED route (mirrors DC `DELETE /rest/assets/1.0/attachments/{id}`)."""
    require_basic(request)
    ws = workspace(request)
    st = state_of(request)
    att = st.attachments.get(request.path_params["att_id"])
    if att is None or att["workspaceId"] != ws:
        raise ApiError(404, f"Attachment {request.path_params['att_id']} not found")
    del st.attachments[att["id"]]
    return empty(request, 204, "204 deleted (inferred route)")


routes = [
    Route("/rest/servicedeskapi/assets/workspace", workspaces, methods=["GET"]),
    Route(f"{PREFIX}/avatar/upload", avatar_upload, methods=["POST"]),
    Route(f"{PREFIX}/avatar/{{uuid}}/preview_{{size:int}}.png", avatar_preview, methods=["GET"]),
    Route(f"{PREFIX}/objecttype/{{type_id}}/icon.png", type_icon, methods=["GET"]),
    Route(f"{PREFIX}/object/create", object_create, methods=["POST"]),
    Route(f"{PREFIX}/object/{{oid}}", object_get, methods=["GET"]),
    Route(f"{PREFIX}/object/{{oid}}", object_update, methods=["PUT"]),
    Route(f"{PREFIX}/attachments/object/{{oid}}/credentials", credentials, methods=["GET"]),
    Route(f"{PREFIX}/attachments/object/{{oid}}", attachments_link, methods=["POST"]),
    Route(f"{PREFIX}/attachments/object/{{oid}}", attachments_list, methods=["GET"]),
    Route(f"{PREFIX}/attachments/{{att_id}}", attachment_delete, methods=["DELETE"]),
]
