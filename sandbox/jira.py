"""Jira Cloud platform REST v3 avatars (project, issue type, priority) [JIRA-SPEC, JIRAJS].

Load is a raw image body (not multipart) with `Content-Type: image/png|jpeg|gif` that must match
the bytes, `X-Atlassian-Token: no-check`, and a required `size` (`size=0` = the documented
default square, side = min(width, height) from x/y, because jira.js sends 0). The crop square
must lie inside the image. Renditions are real PNG/JPEG/GIF bytes made with Pillow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.common import base_url, credential, read_json, read_raw, require_basic, require_xsrf
from sandbox.common import state_of as st_of
from sandbox.errors import ApiError, empty, json_response, set_verdict
from sandbox.images import dimensions, rendition, sniff_file, solid_png, svg_wrapping
from sandbox.state import State

LOAD_TYPES = ("project", "issuetype", "priority")
SYSTEM_TYPES = ("project", "issuetype", "priority", "user")
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif")
# Named sizes. Jira documents 16/24/32/48 renditions; xlarge = 64 px is our choice (the pixel
# size of `xlarge` is not documented).
SIZES = {"xsmall": 16, "small": 24, "medium": 32, "large": 48, "xlarge": 64}
DEFAULT_SIZE = "large"  # the `48x48` URL Jira hands out carries no size parameter
URL_KEYS = (("16x16", "xsmall"), ("24x24", "small"), ("32x32", "medium"), ("48x48", None))
ISSUETYPE_FIELDS = {"name", "description", "avatarId"}
# Update priority with avatarId is UNCONFIRMED (older APIs took iconUrl); we accept both.
PRIORITY_FIELDS = {"name", "description", "statusColor", "iconUrl", "avatarId"}


def entities(st: State, avatar_type: str) -> dict[str, dict[str, Any]]:
    return {"project": st.projects, "issuetype": st.issuetypes, "priority": st.priorities}[avatar_type]


def find_entity(st: State, avatar_type: str, entity_id: str, *, keys: bool = True) -> dict[str, Any]:
    """The owning entity (projects by id, or by key when ``keys``), else 404 like Jira."""
    if avatar_type not in LOAD_TYPES:
        raise ApiError(404, f"Invalid avatar type: {avatar_type}")
    table = entities(st, avatar_type)
    entity = table.get(entity_id)
    if entity is None and avatar_type == "project" and keys:
        entity = next((p for p in table.values() if p["key"] == entity_id), None)
    if entity is None:
        raise ApiError(404, f"No {avatar_type} with id or key '{entity_id}' was found.")
    return entity


def universal_owner(request: Request, avatar_type: str) -> dict[str, Any]:
    """The owner named in a `universal_avatar/.../owner/{entityId}` path. The docs say entityId
    is an ID; with config project_owner_keys = false a project key is refused like an unknown
    id (open-readings §4), while the /project/{projectIdOrKey} routes keep taking keys."""
    st = st_of(request)
    return find_entity(st, avatar_type, request.path_params["entity"], keys=st.config.project_owner_keys)


def avatar_urls(request: Request, avatar: dict[str, Any]) -> dict[str, str]:
    root = f"{base_url(request)}/secure/viewavatar?"
    out = {}
    for key, size in URL_KEYS:
        size_part = f"size={size}&" if size else ""
        out[key] = f"{root}{size_part}avatarId={avatar['id']}&avatarType={avatar['type']}"
    return out


def avatar_json(request: Request, avatar: dict[str, Any], selected: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": avatar["id"],
        "isSystemAvatar": avatar["system"],
        "isSelected": avatar["id"] == selected,
        "isDeletable": not avatar["system"],
        "urls": avatar_urls(request, avatar),
    }
    if avatar["system"]:
        body["fileName"] = avatar["fileName"]
    else:
        body["owner"] = avatar["owner"]
    return body


def _split(st: State, avatar_type: str, owner: str | None) -> tuple[list[Any], list[Any]]:
    system = [a for a in st.jira_avatars.values() if a["type"] == avatar_type and a["system"]]
    custom = [
        a for a in st.jira_avatars.values() if a["type"] == avatar_type and not a["system"] and a["owner"] == owner
    ]
    return system, custom


def optional_auth(request: Request) -> None:
    """Anonymous access is allowed on reads, but a wrong credential is still a 401."""
    if request.headers.get("authorization"):
        require_basic(request)


async def system_avatars(request: Request) -> Response:
    optional_auth(request)
    avatar_type = request.path_params["type"]
    if avatar_type not in SYSTEM_TYPES:
        raise ApiError(404, f"Invalid avatar type: {avatar_type}")
    system, _ = _split(st_of(request), avatar_type, None)
    return json_response(request, {"system": [avatar_json(request, a, None) for a in system]})


async def owner_avatars(request: Request) -> Response:
    optional_auth(request)
    avatar_type = request.path_params["type"]
    return avatars_of(request, avatar_type, universal_owner(request, avatar_type))


def avatars_of(request: Request, avatar_type: str, entity: dict[str, Any]) -> Response:
    st = st_of(request)
    system, custom = _split(st, avatar_type, entity["id"])
    selected = entity["avatarId"]
    body = {
        "system": [avatar_json(request, a, selected) for a in system],
        "custom": [avatar_json(request, a, selected) for a in custom],
    }
    return json_response(request, body)


async def project_avatars(request: Request) -> Response:
    optional_auth(request)
    return avatars_of(request, "project", find_entity(st_of(request), "project", request.path_params["entity"]))


async def get_project(request: Request) -> Response:
    """`GET /rest/api/3/project/{projectIdOrKey}`: how a client turns a key into the id."""
    require_basic(request)
    st = st_of(request)
    project = find_entity(st, "project", request.path_params["entity"])
    body = {
        "self": f"{base_url(request)}/rest/api/3/project/{project['id']}",
        "id": project["id"],
        "key": project["key"],
        "name": project["name"],
        "avatarUrls": avatar_urls(request, st.jira_avatars[project["avatarId"]]),
    }
    return json_response(request, body)


def _crop_params(request: Request) -> tuple[int, int, int]:
    raw_size = request.query_params.get("size")
    if raw_size is None:
        # Required in the current spec [JIRAJS]; refuse so clients always send it.
        raise ApiError(400, "The 'size' query parameter is required.", "size")
    try:
        x = int(request.query_params.get("x", "0"))
        y = int(request.query_params.get("y", "0"))
        size = int(raw_size)
    except ValueError as exc:
        raise ApiError(400, "x, y and size must be integers.") from exc
    return x, y, size


async def load_avatar(request: Request, avatar_type: str, entity_id: str, keys: bool = True) -> Response:
    require_basic(request)
    require_xsrf(request)
    st = st_of(request)
    entity = find_entity(st, avatar_type, entity_id, keys=keys)
    declared = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if declared not in IMAGE_TYPES:
        raise ApiError(
            400,
            f"The image type '{declared or 'none'}' is not supported. "
            "Valid image types are image/png, image/jpeg and image/gif.",
        )
    x, y, size = _crop_params(request)
    blob = await read_raw(request)
    if blob.size == 0:
        raise ApiError(400, "An image must be included in the request.")
    actual = sniff_file(blob.path)
    dims = dimensions(blob.path)
    if actual != declared or dims is None:
        raise ApiError(
            400,
            f"Content-Type {declared} does not match the image data ({actual or 'not an image'}).",
        )
    width, height = dims
    side = size if size > 0 else min(width - x, height - y)
    if x < 0 or y < 0 or side <= 0 or x + side > width or y + side > height:
        raise ApiError(
            400,
            f"The crop parameters (x={x}, y={y}, size={side}) extend the crop "
            f"area beyond the edge of the image ({width}x{height}).",
        )
    avatar_id = str(next(st.jira_avatar_ids))
    st.jira_avatars[avatar_id] = {
        "id": avatar_id,
        "type": avatar_type,
        "owner": entity["id"],
        "system": False,
        "fileName": None,
        "blob": str(blob.path),
        "mime": actual,
        "crop": (x, y, x + side, y + side),
        "color": 0,
    }
    blob.content_type = declared
    st.record_upload(blob, "jira", f"universal_avatar/{avatar_type}", credential(request))
    body = avatar_json(request, st.jira_avatars[avatar_id], entity["avatarId"])
    return json_response(request, body, 201, f"201 avatar {avatar_id}")


async def universal_load(request: Request) -> Response:
    keys = st_of(request).config.project_owner_keys
    return await load_avatar(request, request.path_params["type"], request.path_params["entity"], keys)


async def project_load(request: Request) -> Response:
    return await load_avatar(request, "project", request.path_params["entity"])


async def issuetype_load(request: Request) -> Response:
    return await load_avatar(request, "issuetype", request.path_params["entity"])


async def temporary_avatar(request: Request) -> Response:
    # Jira Cloud has no temporary+confirm avatar flow: 405 [PCJ #1935].
    raise ApiError(405, "Method Not Allowed")


def _delete(st: State, avatar_type: str, owner_id: str, avatar_id: str, keys: bool = True) -> None:
    entity = find_entity(st, avatar_type, owner_id, keys=keys)
    avatar = st.jira_avatars.get(avatar_id)
    if avatar is None or avatar["type"] != avatar_type:
        raise ApiError(404, f"Avatar {avatar_id} not found.")
    if avatar["system"]:
        raise ApiError(403, "System avatars cannot be deleted.")
    if avatar["owner"] != entity["id"]:
        raise ApiError(404, f"Avatar {avatar_id} not found for {avatar_type} {owner_id}.")
    del st.jira_avatars[avatar_id]
    if entity["avatarId"] == avatar_id:
        entity["avatarId"] = st.default_avatar_id(avatar_type)


async def delete_avatar(request: Request) -> Response:
    require_basic(request)
    p = request.path_params
    st = st_of(request)
    _delete(st, p["type"], p["entity"], p["avatar_id"], st.config.project_owner_keys)
    return empty(request, 204, f"204 avatar {p['avatar_id']} deleted")


async def delete_project_avatar(request: Request) -> Response:
    require_basic(request)
    p = request.path_params
    _delete(st_of(request), "project", p["entity"], p["avatar_id"])
    return empty(request, 204, f"204 avatar {p['avatar_id']} deleted")


def usable_avatar(st: State, avatar_type: str, entity: dict[str, Any], avatar_id: str) -> bool:
    avatar = st.jira_avatars.get(avatar_id)
    if avatar is None or avatar["type"] != avatar_type:
        return False
    return bool(avatar["system"] or avatar["owner"] == entity["id"])


async def set_project_avatar(request: Request) -> Response:
    require_basic(request)
    st = st_of(request)
    project = find_entity(st, "project", request.path_params["entity"])
    body = await read_json(request)
    avatar_id = str(body.get("id", "")) if isinstance(body, dict) else ""
    if not usable_avatar(st, "project", project, avatar_id):
        raise ApiError(404, f"Avatar '{avatar_id}' not found for project {project['key']}.")
    project["avatarId"] = avatar_id
    return empty(request, 204, f"204 project avatar = {avatar_id}")


def issuetype_json(request: Request, it: dict[str, Any]) -> dict[str, Any]:
    base = base_url(request)
    return {
        "self": f"{base}/rest/api/3/issuetype/{it['id']}",
        "id": it["id"],
        "description": it["description"],
        "iconUrl": f"{base}/rest/api/2/universal_avatar/view/type/issuetype/avatar/{it['avatarId']}?size=medium",
        "name": it["name"],
        "subtask": False,
        "avatarId": int(it["avatarId"]),
        "hierarchyLevel": 0,
    }


async def get_issuetype(request: Request) -> Response:
    require_basic(request)
    it = find_entity(st_of(request), "issuetype", request.path_params["entity"])
    return json_response(request, issuetype_json(request, it))


def _check_update(body: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict) or not body:
        raise ApiError(400, "No content was sent.")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(400, f"Unrecognized field(s): {', '.join(unknown)}")
    if "name" in body and (not isinstance(body["name"], str) or len(body["name"]) > 60):
        raise ApiError(400, "The name must be at most 60 characters.", "name")
    if "avatarId" in body and (not isinstance(body["avatarId"], int) or isinstance(body["avatarId"], bool)):
        raise ApiError(400, "avatarId must be an integer.", "avatarId")
    return body


async def _update_entity(request: Request, kind: str, fields: Any, noun: str) -> dict[str, Any]:
    """PUT an issue type or priority: validated fields, and an avatarId only if that avatar
    belongs to the entity (a system avatar of its type, or one of its own custom avatars)."""
    require_basic(request)
    st = st_of(request)
    entity = find_entity(st, kind, request.path_params["entity"])
    body = _check_update(await read_json(request), fields)
    if "avatarId" in body and not usable_avatar(st, kind, entity, str(body["avatarId"])):
        raise ApiError(400, f"The avatar is not associated with this {noun}.", "avatarId")
    if "avatarId" in body:
        entity["avatarId"] = str(body["avatarId"])
    entity.update({k: body[k] for k in ("name", "description") if k in body})
    return entity


async def update_issuetype(request: Request) -> Response:
    it = await _update_entity(request, "issuetype", ISSUETYPE_FIELDS, "issue type")
    return json_response(request, issuetype_json(request, it), 200, "200 issue type updated")


async def update_priority(request: Request) -> Response:
    await _update_entity(request, "priority", PRIORITY_FIELDS, "priority")
    return empty(request, 204, "204 priority updated (UNCONFIRMED shape)")


async def get_priority(request: Request) -> Response:
    require_basic(request)
    pr = find_entity(st_of(request), "priority", request.path_params["entity"])
    base = base_url(request)
    body = {
        "self": f"{base}/rest/api/3/priority/{pr['id']}",
        "id": pr["id"],
        "name": pr["name"],
        "avatarId": int(pr["avatarId"]),
        "iconUrl": f"{base}/rest/api/3/universal_avatar/view/type/priority/avatar/{pr['avatarId']}",
    }
    return json_response(request, body)


def render(request: Request, avatar: dict[str, Any]) -> Response:
    """Image bytes for an avatar honouring `size` and `format`."""
    size_name = request.query_params.get("size") or DEFAULT_SIZE
    fmt = request.query_params.get("format")
    if size_name not in SIZES:
        raise ApiError(400, f"Invalid size '{size_name}'. Valid sizes: {', '.join(SIZES)}.")
    if fmt not in (None, "png", "svg"):
        raise ApiError(400, f"Invalid format '{fmt}'. Valid formats: png, svg.")
    pixels = SIZES[size_name]
    if avatar["system"]:
        data, mime = solid_png(pixels, avatar["color"]), "image/png"
    else:
        # No format -> "the original content format" [JIRA-SPEC]; png/svg on request.
        mime = "image/png" if fmt else avatar["mime"]
        data = rendition(Path(avatar["blob"]), avatar["crop"], pixels, mime)
    if fmt == "svg":
        data, mime = svg_wrapping(data, pixels), "image/svg+xml"
    set_verdict(request, f"200 {mime} {pixels}px")
    return Response(data, media_type=mime)


def _avatar_of_type(st: State, avatar_type: str, avatar_id: str) -> dict[str, Any]:
    if avatar_type not in SYSTEM_TYPES:
        raise ApiError(404, f"Invalid avatar type: {avatar_type}")
    avatar = st.jira_avatars.get(avatar_id)
    if avatar is None or avatar["type"] != avatar_type:
        raise ApiError(404, f"Avatar {avatar_id} not found.")
    return avatar


async def view_by_type(request: Request) -> Response:
    optional_auth(request)
    avatar_type = request.path_params["type"]
    if avatar_type not in LOAD_TYPES:
        raise ApiError(404, f"Invalid avatar type: {avatar_type}")
    st = st_of(request)
    return render(request, st.jira_avatars[st.default_avatar_id(avatar_type)])


async def view_by_id(request: Request) -> Response:
    optional_auth(request)
    p = request.path_params
    return render(request, _avatar_of_type(st_of(request), p["type"], p["avatar_id"]))


async def view_by_owner(request: Request) -> Response:
    optional_auth(request)
    entity = universal_owner(request, request.path_params["type"])
    return render(request, st_of(request).jira_avatars[entity["avatarId"]])


async def secure_viewavatar(request: Request) -> Response:
    """The `/secure/viewavatar?avatarId=&avatarType=` URLs that Avatar.urls point at."""
    optional_auth(request)
    q = request.query_params
    return render(request, _avatar_of_type(st_of(request), q.get("avatarType", ""), q.get("avatarId", "")))


API = "/rest/api/3"
UA = f"{API}/universal_avatar"
routes = [
    Route(f"{API}/avatar/{{type}}/system", system_avatars, methods=["GET"]),
    Route(f"{UA}/type/{{type}}/owner/{{entity}}", owner_avatars, methods=["GET"]),
    Route(f"{UA}/type/{{type}}/owner/{{entity}}", universal_load, methods=["POST"]),
    Route(
        f"{UA}/type/{{type}}/owner/{{entity}}/avatar/{{avatar_id}}",
        delete_avatar,
        methods=["DELETE"],
    ),
    Route(f"{UA}/view/type/{{type}}", view_by_type, methods=["GET"]),
    Route(f"{UA}/view/type/{{type}}/avatar/{{avatar_id}}", view_by_id, methods=["GET"]),
    Route(f"{UA}/view/type/{{type}}/owner/{{entity}}", view_by_owner, methods=["GET"]),
    Route(f"{API}/project/{{entity}}", get_project, methods=["GET"]),
    Route(f"{API}/project/{{entity}}/avatar", set_project_avatar, methods=["PUT"]),
    Route(f"{API}/project/{{entity}}/avatar2", project_load, methods=["POST"]),
    Route(f"{API}/project/{{entity}}/avatar/temporary", temporary_avatar, methods=["POST"]),
    Route(f"{API}/project/{{entity}}/avatar/{{avatar_id}}", delete_project_avatar, methods=["DELETE"]),
    Route(f"{API}/project/{{entity}}/avatars", project_avatars, methods=["GET"]),
    Route(f"{API}/issuetype/{{entity}}", get_issuetype, methods=["GET"]),
    Route(f"{API}/issuetype/{{entity}}", update_issuetype, methods=["PUT"]),
    Route(f"{API}/issuetype/{{entity}}/avatar2", issuetype_load, methods=["POST"]),
    Route(f"{API}/priority/{{entity}}", get_priority, methods=["GET"]),
    Route(f"{API}/priority/{{entity}}", update_priority, methods=["PUT"]),
    Route("/secure/viewavatar", secure_viewavatar, methods=["GET"]),
]
