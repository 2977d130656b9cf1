"""Atlassian Marketplace REST v2 assets: app artifacts (.jar/.obr) and images.

Paths follow shared/apis/README.md §4 and sources/003. Asset names contain a slash
(``images/<uuid>.png``) that must travel encoded as ``%2F`` inside ONE path segment: we quote the
name ourselves, and requests/urllib3 leave an already encoded ``%2F`` alone (a test checks this
against the sandbox, which refuses a decoded slash).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from worker.errors import PermanentError
from worker.http import Destination
from worker.uploads import OpenFile, multipart

ASSETS = "/rest/2/assets"


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


def asset_name(ref: str) -> str:
    """The asset's name from a name, a ``/rest/2/assets/...`` path or a full ``_links.self`` URL."""
    path = urlsplit(ref).path if "://" in ref else ref
    marker = ASSETS + "/"
    if marker in path:
        path = path.split(marker, 1)[1]
    return unquote(path)


def asset_path(name: str) -> str:
    # safe="" so the slash inside the name becomes %2F: the whole name is one path segment.
    return f"{ASSETS}/{quote(asset_name(name), safe='')}"


class MarketplaceClient:
    def __init__(self, api: Destination) -> None:
        self.api = api  # https://marketplace.atlassian.com

    def asset_links(self) -> dict[str, Any]:
        """The HAL links to the asset resources (``artifact``, ``fetchArtifact``, ``imageByType``)."""
        return dict(self.api.call("GET", ASSETS).json().get("_links") or {})

    # Uploads create a new stored asset each time and there is no listing to find an earlier
    # one, so a reply lost after sending is OutcomeUnknown (repeatable=False), never a blind retry.
    CHECK = "the app's Marketplace assets for one uploaded just now (Marketplace has no asset listing)"

    def upload_artifact(self, file: OpenFile) -> Asset:
        body = multipart("file", file)
        data = self.api.call("POST", f"{ASSETS}/artifact", upload=True, repeatable=False,
                             check=self.CHECK, data=body, headers={"Content-Type": body.content_type}).json()
        return Asset.from_json(data)

    def fetch_artifact(self, uri: str) -> Asset:
        """Marketplace downloads ``uri`` itself: the bytes never pass through Ferry."""
        data = self.api.call("POST", f"{ASSETS}/artifact/fetch", params={"uri": uri},
                             upload=True, repeatable=False, check=self.CHECK).json()
        return Asset.from_json(data)

    def upload_image(self, image_type: str, file: OpenFile) -> Asset:
        # Raw image body with the image's Content-Type and ?file=<logical name> (sources/003).
        data = self.api.call("POST", f"{ASSETS}/image/{quote(image_type, safe='')}",
                             params={"file": file.name}, upload=True, repeatable=False, check=self.CHECK,
                             data=file.stream, headers={"Content-Type": file.mime_type}).json()
        return Asset.from_json(data)

    def asset(self, name: str) -> dict[str, Any]:
        return dict(self.api.call("GET", asset_path(name)).json())

    def delete_asset(self, name: str) -> None:
        self.api.call("DELETE", asset_path(name))
