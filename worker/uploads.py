"""Request bodies from a job's file, streamed: memory does not grow with the file's size.

Every attempt opens the file afresh, so a retried upload starts at byte 0 (a reused, already
read stream would send nothing). Multipart goes through requests-toolbelt's encoder, which also
sets the ``Content-Type`` with its boundary: never set a multipart Content-Type by hand.

The worker does not trust the producer's checks: a file is opened only if it is a regular file
inside the worker's own ``[files] roots``, and a URL is used only if the worker's own rules
allow it (hostile input, issue 15).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urljoin

import requests
from requests_toolbelt import MultipartEncoder

from producers.config import FerryConfig
from producers.files import is_within_roots, uri_problem
from producers.records import FileInfo
from worker.errors import DestinationError, PermanentError, RetryableError
from worker.http import Destination, Download, Route, new_session

REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
# A job's ``uri`` is fetched exactly as given (after its own checks), with no credentials: the
# empty route is the base URL itself.
THE_URI = Route("")


@dataclass
class OpenFile:
    stream: IO[bytes]
    name: str
    size: int
    mime_type: str


@contextlib.contextmanager
def open_file(info: FileInfo | None, config: FerryConfig) -> Iterator[OpenFile]:
    """The job's file at byte 0, checked against this worker's own ``config`` (its roots, its
    URL rules), whatever the producer's said. A URL is downloaded (streamed) to a temporary file
    first, because the destinations want a length and the link steps want the exact size."""
    if info is None:
        raise PermanentError("this job has no file")
    mime = info.mime_type or "application/octet-stream"
    if info.path:
        with open_local(info.path, config.file_roots) as fh:
            yield OpenFile(fh, info.name, os.fstat(fh.fileno()).st_size, mime)
        return
    if info.uri:
        with _download(info.uri, config) as (fh, size):
            yield OpenFile(fh, info.name, size, mime)
        return
    raise PermanentError("the job's file has neither path nor uri")


# ---- a local file ------------------------------------------------------------------------------
def open_local(path: str, roots: tuple[str, ...]) -> IO[bytes]:
    """Open a job's file for reading, or refuse it (``PermanentError``) unless it is a regular
    file, not a symbolic link, lying inside one of ``roots`` (none configured: anywhere).

    The checks are made on what was opened, not on the name beforehand, so a file swapped after
    submit (or after a check) cannot slip through: ``O_NOFOLLOW`` refuses a link as the last
    component, ``fstat`` of the open descriptor says what it is (``O_NONBLOCK``, so opening a
    FIFO does not hang the worker), and the name resolved afterwards must lead to that same
    file inside a root (a directory swapped for a link moves it elsewhere)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PermanentError(f"{path}: file is a symbolic link, which the worker does not "
                                 "follow") from None
        raise PermanentError(f"cannot open {path}: {exc.strerror}") from None
    try:
        _check_opened(fd, path, roots)
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def _check_opened(fd: int, path: str, roots: tuple[str, ...]) -> None:
    opened = os.fstat(fd)
    if not stat.S_ISREG(opened.st_mode):
        raise PermanentError(f"{path}: not a regular file")
    os.set_blocking(fd, True)
    if roots and not _resolves_inside(path, opened, roots):
        raise PermanentError(f"{path}: file is outside the worker's roots ({', '.join(roots)})")


def _resolves_inside(path: str, opened: os.stat_result, roots: tuple[str, ...]) -> bool:
    resolved = Path(os.path.realpath(path))
    try:
        named = os.stat(resolved)
    except OSError:
        return False
    same_file = (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)
    return same_file and is_within_roots(resolved, roots)


# ---- a URL -------------------------------------------------------------------------------------
def checked_uri(uri: str, config: FerryConfig) -> str:
    """``uri``, if this worker's ``[files]`` rules let a job use it (``producers.files.
    uri_problem``: https only, public hosts only, unless allowed): checked again here because the
    producer's config may be looser and a name may resolve elsewhere by now. A host that does
    not resolve is retryable (DNS may answer later); a refused one is permanent."""
    try:
        problem = uri_problem(uri, config)
    except OSError as exc:
        raise RetryableError(f"cannot resolve the host of {uri}: {exc.strerror or exc}") from None
    if problem is not None:
        raise PermanentError(f"{uri}: {problem}")
    return uri


@contextlib.contextmanager
def _download(uri: str, config: FerryConfig) -> Iterator[tuple[IO[bytes], int]]:
    """Fetch ``uri`` to a temporary file. An anonymous ``Destination`` on a session of its own
    classifies the answers as every destination call is classified, and no connection's
    credentials, cookies or pooled connections ever meet the foreign host. It is not a
    connection's destination, so no connection's rate limit applies."""
    with tempfile.TemporaryFile() as tmp, new_session() as session:
        try:
            with Download(_get(session, uri, config)) as body:
                size = body.copy_to(tmp)
        except DestinationError as exc:
            exc.message = f"fetching {uri}: {exc.message}"
            raise
        tmp.seek(0)
        yield tmp, size


def _get(session: requests.Session, uri: str, config: FerryConfig) -> requests.Response:
    """GET ``uri`` and follow its redirects by hand, each target checked like the first (a
    public URL must not redirect the worker to a private one)."""
    for _ in range(MAX_REDIRECTS + 1):
        response = Destination(session, checked_uri(uri, config), routes=(THE_URI,)).call(
            "GET", THE_URI.path(), ok={200, *REDIRECTS}, stream=True, allow_redirects=False,
            headers={"Accept": "*/*"})
        if response.status_code not in REDIRECTS:
            return response
        response.close()
        location = response.headers.get("Location")
        if not location:
            raise PermanentError(f"HTTP {response.status_code} without a Location")
        uri = urljoin(uri, location)
    raise PermanentError(f"more than {MAX_REDIRECTS} redirects")


def multipart(file_field: str, source: OpenFile, fields: dict[str, str] | None = None) -> MultipartEncoder:
    """A streaming multipart body; send it as ``data=`` with ``headers={"Content-Type": enc.content_type}``."""
    parts: dict[str, object] = dict(fields or {})
    parts[file_field] = (source.name, source.stream, source.mime_type)
    return MultipartEncoder(fields=parts)
