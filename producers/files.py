"""File references, checked at submit time: exists, inside a configured root, type sniffed from
content (never trusted from the name), size within the kind's cap. Reads the first 8 KB, and
an image's headers for its dimensions; never the whole file."""

from __future__ import annotations

import io
import mimetypes
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import filetype
from PIL import Image

from producers.errors import Problem
from producers.records import FileInfo

SNIFF_BYTES = 8192


@dataclass(frozen=True)
class FileRule:
    """What a kind accepts as its file."""

    required: bool = True
    uri_allowed: bool = False  # an https:// (or, for tests, loopback http://) URL instead of a path
    mime_types: tuple[str, ...] = ()  # sniffed types accepted; empty: any
    extensions: tuple[str, ...] = ()  # accepted name endings (".jar"); empty: any
    max_bytes: int | None = None
    image: bool = False  # read width/height from the image's headers (any kind Pillow opens)


def inspect_path(path: str, rule: FileRule, roots: tuple[str, ...]) -> tuple[FileInfo | None, list[Problem]]:
    resolved = Path(path).expanduser().resolve()
    if roots and not any(_is_within(resolved, Path(r).expanduser().resolve()) for r in roots):
        return None, [Problem("file", f"{path} is outside the allowed roots ({', '.join(roots)})")]
    if not resolved.is_file():
        return None, [Problem("file", f"no such file: {path}")]
    if not os.access(resolved, os.R_OK):
        return None, [Problem("file", f"not readable: {path}")]
    size = resolved.stat().st_size
    with resolved.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
    info = FileInfo(path=str(resolved), name=resolved.name, size=size, mime_type=sniff_mime(head, resolved.name))
    if rule.image:
        dims = image_size(resolved)
        if dims:
            info.width, info.height = dims
    return info, check_rule(info, rule)


def inspect_uri(uri: str, rule: FileRule) -> tuple[FileInfo | None, list[Problem]]:
    if not rule.uri_allowed:
        return None, [Problem("uri", "this kind takes a file, not a URL")]
    parts = urlsplit(uri)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        return None, [Problem("uri", "must be an https:// URL")]
    name = Path(parts.path).name or "download"
    info = FileInfo(uri=uri, name=name)
    problems = []
    if rule.extensions and not name.lower().endswith(rule.extensions):
        problems.append(Problem("uri", f"{name}: expected {' or '.join(rule.extensions)}"))
    return info, problems


def check_rule(info: FileInfo, rule: FileRule) -> list[Problem]:
    problems = []
    if rule.extensions and not info.name.lower().endswith(rule.extensions):
        problems.append(Problem("file", f"{info.name}: expected {' or '.join(rule.extensions)}"))
    if rule.mime_types and info.mime_type not in rule.mime_types:
        problems.append(Problem(
            "file", f"{info.name} is {info.mime_type}; accepted: {', '.join(rule.mime_types)}"))
    if rule.max_bytes is not None and info.size is not None and info.size > rule.max_bytes:
        problems.append(Problem(
            "file", f"{info.name} is {info.size} bytes; the limit is {rule.max_bytes} bytes"))
    return problems


def sniff_mime(head: bytes, name: str) -> str:
    """Type from the leading bytes. Only formats without a signature (plain text, CSV, JSON…) fall
    back to the name, and anything unknown is ``application/octet-stream``."""
    kind = filetype.guess(head)
    if kind is not None:
        return str(kind.mime)
    guessed, _ = mimetypes.guess_type(name)
    if guessed and (guessed.startswith("text/") or guessed in ("application/json", "application/xml")):
        return guessed if _looks_textual(head) else "application/octet-stream"
    return "application/octet-stream"


def _looks_textual(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start > len(head) - 4  # a multibyte char cut by the sniff window is fine
    return b"\x00" not in head


def image_size(source: Path | bytes) -> tuple[int, int] | None:
    """(width, height) of an image file (or its bytes) of any kind Pillow knows, or None.

    ``Image.open`` is lazy: it parses the headers up to the frame size (past an EXIF block of any
    size, which phones put first) and decodes no pixels, so this costs a few reads however large
    the image is.
    """
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            width, height = image.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        # Not an image, a truncated header, or more pixels than Pillow opens: the size is
        # unknown here, and the worker (or the destination) has the last word.
        return None
    return int(width), int(height)


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
