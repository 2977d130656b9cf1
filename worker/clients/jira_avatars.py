"""Jira Cloud platform REST v3 avatars of projects, issue types and priorities.

Paths and bodies follow shared/apis/README.md §3. Loading is a raw image body (never multipart)
with the image's own ``Content-Type`` and ``X-Atlassian-Token: no-check``. Cloud has no
temporary-avatar + confirm flow: one POST creates the avatar.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from worker.clients.assets import NO_CHECK
from worker.errors import PermanentError
from worker.http import Destination, Download, Route, RoutedPath
from worker.uploads import OpenFile

AvatarType = Literal["project", "issuetype", "priority"]
API = "/rest/api/3"
NUMERIC_ID = re.compile(r"[0-9]{1,18}")  # ASCII digits only: str.isdigit() also takes '²'

# Every request this client can send (worker.http.Route).
PROJECT = Route(f"{API}/project/{{project}}")
PROJECT_AVATAR = Route(f"{API}/project/{{project}}/avatar")
ISSUE_TYPE = Route(f"{API}/issuetype/{{issuetype}}")
PRIORITY = Route(f"{API}/priority/{{priority}}")
OWNER_AVATARS = Route(f"{API}/universal_avatar/type/{{type}}/owner/{{owner}}")
OWNER_AVATAR = Route(f"{API}/universal_avatar/type/{{type}}/owner/{{owner}}/avatar/{{avatar}}")
SYSTEM_AVATARS = Route(f"{API}/avatar/{{type}}/system")
VIEW_DEFAULT = Route(f"{API}/universal_avatar/view/type/{{type}}")
VIEW_AVATAR = Route(f"{API}/universal_avatar/view/type/{{type}}/avatar/{{avatar}}")
VIEW_OWNER = Route(f"{API}/universal_avatar/view/type/{{type}}/owner/{{owner}}")
ROUTES = (PROJECT, PROJECT_AVATAR, ISSUE_TYPE, PRIORITY, OWNER_AVATARS, OWNER_AVATAR, SYSTEM_AVATARS,
          VIEW_DEFAULT, VIEW_AVATAR, VIEW_OWNER)


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
        self.site = site.only(*ROUTES)  # https://<site>.atlassian.net
        self._project_ids: dict[str, str] = {}

    def owner_id(self, avatar_type: str, owner: str) -> str:
        """The numeric id ``universal_avatar/type/{type}/owner/{entityId}`` documents. A project
        may be named by its key (what people type): resolved with ``GET /project/{key}``, once
        per client, since a service that takes only ids answers a key with 404
        (open-readings §4). Issue types and priorities have ids only."""
        if avatar_type != "project" or NUMERIC_ID.fullmatch(owner):
            return owner
        if owner not in self._project_ids:
            data = self.site.call("GET", PROJECT.path(project=owner)).json()
            if not isinstance(data, dict) or not NUMERIC_ID.fullmatch(str(data.get("id") or "")):
                raise PermanentError(f"project {owner} answered without a numeric id")
            self._project_ids[owner] = str(data["id"])
        return self._project_ids[owner]

    def _owner_path(self, avatar_type: str, owner: str) -> RoutedPath:
        return OWNER_AVATARS.path(type=avatar_type, owner=self.owner_id(avatar_type, owner))

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
            self.site.call("PUT", PROJECT_AVATAR.path(project=project), json={"id": avatar_id})
        elif avatar_type == "issuetype":
            self.site.call("PUT", ISSUE_TYPE.path(issuetype=owner), json={"avatarId": int(avatar_id)})
        else:
            # UNCONFIRMED: "update priority" taking {"avatarId"} is not in the public pages we
            # have (older APIs set priorities by iconUrl). We send only avatarId, the field the
            # issue-type update documents, so a service that refuses it says so and changes nothing.
            self.site.call("PUT", PRIORITY.path(priority=owner), json={"avatarId": int(avatar_id)})

    def list_avatars(self, avatar_type: AvatarType, owner: str) -> Avatars:
        """System and custom avatars available to one owner."""
        data = self.site.call("GET", self._owner_path(avatar_type, owner)).json()
        return Avatars(system=[Avatar.from_json(a) for a in data.get("system") or []],
                       custom=[Avatar.from_json(a) for a in data.get("custom") or []])

    def system_avatars(self, avatar_type: str) -> list[Avatar]:
        """System avatars of a type (``user`` is accepted here too)."""
        data = self.site.call("GET", SYSTEM_AVATARS.path(type=avatar_type)).json()
        return [Avatar.from_json(a) for a in data.get("system") or []]

    def avatar_image(self, avatar_type: str, avatar_id: str | None = None, owner: str | None = None,
                     size: str | None = None, format: str | None = None) -> Download:
        """Image bytes, streamed: by avatar id, by owner (its current avatar), or the type's default."""
        if avatar_id is not None and owner is not None:
            raise ValueError("give avatar_id or owner, not both")
        if avatar_id is not None:
            path = VIEW_AVATAR.path(type=avatar_type, avatar=avatar_id)
        elif owner is not None:
            path = VIEW_OWNER.path(type=avatar_type, owner=self.owner_id(avatar_type, owner))
        else:
            path = VIEW_DEFAULT.path(type=avatar_type)
        query = {k: v for k, v in (("size", size), ("format", format)) if v is not None}
        response = self.site.call("GET", path, params=query, stream=True,
                                  headers={"Accept": "*/*"})
        return Download(response)

    def delete_avatar(self, avatar_type: AvatarType, owner: str, avatar_id: str) -> None:
        owner_id = self.owner_id(avatar_type, owner)
        self.site.call("DELETE", OWNER_AVATAR.path(type=avatar_type, owner=owner_id, avatar=avatar_id))
