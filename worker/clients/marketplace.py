"""Atlassian Marketplace REST v2 assets: app artifacts (.jar/.obr) and images.

Paths follow shared/apis/README.md §4 and sources/003. Asset names contain a slash
(``images/<uuid>.png``) that must travel encoded as ``%2F`` inside ONE path segment: we quote the
name ourselves, and requests/urllib3 leave an already encoded ``%2F`` alone (a test checks this
against the sandbox, which refuses a decoded slash).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from producers.params import asset_name
from worker.errors import PermanentError
from worker.http import Destination, Route, RoutedPath
from worker.uploads import OpenFile, multipart

# Every request this client can send (worker.http.Route).
ASSETS = Route("/rest/2/assets")
ARTIFACT = Route("/rest/2/assets/artifact")
ARTIFACT_FETCH = Route("/rest/2/assets/artifact/fetch")
IMAGE = Route("/rest/2/assets/image/{type}")
ASSET = Route("/rest/2/assets/{name}")  # the name's own '/' travels as %2F: one segment


@dataclass(frozen=True)
class Asset:
    """A stored asset. ``link`` (``_links.self.href``) is what an app or app version refers to."""

    link: str
    name: str
    logical_file_name: str | None
    size: int | None
    links: dict[str, str]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Asset:
        links = {k: str(v.get("href")) for k, v in (data.get("_links") or {}).items()
                 if isinstance(v, dict) and v.get("href")}
        if "self" not in links:
            raise PermanentError("Marketplace answered without _links.self")
        info = data.get("fileInfo") or {}
        size = info.get("size")
        return cls(link=links["self"], name=asset_name(links["self"]),
                   logical_file_name=info.get("logicalFileName"),
                   size=int(size) if isinstance(size, int) else None, links=links)

    def to_json(self) -> dict[str, Any]:
        return {"asset_link": self.link, "asset_name": self.name,
                "logical_file_name": self.logical_file_name, "size": self.size, "links": self.links}


def asset_path(name: str) -> RoutedPath:
    return ASSET.path(name=asset_name(name))


class MarketplaceClient:
    def __init__(self, api: Destination) -> None:
        self.api = api.only(ASSETS, ARTIFACT, ARTIFACT_FETCH, IMAGE, ASSET)  # https://marketplace.atlassian.com

    def asset_links(self) -> dict[str, Any]:
        """The HAL links to the asset resources (``artifact``, ``fetchArtifact``, ``imageByType``)."""
        return dict(self.api.call("GET", ASSETS.path()).json().get("_links") or {})

    # Uploads create a new stored asset each time and there is no listing to find an earlier
    # one, so a reply lost after sending is OutcomeUnknown (repeatable=False), never a blind retry.
    CHECK = "the app's Marketplace assets for one uploaded just now (Marketplace has no asset listing)"

    def upload_artifact(self, file: OpenFile) -> Asset:
        body = multipart("file", file)
        data = self.api.call("POST", ARTIFACT.path(), upload=True, repeatable=False,
                             check=self.CHECK, data=body, headers={"Content-Type": body.content_type}).json()
        return Asset.from_json(data)

    def fetch_artifact(self, uri: str) -> Asset:
        """Marketplace downloads ``uri`` itself: the bytes never pass through Ferry."""
        data = self.api.call("POST", ARTIFACT_FETCH.path(), params={"uri": uri},
                             upload=True, repeatable=False, check=self.CHECK).json()
        return Asset.from_json(data)

    def upload_image(self, image_type: str, file: OpenFile) -> Asset:
        # Raw image body with the image's Content-Type and ?file=<logical name> (sources/003).
        data = self.api.call("POST", IMAGE.path(type=image_type),
                             params={"file": file.name}, upload=True, repeatable=False, check=self.CHECK,
                             data=file.stream, headers={"Content-Type": file.mime_type}).json()
        return Asset.from_json(data)

    def asset(self, name: str) -> dict[str, Any]:
        return dict(self.api.call("GET", asset_path(name)).json())

    def delete_asset(self, name: str) -> None:
        self.api.call("DELETE", asset_path(name))
