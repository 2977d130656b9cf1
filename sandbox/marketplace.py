"""Atlassian Marketplace REST v2 assets [MP2].

Asset names contain a slash that clients must send URL-encoded (`images%2F<uuid>.png`), as the
real links do. uvicorn decodes %2F in `path`, so GET/DELETE route on `scope["raw_path"]` and
refuse an unencoded slash (a client whose HTTP stack decodes it would break on the real host).
UNCONFIRMED: error body shape, image types (configurable; default the v2 keys of Atlassian's
Java client), delete-in-use status (we use 409), Content-Type for image upload (we accept image/*,
application/octet-stream or application/binary, never multipart: 415). Artifacts take one form,
config `artifact_form`: "multipart" (part `file`, the v2 docs' newer page) or "raw" (the bytes as
`application/binary` with `?file=`, Atlassian's Java client); the other form answers 415, having
created nothing.
"""

from __future__ import annotations

import ipaddress
import os
import uuid
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sandbox.blobs import BlobWriter, drain, is_multipart
from sandbox.common import base_url, credential, read_form, read_raw, require_basic, state_of
from sandbox.errors import ApiError, empty, json_response
from sandbox.images import sniff_file
from sandbox.state import Blob

ASSETS = "/rest/2/assets"
ARTIFACT_EXTS = (".jar", ".obr")
IMAGE_EXTS = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/bmp": "bmp"}
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
FETCH_TIMEOUT = 60.0
RAW_TYPES = ("application/binary", "application/octet-stream")


def link(href: str, kind: str = "application/json", title: str | None = None) -> dict[str, Any]:
    return {"href": href, "type": kind, **({"title": title} if title else {})}


async def asset_links(request: Request) -> Response:
    base = f"{base_url(request)}{ASSETS}"
    body = {
        "_links": {
            "self": link(base, title="Assets"),
            "artifact": link(f"{base}/artifact", title="Upload an app artifact"),
            "fetchArtifact": link(f"{base}/artifact/fetch{{?uri}}", title="Fetch an artifact"),
            "imageByType": {
                "template": f"{base}/image/{{imageType}}{{?file}}",
                "type": "application/json",
                "name": "Upload an image",
            },
        }
    }
    return json_response(request, body)


def asset_url(request: Request, name: str) -> str:
    return f"{base_url(request)}{ASSETS}/{quote(name, safe='')}"


def asset_json(request: Request, asset: dict[str, Any]) -> dict[str, Any]:
    self_href = asset_url(request, asset["name"])
    binary = f"{base_url(request)}/_sandbox/files/{asset['sha256']}"
    file_info = {"logicalFileName": asset["logicalFileName"], "size": asset["size"]}
    if asset["kind"] == "artifact":
        links = {"self": link(self_href), "binary": link(binary, "application/java-archive")}
        if asset.get("remote"):
            links["remote"] = link(asset["remote"], "application/java-archive")
        return {"_links": links, "fileInfo": file_info}
    image = link(binary, asset["mime"])
    names = ("image", "unscaled", "highRes", "smallImage", "smallHighResImage")
    return {"_links": {"self": link(self_href), **{n: image for n in names}}, "fileInfo": file_info}


def check_artifact(blob: Blob, filename: str) -> str:
    """The extension if the file is an acceptable .jar/.obr, else 400."""
    ext = os.path.splitext(filename.lower())[1]
    if ext not in ARTIFACT_EXTS:
        raise ApiError(400, f"Artifact '{filename}' must be a .jar or .obr file")
    with open(blob.path, "rb") as fh:
        head = fh.read(64)
    is_zip = head.startswith(ZIP_MAGIC)
    # An OBR is either a zip (plugin SDK bundle: the jar plus obr.xml) or an XML repository
    # descriptor; accept both since either may reach Marketplace, refuse anything else.
    is_xml = head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")
    if not (is_zip or (ext == ".obr" and is_xml)):
        raise ApiError(400, f"Artifact '{filename}' is not a valid {ext[1:]} archive")
    return ext


def store(request: Request, user: str, blob: Blob, kind: str, ext: str, **extra: Any) -> Response:
    st = state_of(request)
    folder = "artifacts" if kind == "artifact" else "images"
    name = f"{folder}/{uuid.uuid4()}{ext}"
    st.mp_assets[name] = {
        "name": name,
        "kind": kind,
        "uploader": user,
        "used": False,
        "sha256": blob.sha256,
        "size": blob.size,
        "logicalFileName": blob.filename,
        **extra,
    }
    st.record_upload(blob, "marketplace", kind, credential(request))
    return json_response(request, asset_json(request, st.mp_assets[name]), 200, f"200 {name}")


