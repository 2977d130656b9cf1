"""Atlassian's media service, as Assets attachments use it, authenticated by the short-lived JWT
*and* the matching ``X-Client-Id``; never Basic auth (shared/apis/README.md §2).

Which upload form stores the bytes is an open reading (shared/apis/open-readings.md §1):
- ``multipart``: ``POST {mediaBaseUrl}/file?name=``, part ``file`` (the seed script; "Atlassian
  changed from /file/binary to /file");
- ``binary``: ``POST {mediaBaseUrl}/file/binary?name=``, the raw bytes with the file's
  Content-Type (Atlassian's own media client, where ``POST /file`` creates an *empty* file).
Either may answer success for a wrong result, so an upload counts only once the service says it
stored exactly the file's size (``data.size``, else ``GET /file/{id}``); ``upload_verified``
tries the other form once when it did not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import requests

from worker.clients.assets import MediaCredentials
from worker.errors import PermanentError
from worker.http import BearerAuth, Destination, Limiter, Route
from worker.uploads import OpenFile, multipart

UploadForm = Literal["multipart", "binary"]
FORMS: tuple[UploadForm, ...] = get_args(UploadForm)
DEFAULT_FORM: UploadForm = "multipart"  # the seed's reading comes first
GONE = (404, 405)  # the form's route no longer exists (Atlassian moved uploads once already)

OpenSource = Callable[[], AbstractContextManager[OpenFile]]

# Every request this client can send (worker.http.Route), under the credentials' mediaBaseUrl.
# ``?name=`` is percent-encoded by the route (``%20``, never ``+``: the media service may not read
# form encoding in a query, and a ``+`` is a legal file-name character).
FILE = Route("/file")
FILE_BINARY = Route("/file/binary")
FILE_BY_ID = Route("/file/{id}")


@dataclass(frozen=True)
class MediaFile:
    id: str
    size: int | None  # what the service says it stored; None when the answer did not say
    mime_type: str | None


@dataclass(frozen=True)
class VerifiedUpload:
    media: MediaFile  # its size is the verified stored size (== the file's)
    form: UploadForm
    tried: tuple[UploadForm, ...]  # every form sent, in order (the last one worked)
    gone: tuple[UploadForm, ...] = field(default=())  # forms answered 404/405


def other_form(form: UploadForm) -> UploadForm:
    return "binary" if form == "multipart" else "multipart"


def form_order(setting: str, remembered: str | None) -> tuple[UploadForm, ...]:
    """The forms to try, in order: a pinned form alone; ``auto`` starts with the form that
    worked last on this connection (else the seed's multipart) and keeps the other in reserve."""
    for form in FORMS:
        if setting == form:
            return (form,)
    first = next((f for f in FORMS if f == remembered), DEFAULT_FORM)
    return (first, other_form(first))


class MediaClient:
    def __init__(self, session: requests.Session, limiter: Limiter | None = None) -> None:
        self.session = session
        self.limiter = limiter

    def _media(self, credentials: MediaCredentials) -> Destination:
        return Destination(self.session, credentials.media_base_url, auth=BearerAuth(credentials.jwt),
                           headers={"X-Client-Id": credentials.client_id}, limiter=self.limiter,
                           routes=(FILE, FILE_BINARY, FILE_BY_ID))

    def upload(self, credentials: MediaCredentials, file: OpenFile,
               form: UploadForm = DEFAULT_FORM) -> MediaFile:
        """One upload in one form, streamed. The answer's size is reported, never assumed."""
        media = self._media(credentials)
        if form == "multipart":
            body = multipart("file", file)
            response = media.call("POST", FILE.path(query={"name": file.name}), upload=True,
                                  data=body, headers={"Content-Type": body.content_type})
        else:
            response = media.call("POST", FILE_BINARY.path(query={"name": file.name}), upload=True,
                                  data=file.stream, headers={"Content-Type": file.mime_type})
        data = _data(response)
        if not data.get("id"):
            raise PermanentError("media service answered without a file id")
        return MediaFile(str(data["id"]), _size(data), data.get("mimeType"))

    def stored_size(self, credentials: MediaCredentials, media_id: str) -> int | None:
        """What the service holds for ``media_id`` (``GET /file/{id}``); None if it will not say."""
        try:
            response = self._media(credentials).call("GET", FILE_BY_ID.path(id=media_id))
        except PermanentError as exc:
            if exc.status in GONE:
                return None
            raise
        return _size(_data(response))

    def upload_verified(self, credentials: MediaCredentials, open_source: OpenSource,
                        forms: Sequence[UploadForm]) -> VerifiedUpload:
        """Upload in the first form; if the service stored another size, once more in the next.
        A form answering 404/405 is gone: the next one is used. Neither storing the whole file
        is a permanent error, "media service stored N of M bytes"."""
        tried: list[UploadForm] = []
        gone: list[UploadForm] = []
        shortfalls: list[str] = []
        for form in forms:
            with open_source() as file:
                tried.append(form)
                try:
                    media = self.upload(credentials, file, form)
                except PermanentError as exc:
                    if exc.status not in GONE or len(forms) == 1:
                        raise
                    gone.append(form)
                    continue
                stored = media.size if media.size is not None else self.stored_size(credentials, media.id)
                if stored == file.size:
                    verified = MediaFile(media.id, stored, media.mime_type)
                    return VerifiedUpload(verified, form, tuple(tried), tuple(gone))
                shown = "an unknown number" if stored is None else str(stored)
                shortfalls.append(f"media service stored {shown} of {file.size} bytes ({form} upload)")
        if not shortfalls:
            raise PermanentError(f"media service has no upload form left: {', '.join(gone)} "
                                 "answered 404/405", status=404)
        raise PermanentError("; ".join(shortfalls))


def _data(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    data = body.get("data") if isinstance(body, dict) else None
    return data if isinstance(data, dict) else {}


def _size(data: dict[str, Any]) -> int | None:
    size = data.get("size")
    return size if isinstance(size, int) and not isinstance(size, bool) else None
