"""Jira Service Management Assets (cloud): workspace discovery, object avatars, object attachments.

Paths and bodies follow shared/apis/README.md §1-2 (KB article for avatars; the reverse-engineered
three-step attachment flow). Assets lives on the API gateway, not on the site host.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from worker.errors import PermanentError
from worker.http import Destination
from worker.uploads import OpenFile, multipart

AVATAR_FIELD = "rlabs-insight-object-avatar"  # the KB's current name (older revisions said "file")
NO_CHECK = {"X-Atlassian-Token": "no-check"}


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
        self.site = site  # https://<site>.atlassian.net
        self.gateway = gateway  # https://api.atlassian.com

    def _ws(self, workspace: str, path: str) -> str:
        return f"/jsm/assets/workspace/{workspace}/v1/{path.lstrip('/')}"

    def discover_workspace(self, step: str) -> str:
        body = self.site.call(step, "GET", "/rest/servicedeskapi/assets/workspace").json()
        values = body.get("values") or []
        if not values or not values[0].get("workspaceId"):
            raise PermanentError("the site has no Assets workspace", step=step)
        return str(values[0]["workspaceId"])

    def upload_avatar(self, step: str, workspace: str, object_type_id: int, file: OpenFile,
                      client_uuid: str) -> AvatarUpload:
        body = multipart(AVATAR_FIELD, file, {"avatarUUID": client_uuid, "objectTypeId": str(object_type_id)})
        data = self.gateway.call(
            step, "POST", self._ws(workspace, "avatar/upload"), upload=True, data=body,
            headers={**NO_CHECK, "Content-Type": body.content_type}).json()
        server_uuid = data.get("avatarUUID")
        if not server_uuid:
            raise PermanentError("avatar upload answered without an avatarUUID", step=step)
        return AvatarUpload(str(server_uuid), {k: v for k, v in data.items() if k.startswith("url")})

    def create_object(self, step: str, workspace: str, object_type_id: int,
                      attributes: list[dict[str, Any]], avatar_uuid: str) -> dict[str, Any]:
        body = {"objectTypeId": str(object_type_id), "attributes": attributes,
                "avatarUUID": avatar_uuid, "hasAvatar": True}
        # Creating is not repeatable: a reply lost after sending must not become a second object.
        return dict(self.gateway.call(step, "POST", self._ws(workspace, "object/create"),
                                      json=body, repeatable=False).json())

    def update_object(self, step: str, workspace: str, object_id: str, object_type_id: int,
                      avatar_uuid: str) -> dict[str, Any]:
        body = {"objectTypeId": str(object_type_id), "attributes": [],
                "avatarUUID": avatar_uuid, "hasAvatar": True}
        return dict(self.gateway.call(step, "PUT", self._ws(workspace, f"object/{object_id}"),
                                      json=body).json())

    def get_object(self, step: str, workspace: str, object_id: str) -> dict[str, Any]:
        return dict(self.gateway.call(step, "GET", self._ws(workspace, f"object/{object_id}")).json())

    def get_attachment_credentials(self, step: str, workspace: str, object_id: str) -> MediaCredentials:
        data = self.gateway.call(
            step, "GET", self._ws(workspace, f"attachments/object/{object_id}/credentials")).json()
        try:
            return MediaCredentials(str(data["clientId"]), str(data["mediaBaseUrl"]), str(data["mediaJwtToken"]))
        except KeyError as exc:
            raise PermanentError(f"credentials answer lacks {exc.args[0]}", step=step) from None

    def link_attachment(self, step: str, workspace: str, object_id: str, *, media_id: str,
                        filename: str, content_type: str, size: int, comment: str) -> list[dict[str, Any]]:
        body = {"attachments": [{"contentType": content_type, "filename": filename,
                                 "mediaId": media_id, "size": size, "comment": comment}]}
        data = self.gateway.call(step, "POST", self._ws(workspace, f"attachments/object/{object_id}"),
                                 json=body, repeatable=False).json()
        return list(data) if isinstance(data, list) else [data]

    def list_attachments(self, step: str, workspace: str, object_id: str) -> list[dict[str, Any]]:
        # UNCONFIRMED on cloud (inferred from Data Center); used only to avoid a duplicate link.
        data = self.gateway.call(step, "GET", self._ws(workspace, f"attachments/object/{object_id}")).json()
        return list(data) if isinstance(data, list) else list(data.get("values", []))
