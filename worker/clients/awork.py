"""awork API v1 profile images of companies, contact persons, projects, project templates, users
and workspaces: ``/files/images/{entity}/{id}`` POST (multipart part ``File``), GET, DELETE
(shared/apis/README.md §5, sources/004). Bearer token auth."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from worker.http import Destination, Download, Route, RoutedPath
from worker.uploads import OpenFile, multipart

Entity = Literal["companies", "contactpersons", "projects", "projecttemplates", "users", "workspaces"]
API_PREFIX = "/api/v1"
FILE_FIELD = "File"  # capital F, as the docs' form field says


@dataclass(frozen=True)
class ProfileImage:
    file_id: str | None
    file_name: str | None
    mime_type: str | None
    size: int | None
    width: int | None
    height: int | None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProfileImage:
        # The exact field list is UNCONFIRMED: read what is there, never require more than nothing.
        versions = data.get("fileVersions") or [{}]
        latest = versions[-1] if isinstance(versions[-1], dict) else {}
        return cls(file_id=data.get("id"), file_name=data.get("fileName"),
                   mime_type=data.get("mimeType"), size=latest.get("size"),
                   width=latest.get("width"), height=latest.get("height"))

    def to_json(self) -> dict[str, Any]:
        return {"file_id": self.file_id, "file_name": self.file_name, "mime_type": self.mime_type,
                "size": self.size, "width": self.width, "height": self.height}


def image_route(base_url: str) -> Route:
    """The one route this client sends. awork's base is documented as
    ``https://api.awork.com/api/v1``; a connection may name the host alone, so ``/api/v1`` is
    added only when the base does not already end with it."""
    prefix = "" if base_url.rstrip("/").endswith(API_PREFIX) else API_PREFIX
    return Route(f"{prefix}/files/images/{{entity}}/{{id}}")


class AworkClient:
    def __init__(self, api: Destination) -> None:
        self.route = image_route(api.base_url)
        self.api = api.only(self.route)

    def _path(self, entity: Entity, entity_id: str) -> RoutedPath:
        return self.route.path(entity=entity, id=entity_id)

    def upload_image(self, entity: Entity, entity_id: str, file: OpenFile) -> ProfileImage:
        # An entity has one profile image and an upload replaces it, so repeating this request
        # after a lost reply lands the same image again: nothing visible is duplicated.
        body = multipart(FILE_FIELD, file)
        data = self.api.call("POST", self._path(entity, entity_id), upload=True, data=body,
                             headers={"Content-Type": body.content_type}).json()
        return ProfileImage.from_json(data if isinstance(data, dict) else {})

    def image(self, entity: Entity, entity_id: str) -> Download:
        """The profile image's bytes, streamed."""
        response = self.api.call("GET", self._path(entity, entity_id), stream=True,
                                 headers={"Accept": "*/*"})
        return Download(response)

    def delete_image(self, entity: Entity, entity_id: str) -> None:
        self.api.call("DELETE", self._path(entity, entity_id))
