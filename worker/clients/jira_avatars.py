"""Jira Cloud platform REST v3 avatars of projects, issue types and priorities.

Paths and bodies follow shared/apis/README.md §3. Loading is a raw image body (never multipart)
with the image's own ``Content-Type`` and ``X-Atlassian-Token: no-check``. Cloud has no
temporary-avatar + confirm flow: one POST creates the avatar.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from worker.clients.assets import NO_CHECK
from worker.errors import PermanentError
from worker.http import Destination, Download
from worker.uploads import OpenFile

AvatarType = Literal["project", "issuetype", "priority"]
API = "/rest/api/3"


@dataclass(frozen=True)
class Avatar:
    id: str
    is_system: bool = False
    is_selected: bool = False
    is_deletable: bool = False
    urls: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Avatar:
        return cls(id=str(data.get("id")), is_system=bool(data.get("isSystemAvatar")),
                   is_selected=bool(data.get("isSelected")),
                   is_deletable=bool(data.get("isDeletable")), urls=dict(data.get("urls") or {}))

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "system": self.is_system, "selected": self.is_selected,
                "deletable": self.is_deletable, "urls": self.urls}


@dataclass(frozen=True)
class Avatars:
    system: list[Avatar]
    custom: list[Avatar]


class JiraAvatarsClient:
    def __init__(self, site: Destination) -> None:
        self.site = site  # https://<site>.atlassian.net
        self._project_ids: dict[str, str] = {}

    def owner_id(self, avatar_type: str, owner: str) -> str:
        """The numeric id ``universal_avatar/type/{type}/owner/{entityId}`` documents. A project
        may be named by its key (what people type): resolved with ``GET /project/{key}``, once
        per client, since a service that takes only ids answers a key with 404
        (open-readings §4). Issue types and priorities have ids only."""
        if avatar_type != "project" or owner.isdigit():
            return owner
        if owner not in self._project_ids:
            data = self.site.call("GET", f"{API}/project/{quote(owner, safe='')}").json()
            if not isinstance(data, dict) or not str(data.get("id") or "").isdigit():
                raise PermanentError(f"project {owner} answered without a numeric id")
            self._project_ids[owner] = str(data["id"])
        return self._project_ids[owner]

    def _owner_path(self, avatar_type: str, owner: str) -> str:
        return f"{API}/universal_avatar/type/{avatar_type}/owner/{self.owner_id(avatar_type, owner)}"

    def load_avatar(self, avatar_type: AvatarType, owner: str, file: OpenFile,
                    x: int, y: int, size: int) -> Avatar:
        """Upload the image and crop it to the square (x, y, size). Repeating it would create a
        second avatar: the caller (the step) makes retries safe, see ``worker.steps``."""
        data = self.site.call(
            "POST", self._owner_path(avatar_type, owner),
            params={"x": x, "y": y, "size": size}, upload=True, data=file.stream,
            headers={**NO_CHECK, "Content-Type": file.mime_type}).json()
        if not isinstance(data, dict) or data.get("id") is None:
            raise PermanentError("load avatar answered without an avatar id")
        return Avatar.from_json(data)

    def set_current(self, avatar_type: AvatarType, owner: str, avatar_id: str) -> None:
        """Make ``avatar_id`` the avatar of the project / issue type / priority (idempotent PUTs)."""
        if avatar_type == "project":
            project = self.owner_id(avatar_type, owner)
            self.site.call("PUT", f"{API}/project/{project}/avatar", json={"id": avatar_id})
        elif avatar_type == "issuetype":
            self.site.call("PUT", f"{API}/issuetype/{owner}", json={"avatarId": int(avatar_id)})
        else:
            # UNCONFIRMED: "update priority" taking {"avatarId"} is not in the public pages we
            # have (older APIs set priorities by iconUrl). We send only avatarId, the field the
            # issue-type update documents, so a service that refuses it says so and changes nothing.
            self.site.call("PUT", f"{API}/priority/{owner}", json={"avatarId": int(avatar_id)})

    def list_avatars(self, avatar_type: AvatarType, owner: str) -> Avatars:
        """System and custom avatars available to one owner."""
        data = self.site.call("GET", self._owner_path(avatar_type, owner)).json()
        return Avatars(system=[Avatar.from_json(a) for a in data.get("system") or []],
                       custom=[Avatar.from_json(a) for a in data.get("custom") or []])

    def system_avatars(self, avatar_type: str) -> list[Avatar]:
        """System avatars of a type (``user`` is accepted here too)."""
        data = self.site.call("GET", f"{API}/avatar/{avatar_type}/system").json()
        return [Avatar.from_json(a) for a in data.get("system") or []]

    def avatar_image(self, avatar_type: str, avatar_id: str | None = None, owner: str | None = None,
                     size: str | None = None, format: str | None = None) -> Download:
        """Image bytes, streamed: by avatar id, by owner (its current avatar), or the type's default."""
        if avatar_id is not None and owner is not None:
            raise ValueError("give avatar_id or owner, not both")
        path = f"{API}/universal_avatar/view/type/{avatar_type}"
        if avatar_id is not None:
            path += f"/avatar/{avatar_id}"
        elif owner is not None:
            path += f"/owner/{self.owner_id(avatar_type, owner)}"
        query = {k: v for k, v in (("size", size), ("format", format)) if v is not None}
        response = self.site.call("GET", path, params=query, stream=True,
                                  headers={"Accept": "*/*"})
        return Download(response)

    def delete_avatar(self, avatar_type: AvatarType, owner: str, avatar_id: str) -> None:
        self.site.call("DELETE", f"{self._owner_path(avatar_type, owner)}/avatar/{avatar_id}")