async def upload_artifact(request: Request) -> Response:
    user = require_basic(request)
    if state_of(request).config.artifact_form == "raw":
        blob = await raw_body(request, RAW_TYPES, "the artifact's raw bytes as application/binary")
    else:
        form = await read_form(request)
        found = form.files.get("file")
        if found is None:
            got = ", ".join(form.part_names) or "nothing"
            raise ApiError(400, f"No artifact in multipart field 'file' (got: {got})")
        blob = found
    ext = check_artifact(blob, blob.filename or "")
    return store(request, user, blob, "artifact", ext)


async def raw_body(request: Request, types: tuple[str, ...], wanted: str) -> Blob:
    """A raw upload named by ``?file=``: 415 (nothing stored) for another Content-Type."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if is_multipart(ctype) or not ctype.startswith(types):
        await drain(request.stream())
        raise ApiError(415, f"Unsupported Media Type {ctype!r}: send {wanted} with ?file=<name>")
    filename = request.query_params.get("file")
    if not filename:
        raise ApiError(400, "Query parameter 'file' is required", "file")
    blob = await read_raw(request)
    blob.filename = filename
    return blob


def check_loopback(uri: str) -> str:
    parts = urlsplit(uri)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise ApiError(400, f"Invalid uri '{uri}'")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        # The sandbox must never reach the outside world.
        raise ApiError(400, f"The sandbox only fetches from loopback hosts, not '{host}'")
    return unquote(parts.path.rsplit("/", 1)[-1])


async def download(uri: str, blob_dir: Any) -> Blob:
    """Stream a URL to disk (no redirects: they could leave loopback)."""
    writer = BlobWriter(blob_dir)
    try:
        client = httpx.AsyncClient(timeout=FETCH_TIMEOUT, follow_redirects=False)
        async with client, client.stream("GET", uri) as response:
            if response.status_code != 200:
                raise ApiError(400, f"Could not fetch '{uri}': HTTP {response.status_code}")
            async for chunk in response.aiter_bytes():
                writer.write(chunk)
    except httpx.HTTPError as exc:
        writer.abort()
        raise ApiError(400, f"Could not fetch '{uri}': {exc}") from exc
    except BaseException:
        writer.abort()
        raise
    return writer.finish()


async def fetch_artifact(request: Request) -> Response:
    user = require_basic(request)
    uri = request.query_params.get("uri")
    if not uri:
        raise ApiError(400, "Query parameter 'uri' is required", "uri")
    filename = check_loopback(uri)
    if os.path.splitext(filename.lower())[1] not in ARTIFACT_EXTS:
        raise ApiError(400, f"Artifact '{filename}' must be a .jar or .obr file")
    blob = await download(uri, state_of(request).data_dir / "blobs")
    blob.filename = filename
    ext = check_artifact(blob, filename)
    return store(request, user, blob, "artifact", ext, remote=uri)


async def upload_image(request: Request) -> Response:
    user = require_basic(request)
    image_type = request.path_params["image_type"]
    if image_type not in state_of(request).config.marketplace_image_types:
        raise ApiError(400, f"Unknown image type '{image_type}'")
    blob = await raw_body(request, ("image/", *RAW_TYPES), "the raw image bytes (image/*, application/binary)")
    mime = sniff_file(blob.path)
    if mime not in IMAGE_EXTS:
        raise ApiError(400, "The body is not a .jpg, .png, .gif or .bmp image")
    blob.content_type = mime
    return store(request, user, blob, "image", "." + IMAGE_EXTS[mime], mime=mime, imageType=image_type)


def asset_name(request: Request) -> str:
    """The decoded asset name, read from the raw path so `%2F` survives."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    segment = raw.split(b"?", 1)[0][len(ASSETS) + 1 :].decode("latin-1")
    if "/" in segment:
        raise ApiError(404, "Asset not found (the '/' in asset names must be sent as %2F)")
    return unquote(segment)


def find_asset(request: Request) -> dict[str, Any]:
    asset = state_of(request).mp_assets.get(asset_name(request))
    if asset is None:
        raise ApiError(404, f"Asset '{asset_name(request)}' not found")
    return asset


async def get_asset(request: Request) -> Response:
    return json_response(request, asset_json(request, find_asset(request)))


async def delete_asset(request: Request) -> Response:
    user = require_basic(request)
    asset = find_asset(request)
    if asset["uploader"] != user:
        raise ApiError(403, "Only the user who uploaded this asset can delete it")
    if asset["used"]:
        raise ApiError(409, "The asset is in use by another resource")
    del state_of(request).mp_assets[asset["name"]]
    return empty(request, 204, f"204 deleted {asset['name']}")


routes = [
    Route(ASSETS, asset_links, methods=["GET"]),
    Route(f"{ASSETS}/artifact", upload_artifact, methods=["POST"]),
    Route(f"{ASSETS}/artifact/fetch", fetch_artifact, methods=["POST"]),
    Route(f"{ASSETS}/image/{{image_type}}", upload_image, methods=["POST"]),
    Route(f"{ASSETS}/{{rest:path}}", get_asset, methods=["GET"]),
    Route(f"{ASSETS}/{{rest:path}}", delete_asset, methods=["DELETE"]),
]
