"""Streaming receive of request bodies to disk, hashed on the fly.

Bodies are never held whole in memory: a 2 GB upload must work. Raw bodies are written chunk by
chunk; multipart bodies go through python-multipart's push parser, which hands us part data as it
arrives. Files land in {data}/blobs/{sha256} (content-addressed, so duplicates cost nothing).
Disk writes are synchronous: they hit the page cache and are far cheaper than an executor hop
per 64 KB chunk.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from sandbox.state import Blob

MAX_FIELD_BYTES = 64 * 1024  # non-file form fields are ids and UUIDs; cap them to bound memory
# After a size limit trips we keep reading (and discarding) this much more so the client gets a
# clean HTTP answer instead of a reset; beyond it we answer anyway and let the connection drop.
DRAIN_LIMIT = 256 * 1024 * 1024


class TooLarge(Exception):
    """The body (or one file part) exceeded the allowed size."""


class BadMultipart(Exception):
    """The body is not well-formed multipart/form-data."""


class BlobWriter:
    """Writes a stream into a temp file, hashing as it goes, then renames it to its sha256."""

    def __init__(self, blob_dir: Path, limit: int | None = None) -> None:
        tmp_dir = blob_dir / ".tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        self.blob_dir = blob_dir
        self.tmp_path = tmp_dir / uuid.uuid4().hex
        self.file: IO[bytes] = open(self.tmp_path, "wb")  # noqa: SIM115 - closed in finish/abort
        self.hash = hashlib.sha256()
        self.size = 0
        self.limit = limit

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.limit is not None and self.size > self.limit:
            raise TooLarge(f"more than {self.limit} bytes")
        self.hash.update(data)
        self.file.write(data)

    def finish(self, filename: str | None = None, content_type: str | None = None) -> Blob:
        self.file.close()
        sha = self.hash.hexdigest()
        final = self.blob_dir / sha
        os.replace(self.tmp_path, final)
        return Blob(sha, self.size, final, filename, content_type)

    def abort(self) -> None:
        self.file.close()
        self.tmp_path.unlink(missing_ok=True)


async def drain(stream: AsyncIterator[bytes], limit: int = DRAIN_LIMIT) -> None:
    """Discard the rest of a body (bounded), so an early error answer reaches the client."""
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit:
            return


async def receive_raw(stream: AsyncIterator[bytes], blob_dir: Path, limit: int | None) -> Blob:
    """Stream a raw request body to disk."""
    writer = BlobWriter(blob_dir, limit)
    try:
        async for chunk in stream:
            writer.write(chunk)
    except TooLarge:
        writer.abort()
        await drain(stream)
        raise
    except BaseException:
        writer.abort()
        raise
    return writer.finish()


@dataclass
class FormData:
    """A parsed multipart body: small text fields in memory, file parts on disk."""

    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, Blob] = field(default_factory=dict)
    # Names of every part in order, so handlers can say "you sent `file`, expected `X`".
    part_names: list[str] = field(default_factory=list)


def multipart_boundary(content_type: str | None) -> bytes | None:
    """The boundary of a multipart/form-data Content-Type, or None if absent/other type."""
    if not content_type:
        return None
    ctype, params = parse_options_header(content_type)
    if ctype != b"multipart/form-data":
        return None
    return params.get(b"boundary") or None


def is_multipart(content_type: str | None) -> bool:
    return content_type is not None and content_type.lower().startswith("multipart/form-data")


class _PartCollector:
    """Callbacks for MultipartParser that route each part to a BlobWriter or a small buffer."""

    def __init__(self, blob_dir: Path, file_limit: int | None) -> None:
        self.blob_dir = blob_dir
        self.file_limit = file_limit
        self.form = FormData()
        self.header_field = bytearray()
        self.header_value = bytearray()
        self.headers: dict[str, bytes] = {}
        self.writer: BlobWriter | None = None
        self.buffer: bytearray | None = None
        self.name = ""
        self.filename: str | None = None
        self.content_type: str | None = None

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": lambda d, s, e: self.header_field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self.header_value.extend(d[s:e]),
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self.headers = {}
        self.writer = None
        self.buffer = None

    def on_header_end(self) -> None:
        self.headers[self.header_field.decode("latin-1").lower()] = bytes(self.header_value)
        self.header_field.clear()
        self.header_value.clear()

    def on_headers_finished(self) -> None:
        disposition, params = parse_options_header(self.headers.get("content-disposition", b""))
        if disposition != b"form-data" or b"name" not in params:
            raise BadMultipart("part without Content-Disposition: form-data; name=...")
        self.name = params[b"name"].decode("utf-8", "replace")
        self.form.part_names.append(self.name)
        raw_filename = params.get(b"filename")
        self.filename = raw_filename.decode("utf-8", "replace") if raw_filename else None
        ctype = self.headers.get("content-type")
        self.content_type = ctype.decode("latin-1") if ctype else None
        if raw_filename is not None:
            self.writer = BlobWriter(self.blob_dir, self.file_limit)
        else:
            self.buffer = bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.writer is not None:
            self.writer.write(data[start:end])
        elif self.buffer is not None:
            self.buffer.extend(data[start:end])
            if len(self.buffer) > MAX_FIELD_BYTES:
                raise BadMultipart(f"form field {self.name!r} is too long")

    def on_part_end(self) -> None:
        if self.writer is not None:
            self.form.files[self.name] = self.writer.finish(self.filename, self.content_type)
            self.writer = None
        elif self.buffer is not None:
            self.form.fields[self.name] = self.buffer.decode("utf-8", "replace")
            self.buffer = None

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


async def receive_multipart(
    stream: AsyncIterator[bytes], boundary: bytes, blob_dir: Path, file_limit: int | None
) -> FormData:
    """Parse a multipart body as it streams in; file parts go straight to disk."""
    collector = _PartCollector(blob_dir, file_limit)
    parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in stream:
            parser.write(chunk)
        parser.finalize()
    except TooLarge:
        collector.abort()
        await drain(stream)
        raise
    except MultipartParseError as exc:
        collector.abort()
        raise BadMultipart(str(exc)) from exc
    except BaseException:
        collector.abort()
        raise
    if collector.writer is not None or collector.buffer is not None:
        collector.abort()
        raise BadMultipart("multipart body ended inside a part")
    return collector.form
