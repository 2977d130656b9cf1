"""Atlassian Marketplace REST v2 assets: app artifacts (.jar/.obr) and images.

Paths follow shared/apis/README.md §4 and sources/003. Asset names contain a slash
(``images/<uuid>.png``) that must travel encoded as ``%2F`` inside ONE path segment: we quote the
name ourselves, and requests/urllib3 leave an already encoded ``%2F`` alone (a test checks this
against the sandbox, which refuses a decoded slash).

Which upload form Marketplace takes is an open reading (shared/apis/open-readings.md §5):
Atlassian's Java client posts artifacts and images raw (``Content-Type: application/binary``,
name in ``?file=``); the v2 docs' newer page shows multipart ``file`` for artifacts. A server
that expects one form answers 415 to another, and a 415 creates nothing, so ``upload`` sends the
next form on a 415 (each form once), even though the upload itself is never repeated.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Literal

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
AssetKind = Literal["artifact", "image"]
# multipart: part `file`; raw: the bytes with the file's own Content-Type; binary: the bytes as
# application/binary (the Java client's form), both named by ?file=.
UploadForm = Literal["multipart", "raw", "binary"]
# Per kind, the forms in the order they are tried when nothing is remembered: what Ferry sent
# before this reading was open comes first.
FORMS: dict[AssetKind, tuple[UploadForm, ...]] = {"artifact": ("multipart", "binary"),
                                                  "image": ("raw", "multipart", "binary")}
UNSUPPORTED = 415
CONTENT_TYPES: dict[str, UploadForm] = {"application/binary": "binary", "multipart/form-data": "multipart"}
OpenSource = Callable[[], AbstractContextManager[OpenFile]]


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


@dataclass(frozen=True)
class FormedUpload:
    asset: Asset
    form: UploadForm  # the form Marketplace took
    tried: tuple[UploadForm, ...]  # every form sent, in order (the last one worked)


def form_order(kind: AssetKind, remembered: str | None) -> tuple[UploadForm, ...]:
    """The kind's forms, the one remembered for this connection first."""
    forms = FORMS[kind]
    first = [f for f in forms if f == remembered]
    return (*first, *(f for f in forms if f != remembered))


def next_form(order: tuple[UploadForm, ...], tried: list[UploadForm], refusal: str) -> UploadForm | None:
    """After a 415: a form not tried yet, the one the refusal names (by its Content-Type) first."""
    left = [f for f in order if f not in tried]
    named = [f for ctype, f in CONTENT_TYPES.items() if ctype in refusal.lower() and f in left]
    if named:
        return named[0]
    return left[0] if left else None


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

    def upload(self, kind: AssetKind, open_source: OpenSource, order: tuple[UploadForm, ...],
               image_type: str = "") -> FormedUpload:
        """Send the file in the first form of ``order``; on a 415 (nothing was created) in the
        next, each form once. Any other answer is the upload's: success, or its error."""
        tried: list[UploadForm] = []
        form: UploadForm | None = order[0]
        while form is not None:
            with open_source() as file:
                tried.append(form)
                try:
                    return FormedUpload(self._send(kind, form, file, image_type), form, tuple(tried))
                except PermanentError as exc:
                    if exc.status != UNSUPPORTED:
                        raise
                    refusal = exc.message
            form = next_form(order, tried, refusal)
        raise PermanentError(f"Marketplace refused every upload form ({', '.join(tried)}) with 415: "
                             f"{refusal}", status=UNSUPPORTED)

    def _send(self, kind: AssetKind, form: UploadForm, file: OpenFile, image_type: str) -> Asset:
        path = ARTIFACT.path() if kind == "artifact" else IMAGE.path(type=image_type)
        if form == "multipart":
            body = multipart("file", file)
            sent: dict[str, Any] = {"data": body, "headers": {"Content-Type": body.content_type}}
        else:
            ctype = "application/binary" if form == "binary" else file.mime_type or "application/octet-stream"
            sent = {"data": file.stream, "params": {"file": file.name}, "headers": {"Content-Type": ctype}}
        data = self.api.call("POST", path, upload=True, repeatable=False, check=self.CHECK, **sent).json()
        return Asset.from_json(data)

    def fetch_artifact(self, uri: str) -> Asset:
        """Marketplace downloads ``uri`` itself: the bytes never pass through Ferry."""
        data = self.api.call("POST", ARTIFACT_FETCH.path(), params={"uri": uri},
                             upload=True, repeatable=False, check=self.CHECK).json()
        return Asset.from_json(data)

    def asset(self, name: str) -> dict[str, Any]:
        return dict(self.api.call("GET", asset_path(name)).json())

    def delete_asset(self, name: str) -> None:
        self.api.call("DELETE", asset_path(name))
