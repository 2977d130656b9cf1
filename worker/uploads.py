"""Request bodies from a job's file, streamed: memory does not grow with the file's size.

Every attempt opens the file afresh, so a retried upload starts at byte 0 (a reused, already
read stream would send nothing). Multipart goes through requests-toolbelt's encoder, which also
sets the ``Content-Type`` with its boundary: never set a multipart Content-Type by hand.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import requests
from requests_toolbelt import MultipartEncoder

from producers.records import FileInfo
from worker.errors import PermanentError, RetryableError

CHUNK = 1024 * 1024


@dataclass
class OpenFile:
    stream: IO[bytes]
    name: str
    size: int
    mime_type: str


@contextlib.contextmanager
def open_file(info: FileInfo | None, step: str) -> Iterator[OpenFile]:
    """The job's file at byte 0. A URL is downloaded (streamed) to a temporary file first, because
    the destinations want a length and the link steps want the exact size."""
    if info is None:
        raise PermanentError("this job has no file", step=step)
    mime = info.mime_type or "application/octet-stream"
    if info.path:
        try:
            fh: IO[bytes] = open(info.path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise PermanentError(f"cannot open {info.path}: {exc.strerror}", step=step) from None
        with fh:
            size = _size_of(fh)
            yield OpenFile(fh, info.name, size, mime)
        return
    if info.uri:
        with _download(info.uri, step) as (fh, size):
            yield OpenFile(fh, info.name, size, mime)
        return
    raise PermanentError("the job's file has neither path nor uri", step=step)


def _size_of(fh: IO[bytes]) -> int:
    fh.seek(0, 2)
    size = fh.tell()
    fh.seek(0)
    return size


@contextlib.contextmanager
def _download(uri: str, step: str) -> Iterator[tuple[IO[bytes], int]]:
    with tempfile.TemporaryFile() as tmp:
        try:
            with requests.get(uri, stream=True, timeout=(10, 60)) as resp:
                if resp.status_code >= 400:
                    cls = RetryableError if resp.status_code >= 500 or resp.status_code == 429 else PermanentError
                    raise cls(f"fetching {uri}: HTTP {resp.status_code}", step=step, status=resp.status_code)
                shutil.copyfileobj(resp.raw, tmp, CHUNK)
        except requests.RequestException as exc:
            raise RetryableError(f"fetching {uri}: {exc}", step=step) from None
        size = tmp.tell()
        tmp.seek(0)
        yield tmp, size


def multipart(file_field: str, source: OpenFile, fields: dict[str, str] | None = None) -> MultipartEncoder:
    """A streaming multipart body; send it as ``data=`` with ``headers={"Content-Type": enc.content_type}``."""
    parts: dict[str, object] = dict(fields or {})
    parts[file_field] = (source.name, source.stream, source.mime_type)
    return MultipartEncoder(fields=parts)
