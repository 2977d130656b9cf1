"""Atlassian's media service, as Assets attachments use it: ``POST {mediaBaseUrl}/file?name=``,
multipart part ``file``, authenticated by the short-lived JWT *and* the matching ``X-Client-Id``;
never Basic auth (shared/apis/README.md §2)."""

from __future__ import annotations

from dataclasses import dataclass

import requests

from worker.clients.assets import MediaCredentials
from worker.errors import PermanentError
from worker.http import BearerAuth, Destination, Limiter
from worker.uploads import OpenFile, multipart


@dataclass(frozen=True)
class MediaFile:
    id: str
    size: int
    mime_type: str | None


class MediaClient:
    def __init__(self, session: requests.Session, limiter: Limiter | None = None) -> None:
        self.session = session
        self.limiter = limiter

    def upload_file(self, step: str, credentials: MediaCredentials, file: OpenFile) -> MediaFile:
        media = Destination(self.session, credentials.media_base_url, auth=BearerAuth(credentials.jwt),
                            headers={"X-Client-Id": credentials.client_id}, limiter=self.limiter)
        body = multipart("file", file)
        data = media.call(step, "POST", "/file", params={"name": file.name}, upload=True, data=body,
                          headers={"Content-Type": body.content_type}).json().get("data") or {}
        if not data.get("id"):
            raise PermanentError("media service answered without a file id", step=step)
        return MediaFile(str(data["id"]), int(data.get("size", file.size)), data.get("mimeType"))
