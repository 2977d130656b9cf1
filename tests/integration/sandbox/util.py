"""Helpers for the sandbox tests: sample files, streamed multipart bodies, typical calls."""

from __future__ import annotations

import hashlib
import io
import uuid
import zipfile
from collections.abc import Iterator
from typing import Any

import requests
from PIL import Image

from sandbox.testing import SandboxControl

XSRF = {"X-Atlassian-Token": "no-check"}


def image_bytes(size: tuple[int, int] = (64, 48), fmt: str = "PNG", colour: str = "teal") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, fmt)
    return buf.getvalue()


def jar_bytes() -> bytes:
    buf = io.BytesIO()
    # Fixed entry times: writestr(name) stamps the current time, so two calls a second apart
    # made different bytes (and a test comparing a served jar with a fresh one flaked).
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo("META-INF/MANIFEST.MF", (2024, 1, 1, 0, 0, 0)), "Manifest-Version: 1.0\n")
        zf.writestr(zipfile.ZipInfo("atlassian-plugin.xml", (2024, 1, 1, 0, 0, 0)), "<atlassian-plugin key='x'/>")
    return buf.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class StreamedMultipart:
    """A multipart body of `size` zero bytes generated on the fly (never held in memory).

    Also hashes what it yields, so a test can compare with what the sandbox stored.
    """

    def __init__(self, field: str, filename: str, size: int, chunk: int = 1024 * 1024) -> None:
        self.boundary = uuid.uuid4().hex
        self.field, self.filename, self.size, self.chunk = field, filename, size, chunk
        self.file_hash = hashlib.sha256()

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __iter__(self) -> Iterator[bytes]:
        yield (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{self.field}"; '
            f'filename="{self.filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        zeros = bytes(self.chunk)
        left = self.size
        while left > 0:
            piece = zeros[: min(self.chunk, left)]
            self.file_hash.update(piece)
            left -= len(piece)
            yield piece
        yield f"\r\n--{self.boundary}--\r\n".encode()


def credentials(sb: SandboxControl, object_id: str | None = None) -> dict[str, Any]:
    seed = sb.seed()
    oid = object_id or seed["object_id"]
    ws = seed["workspace_id"]
    url = f"{sb.url}/jsm/assets/workspace/{ws}/v1/attachments/object/{oid}/credentials"
    response = requests.get(url, auth=sb.basic, timeout=10)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def media_upload(
    creds: dict[str, Any], data: bytes, name: str = "a.txt", field: str = "file", **kw: Any
) -> requests.Response:
    headers = {
        "Authorization": f"Bearer {creds['mediaJwtToken']}",
        "X-Client-Id": creds["clientId"],
    }
    headers.update(kw.pop("headers", {}))
    return requests.post(
        f"{creds['mediaBaseUrl']}/file",
        params={"name": name},
        files={field: (name, data, "text/plain")},
        headers=headers,
        timeout=30,
        **kw,
    )


def media_stream(creds: dict[str, Any], body: StreamedMultipart, timeout: float) -> requests.Response:
    """POST a generated multipart body to the media service, streamed (chunked), never in memory."""
    return requests.post(
        f"{creds['mediaBaseUrl']}/file",
        params={"name": body.filename},
        data=iter(body),
        headers={
            "Authorization": f"Bearer {creds['mediaJwtToken']}",
            "X-Client-Id": creds["clientId"],
            "Content-Type": body.content_type,
        },
        timeout=timeout,
    )


def assets_url(sb: SandboxControl, tail: str) -> str:
    return f"{sb.url}/jsm/assets/workspace/{sb.seed()['workspace_id']}/v1/{tail}"


def upload_assets_avatar(sb: SandboxControl, client_uuid: str | None = None) -> requests.Response:
    seed = sb.seed()
    return requests.post(
        assets_url(sb, "avatar/upload"),
        auth=sb.basic,
        headers={**XSRF, "Accept": "application/json"},
        files={
            "rlabs-insight-object-avatar": ("a.png", image_bytes(), "image/png"),
            "avatarUUID": (None, client_uuid or str(uuid.uuid4())),
            "objectTypeId": (None, seed["object_type_id"]),
        },
        timeout=10,
    )
