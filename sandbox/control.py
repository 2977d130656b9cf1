"""The unauthenticated inspection + control API under /_sandbox/ (for tests and operators)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from sandbox.common import state_of
from sandbox.errors import set_verdict
from sandbox.faults import TokenBuckets, new_rule

# Routes whose behaviour is not documented anywhere public; surfaced in GET /_sandbox/.
INFERRED = {
    "GET /jsm/assets/workspace/{ws}/v1/attachments/object/{id}": "inferred from Data Center",
    "DELETE /jsm/assets/workspace/{ws}/v1/attachments/{attachmentId}": "inferred from Data Center",
}
UNCONFIRMED = {
    "PUT /rest/api/3/priority/{id}": "avatarId body and 204 answer",
    "POST /media/file": "error statuses and bodies; missing X-Client-Id -> 401",
    "POST /rest/2/assets/image/{imageType}": "Content-Type (image/*, octet-stream or application/binary)",
    "DELETE /rest/2/assets/{assetName}": "409 when in use",
    "POST /api/v1/files/images/{kind}/{id}": "413 over 100 MB (10^6), image-only",
    "Marketplace errors": "body shape {'errors': [{'message'}]}",
    "Assets 429": "Retry-After only when assets_retry_after is configured",
}
# Where the evidence points two ways (shared/apis/open-readings.md), the sandbox plays either
# reading: POST /_sandbox/config {key: value} or the `ferry sandbox` option named here.
OPEN_READINGS = {
    "media_upload": "'multipart' (default; --media-upload): POST /media/file stores the multipart "
                    "part `file`, /media/file/binary answers 404. 'binary': POST /media/file creates "
                    "an EMPTY file and answers {id, createdAt} without size; bytes only raw via "
                    "POST /media/file/binary. 'multipart-sizeless': as 'multipart', answered "
                    "without a size. GET /media/file/{id} answers {data: {id, size, ...}} under each",
    "media_read_back": "true (default): GET /media/file/{id} answers the metadata; false "
                       "(--no-media-read-back): 403, an upload-only token",
    "link_checks_size": "true (default): the link refuses a size other than the media's (400); false "
                        "(--lenient-link-size): it accepts any, and the record shows the stored size",
    "attachment_media_id": "true (default): attachment records carry mediaId and size; false "
                           "(--no-attachment-media-id): the documented Data Center record only "
                           "(id, author, mimeType, filename, filesize '490 B', created, comment, url)",
    "link_answer_body": "true (default): the link answers 201 with the created records; false "
                        "(--empty-link-answer): 201 with an empty body",
    "project_owner_keys": "true (default): universal_avatar owners of type project may be keys; "
                          "false (--refuse-project-keys): ids only, as documented; a key is 404",
    "artifact_form": "'multipart' (default): POST /rest/2/assets/artifact takes part `file`; 'raw' "
                     "(--artifact-form raw): the bytes as application/binary with ?file=. The other "
                     "form answers 415 and stores nothing",
    "marketplace_image_types": "default: the v2 keys of Atlassian's Java client (logo, banner, "
                               "screenshot, screenshot-thumbnail, hero, title-logo); `icon` is v3 only. "
                               "Image uploads take a raw body; multipart answers 415",
    "awork_429": "'awork' (default): 429 with RateLimit-* headers and awork's {code, description}; "
                 "'kong' (--awork-429 kong): its Kong gateway's Retry-After and {\"message\": ...}",
    "fault lost_reply": "POST /_sandbox/faults {path, lost_reply: true, status: 502 | cut: true}: the "
                        "request is processed for real, then its reply is replaced by the status "
                        "or cut (a gateway losing the answer of a create that took effect)",
}


def ok(request: Request, body: Any, status: int = 200) -> JSONResponse:
    set_verdict(request, "ok")
    return JSONResponse(body, status_code=status)


def bad(request: Request, message: str, status: int = 400) -> JSONResponse:
    set_verdict(request, f"{status} {message}")
    return JSONResponse({"error": message}, status_code=status)


async def body_json(request: Request) -> Any:
    raw = await request.body()
    return await request.json() if raw else {}


async def index(request: Request) -> Response:
    st = state_of(request)
    return ok(
        request,
        {
            "seed": st.seed.to_json() if st.seed else None,
            "config": st.config.public(),
            "inferred_routes": INFERRED,
            "unconfirmed_behaviour": UNCONFIRMED,
            "open_readings": OPEN_READINGS,
        },
    )


def seed_json(request: Request) -> dict[str, Any]:
    seed = state_of(request).seed
    if seed is None:
        return {}
    return seed.to_json()


async def seed(request: Request) -> Response:
    return ok(request, seed_json(request))


async def requests_log(request: Request) -> Response:
    needle = request.query_params.get("path_contains")
    limit = int(request.query_params.get("limit", "1000"))
    records = [r.to_json() for r in state_of(request).requests if not needle or needle in r.path]
    return ok(request, records[-limit:] if limit > 0 else records)


async def uploads(request: Request) -> Response:
    return ok(request, list(state_of(request).uploads))


async def file_bytes(request: Request) -> Response:
    sha = request.path_params["sha"]
    path = state_of(request).data_dir / "blobs" / sha
    if len(sha) != 64 or not all(c in "0123456789abcdef" for c in sha) or not path.exists():
        return bad(request, "no such file", 404)
    set_verdict(request, "ok")
    return FileResponse(path, media_type="application/octet-stream")


async def objects(request: Request) -> Response:
    st = state_of(request)
    oid = request.path_params.get("oid")
    if oid is None:
        return ok(request, list(st.objects.values()))
    if oid not in st.objects:
        return bad(request, "no such object", 404)
    obj = st.objects[oid]
    atts = [a for a in st.attachments.values() if a["objectId"] == oid]
    return ok(request, {**obj, "attachments": atts})


async def attachments(request: Request) -> Response:
    st = state_of(request)
    return ok(
        request,
        {"attachments": list(st.attachments.values()), "media": list(st.media_files.values())},
    )


async def avatars(request: Request) -> Response:
    st = state_of(request)
    jira = [{k: v for k, v in a.items() if k != "crop"} for a in st.jira_avatars.values()]
    return ok(
        request,
        {
            "assets": list(st.assets_avatars.values()),
            "jira": jira,
            "projects": list(st.projects.values()),
            "issuetypes": list(st.issuetypes.values()),
            "priorities": list(st.priorities.values()),
        },
    )


async def mp_assets(request: Request) -> Response:
    return ok(request, list(state_of(request).mp_assets.values()))


async def mark_asset_used(request: Request) -> Response:
    """Marketplace deletes fail while an asset is in use; let tests mark one as used."""
    body = await body_json(request)
    asset = state_of(request).mp_assets.get(str(body.get("name")))
    if asset is None:
        return bad(request, "no such asset", 404)
    asset["used"] = bool(body.get("used", True))
    return ok(request, asset)


async def images(request: Request) -> Response:
    return ok(
        request,
        {k: {**v, "dims": list(v["dims"])} for k, v in state_of(request).awork_images.items()},
    )


async def faults(request: Request) -> Response:
    st = state_of(request)
    if request.method == "DELETE":
        st.faults.clear()
        return ok(request, {"cleared": True})
    if request.method == "GET":
        return ok(request, [r.to_json() for r in st.faults.values()])
    try:
        rule = new_rule(await body_json(request))
    except (ValueError, TypeError) as exc:
        return bad(request, str(exc))
    st.faults[rule.id] = rule
    return ok(request, {"id": rule.id}, 201)


async def fault_delete(request: Request) -> Response:
    removed = state_of(request).faults.pop(request.path_params["fault_id"], None)
    return ok(request, {"removed": removed is not None})


async def rate_limit(request: Request) -> Response:
    st = state_of(request)
    if request.method == "DELETE":
        st.rate_per_second, st.buckets = None, None
        return ok(request, {"per_second": None})
    if request.method == "GET":
        return ok(request, {"per_second": st.rate_per_second})
    per_second = (await body_json(request)).get("per_second")
    if not isinstance(per_second, int | float) or per_second <= 0:
        return bad(request, "per_second must be a positive number")
    st.rate_per_second, st.buckets = float(per_second), TokenBuckets(float(per_second))
    return ok(request, {"per_second": st.rate_per_second})


async def config(request: Request) -> Response:
    st = state_of(request)
    if request.method == "POST":
        body = await body_json(request)
        problems = [p for p in (st.config.check(k, v) for k, v in body.items()) if p]
        if problems:
            return bad(request, "; ".join(problems))
        for key, value in body.items():
            setattr(st.config, key, value)
    return ok(request, st.config.public())


async def reset(request: Request) -> Response:
    st = state_of(request)
    st.reset()
    return ok(request, {"reset": True, "seed": seed_json(request)})


P = "/_sandbox"
routes = [
    Route(P, index, methods=["GET"]),
    Route(f"{P}/", index, methods=["GET"]),
    Route(f"{P}/seed", seed, methods=["GET"]),
    Route(f"{P}/requests", requests_log, methods=["GET"]),
    Route(f"{P}/uploads", uploads, methods=["GET"]),
    Route(f"{P}/files/{{sha}}", file_bytes, methods=["GET"]),
    Route(f"{P}/objects", objects, methods=["GET"]),
    Route(f"{P}/objects/{{oid}}", objects, methods=["GET"]),
    Route(f"{P}/attachments", attachments, methods=["GET"]),
    Route(f"{P}/avatars", avatars, methods=["GET"]),
    Route(f"{P}/assets", mp_assets, methods=["GET"]),
    Route(f"{P}/assets/use", mark_asset_used, methods=["POST"]),
    Route(f"{P}/images", images, methods=["GET"]),
    Route(f"{P}/faults", faults, methods=["GET", "POST", "DELETE"]),
    Route(f"{P}/faults/{{fault_id}}", fault_delete, methods=["DELETE"]),
    Route(f"{P}/rate-limit", rate_limit, methods=["GET", "POST", "DELETE"]),
    Route(f"{P}/config", config, methods=["GET", "POST"]),
    Route(f"{P}/reset", reset, methods=["POST"]),
]
