"""Jira Service Management Assets (cloud): workspace discovery, object avatars, object attachments.

Paths and bodies follow shared/apis/README.md §1-2 (KB article for avatars; the reverse-engineered
three-step attachment flow). Assets lives on the API gateway, not on the site host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from worker.errors import PermanentError
from worker.http import Destination, Route
from worker.uploads import OpenFile, multipart

AVATAR_FIELD = "rlabs-insight-object-avatar"  # the KB's current name (older revisions said "file")
NO_CHECK = {"X-Atlassian-Token": "no-check"}
# How far the service's clock may lag ours when we ask "created since our first attempt".
CLOCK_SKEW_SECONDS = 60.0

# Every request this client can send (worker.http.Route): on the site, then on the API gateway.
WORKSPACES = Route("/rest/servicedeskapi/assets/workspace")
_WS = "/jsm/assets/workspace/{workspace}/v1"
AVATAR_UPLOAD = Route(f"{_WS}/avatar/upload")
OBJECT_CREATE = Route(f"{_WS}/object/create")
OBJECT = Route(f"{_WS}/object/{{object}}")
ATTACHMENT_CREDENTIALS = Route(f"{_WS}/attachments/object/{{object}}/credentials")
OBJECT_ATTACHMENTS = Route(f"{_WS}/attachments/object/{{object}}")
_HUMAN_SIZE = re.compile(r"^\s*(\d+(?:[.,]\d+)?)\s*([kmgt]?)i?b(?:ytes?)?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class AvatarUpload:
    avatar_uuid: str  # the SERVER's uuid: the one to set on the object, never the client's
    urls: dict[str, str]


@dataclass(frozen=True)
class MediaCredentials:
    client_id: str
    media_base_url: str
    jwt: str = field(repr=False)


class AssetsClient:
    def __init__(self, site: Destination, gateway: Destination) -> None:
        self.site = site.only(WORKSPACES)  # https://<site>.atlassian.net
        self.gateway = gateway.only(  # https://api.atlassian.com
            AVATAR_UPLOAD, OBJECT_CREATE, OBJECT, ATTACHMENT_CREDENTIALS, OBJECT_ATTACHMENTS)

    def discover_workspace(self) -> str:
        body = self.site.call("GET", WORKSPACES.path()).json()
        values = body.get("values") or []
        if not values or not values[0].get("workspaceId"):
            raise PermanentError("the site has no Assets workspace")
        return str(values[0]["workspaceId"])

    def upload_avatar(self, workspace: str, object_type_id: int, file: OpenFile,
                      client_uuid: str) -> AvatarUpload:
        body = multipart(AVATAR_FIELD, file, {"avatarUUID": client_uuid, "objectTypeId": str(object_type_id)})
        data = self.gateway.call(
            "POST", AVATAR_UPLOAD.path(workspace=workspace), upload=True, data=body,
            headers={**NO_CHECK, "Content-Type": body.content_type}).json()
        server_uuid = data.get("avatarUUID")
        if not server_uuid:
            raise PermanentError("avatar upload answered without an avatarUUID")
        return AvatarUpload(str(server_uuid), {k: v for k, v in data.items() if k.startswith("url")})

    def create_object(self, workspace: str, object_type_id: int,
                      attributes: list[dict[str, Any]], avatar_uuid: str) -> dict[str, Any]:
        body = {"objectTypeId": str(object_type_id), "attributes": attributes,
                "avatarUUID": avatar_uuid, "hasAvatar": True}
        # Creating is not repeatable: a reply lost after sending must not become a second object.
        check = f"workspace {workspace} for a new object of type {object_type_id}"
        return dict(self.gateway.call("POST", OBJECT_CREATE.path(workspace=workspace),
                                      json=body, repeatable=False, check=check).json())

    def update_object(self, workspace: str, object_id: str, object_type_id: int,
                      avatar_uuid: str) -> dict[str, Any]:
        body = {"objectTypeId": str(object_type_id), "attributes": [],
                "avatarUUID": avatar_uuid, "hasAvatar": True}
        return dict(self.gateway.call("PUT", OBJECT.path(workspace=workspace, object=object_id),
                                      json=body).json())

    def get_object(self, workspace: str, object_id: str) -> dict[str, Any]:
        return dict(self.gateway.call("GET", OBJECT.path(workspace=workspace, object=object_id)).json())

    def get_attachment_credentials(self, workspace: str, object_id: str) -> MediaCredentials:
        data = self.gateway.call(
            "GET", ATTACHMENT_CREDENTIALS.path(workspace=workspace, object=object_id)).json()
        try:
            return MediaCredentials(str(data["clientId"]), str(data["mediaBaseUrl"]), str(data["mediaJwtToken"]))
        except KeyError as exc:
            raise PermanentError(f"credentials answer lacks {exc.args[0]}") from None

    def link_attachment(self, workspace: str, object_id: str, *, media_id: str,
                        filename: str, content_type: str, size: int, comment: str) -> list[dict[str, Any]]:
        """Link an uploaded media file to the object. Returns the attachment records the answer
        carries, possibly none: some versions answer an empty 2xx body (open-readings §2).
        Repeating it links twice (no server-side dedup), so the step lists before any repeat."""
        body = {"attachments": [{"contentType": content_type, "filename": filename,
                                 "mediaId": media_id, "size": size, "comment": comment}]}
        response = self.gateway.call("POST", OBJECT_ATTACHMENTS.path(workspace=workspace, object=object_id),
                                     json=body)
        if not response.content.strip():
            return []
        data = response.json()
        items = data if isinstance(data, list) else [data]
        return [dict(a) for a in items if isinstance(a, dict)]

    def list_attachments(self, workspace: str, object_id: str) -> list[dict[str, Any]]:
        # UNCONFIRMED on cloud (inferred from Data Center); used only to avoid a duplicate link.
        data = self.gateway.call("GET", OBJECT_ATTACHMENTS.path(workspace=workspace, object=object_id)).json()
        return list(data) if isinstance(data, list) else list(data.get("values", []))


@dataclass(frozen=True)
class WantedAttachment:
    """What this job links, to recognise its record among an object's attachments."""

    media_id: str
    filename: str
    size: int
    comment: str
    since: float  # epoch seconds of the step's first attempt

    def matches(self, record: dict[str, Any]) -> bool:
        """By media id when the record carries one. The only documented record (Data Center:
        ``id, author, mimeType, filename, filesize, created, comment, url``) has none: then by
        filename + size + comment among attachments created since the first attempt."""
        if record.get("mediaId") is not None:
            return str(record["mediaId"]) == self.media_id
        return (record.get("filename") == self.filename and _size_matches(record, self.size)
                and str(record.get("comment") or "") == self.comment
                and _created_since(record.get("created"), self.since))

    def find(self, records: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The newest matching record (several identical ones can only come from repeats)."""
        found = [r for r in records if self.matches(r)]
        return found[-1] if found else None


def _size_matches(record: dict[str, Any], size: int) -> bool:
    for key in ("size", "filesize"):
        value = record.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value == size
        if isinstance(value, str):
            shown = _HUMAN_SIZE.match(value)
            if shown:
                return _could_show(size, shown.group(1).replace(",", "."), shown.group(2).lower())
    return True  # the record does not say its size: filename, comment and time decide


def _could_show(size: int, number: str, unit: str) -> bool:
    """Whether ``size`` bytes may be displayed as ``number unit`` ("490 B", "1.5 kB"): 1024- or
    1000-based, rounded or truncated to the digits shown."""
    exponent = " kmgt".index(unit or " ")
    decimals = len(number.split(".")[1]) if "." in number else 0
    step = 10.0 ** -decimals
    return any(abs(size / base**exponent - float(number)) < step for base in (1024, 1000))


def _created_since(created: Any, since: float) -> bool:
    """Created at or after ``since`` (less the clock skew). A ``created`` we cannot read is
    accepted: an identical file (name, size, comment) is already on the object, and linking a
    second copy is the harm this check exists to prevent."""
    if not isinstance(created, str):
        return True
    try:
        at = datetime.fromisoformat(created)
    except ValueError:
        return True
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.timestamp() >= since - CLOCK_SKEW_SECONDS
