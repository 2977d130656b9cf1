"""File references, checked at submit time: exists, inside a configured root, type sniffed from
content (never trusted from the name), size within the kind's cap. Reads the first 8 KB, and
an image's headers for its dimensions; never the whole file. A URL must be https:// and name a
public host (``uri_problem``), which the worker checks again before it uses one."""

from __future__ import annotations

import io
import mimetypes
import os
import socket
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import filetype
from filetype.types import TYPES as FILETYPE_MATCHERS
from filetype.types.document import ZippedDocumentBase
from filetype.types.video import Mkv, Webm

from producers.addresses import IPAddress, address_kind, parse
from producers.config import FerryConfig
from producers.errors import Problem
from producers.records import FileInfo

SNIFF_BYTES = 8192


@dataclass(frozen=True)
class FileRule:
    """What a kind accepts as its file."""

    required: bool = True
    uri_allowed: bool = False  # a URL instead of a path (https://, public hosts: see uri_problem)
    mime_types: tuple[str, ...] = ()  # sniffed types accepted; empty: any
    extensions: tuple[str, ...] = ()  # accepted name endings (".jar"); empty: any
    max_bytes: int | None = None
    image: bool = False  # read width/height from the image's headers (any kind Pillow opens)


def inspect_path(path: str, rule: FileRule, roots: tuple[str, ...]) -> tuple[FileInfo | None, list[Problem]]:
    """What ``path`` holds, or why a job may not name it: outside ``roots`` (once symlinks are
    followed), not a regular file, not readable; then ``rule``'s checks on its sniffed type and
    size. The worker checks the file again when it opens it; this is the submitter's early error."""
    # "~user" paths go by name: Path.expanduser's errors (no such user) are the caller's to word.
    opened = _open_inspected(path) if _PROC_FD and not path.startswith("~") else None
    if opened is None:
        return _inspect_by_name(path, rule, roots)
    fd, real = opened
    try:
        if roots and not _within_resolved_roots(real, roots):
            return None, [_outside(path, roots)]
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, [Problem("file", f"no such file: {path}")]
        try:
            # Reopened through the descriptor's /proc link: the very file checked above, never
            # what the name points at by now; only a regular file gets a real open (O_PATH opens
            # nothing, so no device or FIFO sees one). O_NONBLOCK all the same.
            data = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except PermissionError:
            return None, [Problem("file", f"not readable: {path}")]
        except OSError:
            return _inspect_by_name(path, rule, roots)
        try:
            head = read_head(data)
            name = os.path.basename(real)
            info = FileInfo(path=real, name=name, size=st.st_size, mime_type=sniff_mime(head, name))
            if rule.image:
                # A file object only here: building one costs more than the sniff's read.
                with open(data, "rb", closefd=False) as fh:
                    dims = image_size(fh)
                if dims:
                    info.width, info.height = dims
        finally:
            os.close(data)
    finally:
        os.close(fd)
    return info, check_rule(info, rule)


def read_head(fd: int) -> bytes:
    """The first SNIFF_BYTES of the file (fewer if it is shorter); a network file system may
    answer a read short."""
    head = os.pread(fd, SNIFF_BYTES, 0)
    while len(head) < SNIFF_BYTES:
        more = os.pread(fd, SNIFF_BYTES - len(head), len(head))
        if not more:
            break
        head += more
    return head


# Linux names an open descriptor's file at /proc/self/fd/N: one readlink gives the real path,
# where os.path.realpath costs an lstat per component. Elsewhere (no /proc): the names' way.
_PROC_FD = os.path.isdir("/proc/self/fd") and hasattr(os, "O_PATH")


def _open_inspected(path: str) -> tuple[int, str] | None:
    """An O_PATH descriptor of what ``path`` names (symlinks followed) and that file's real path,
    or None: then ``_inspect_by_name`` looks again and says what is wrong (missing, unreadable,
    outside the roots: in the same order and words as always)."""
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except (OSError, ValueError):
        return None
    try:
        real = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        real = ""
    # A file unlinked meanwhile reads "<path> (deleted)"; anything not absolute is no file name.
    if not real.startswith("/") or real.endswith(" (deleted)"):
        os.close(fd)
        return None
    return fd, real


def _inspect_by_name(path: str, rule: FileRule, roots: tuple[str, ...]) -> tuple[FileInfo | None, list[Problem]]:
    """``inspect_path`` through the name (realpath, stat, open): where /proc is missing, and for
    every path that cannot be opened, whose error this words."""
    resolved = Path(path).expanduser().resolve()
    if roots and not is_within_roots(resolved, roots):
        return None, [_outside(path, roots)]
    if not resolved.is_file():
        return None, [Problem("file", f"no such file: {path}")]
    if not os.access(resolved, os.R_OK):
        return None, [Problem("file", f"not readable: {path}")]
    size = resolved.stat().st_size
    with resolved.open("rb") as fh:
        head = fh.read(SNIFF_BYTES)
        info = FileInfo(path=str(resolved), name=resolved.name, size=size,
                        mime_type=sniff_mime(head, resolved.name))
        if rule.image:
            fh.seek(0)
            dims = image_size(fh)
            if dims:
                info.width, info.height = dims
    return info, check_rule(info, rule)


def _outside(path: str, roots: tuple[str, ...]) -> Problem:
    return Problem("file", f"{path} is outside the allowed roots ({', '.join(roots)})")


def inspect_uri(uri: str, rule: FileRule, config: FerryConfig) -> tuple[FileInfo | None, list[Problem]]:
    if not rule.uri_allowed:
        return None, [Problem("uri", "this kind takes a file, not a URL")]
    try:
        refused = uri_problem(uri, config)
    except OSError:
        refused = None  # the host does not resolve from here: the worker checks again before use
    if refused:
        return None, [Problem("uri", refused)]
    name = Path(urlsplit(uri).path).name or "download"
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
    kind = filetype.match(head, _matchers_for(head))
    if kind is not None:
        return str(kind.mime)
    guessed, _ = mimetypes.guess_type(name)
    if guessed and (guessed.startswith("text/") or guessed in ("application/json", "application/xml")):
        return guessed if _looks_textual(head) else "application/octet-stream"
    return "application/octet-stream"


# filetype tries its ~80 matchers in turn; the six zipped-document ones and the two Matroska
# ones scan the whole window for a signature although they can only match a head that starts
# with theirs (a third of a sniff). Leaving them out for other heads changes no answer.
_GATED_MATCHERS = ((ZippedDocumentBase, b"PK\x03\x04"), ((Mkv, Webm), b"\x1a\x45\xdf\xa3"))


def _matchers_without_gated(gate: bytes | None) -> tuple[Any, ...]:
    """filetype's matchers in its order, less the gated ones not opened by ``gate``."""
    return tuple(m for m in FILETYPE_MATCHERS
                 if not any(isinstance(m, cls) and gate != opening for cls, opening in _GATED_MATCHERS))


_MATCHERS = {opening: _matchers_without_gated(opening) for _, opening in _GATED_MATCHERS}
_MATCHERS_PLAIN = _matchers_without_gated(None)


def _matchers_for(head: bytes) -> tuple[Any, ...]:
    return _MATCHERS.get(head[:4], _MATCHERS_PLAIN)


def _looks_textual(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start > len(head) - 4  # a multibyte char cut by the sniff window is fine
    return b"\x00" not in head


def image_size(source: Path | bytes | BinaryIO) -> tuple[int, int] | None:
    """(width, height) of an image file (its path, its bytes, or a file open at its start) of
    any kind Pillow knows, or None.

    ``Image.open`` is lazy: it parses the headers up to the frame size (past an EXIF block of any
    size, which phones put first) and decodes no pixels, so this costs a few reads however large
    the image is. (Pillow is imported here: most submissions carry no image.)
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            width, height = image.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        # Not an image, a truncated header, or more pixels than Pillow opens: the size is
        # unknown here, and the worker (or the destination) has the last word.
        return None
    return int(width), int(height)


def is_within_roots(resolved: Path, roots: tuple[str, ...]) -> bool:
    """Whether an already resolved path lies in (or is) one of ``roots`` (resolved here)."""
    return any(_is_within(resolved, Path(r).expanduser().resolve()) for r in roots)


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


# Submit-time roots, resolved: roots tuple -> (each root's real path, that + "/"). Resolving them
# was a quarter of a file's check when done per file. A root retargeted at runtime (a symlink
# swapped) is seen at the next refusal: "outside" is always decided on freshly resolved roots,
# so a cached answer can only let a file pass that the worker, resolving its roots per upload,
# then refuses; it never refuses a file wrongly.
_resolved_roots: dict[tuple[str, ...], tuple[tuple[str, str], ...]] = {}
_resolved_roots_lock = threading.Lock()


def _within_resolved_roots(real: str, roots: tuple[str, ...]) -> bool:
    """``is_within_roots`` for a real path (no symlink, no ``..``), on cached resolved roots."""
    cached = _resolved_roots.get(roots)
    if cached is not None and _within(real, cached):
        return True
    fresh = tuple((root, root.rstrip("/") + "/")
                  for root in (str(Path(r).expanduser().resolve()) for r in roots))
    with _resolved_roots_lock:
        if len(_resolved_roots) > 64:  # configs come and go in tests; a server has one
            _resolved_roots.clear()
        _resolved_roots[roots] = fresh
    return _within(real, fresh)


def _within(real: str, roots: tuple[tuple[str, str], ...]) -> bool:
    return any(real == root or real.startswith(prefix) for root, prefix in roots)


# ---- URLs --------------------------------------------------------------------------------------
def uri_problem(uri: str, config: FerryConfig) -> str | None:
    """Why a job may not take its file from ``uri`` under ``config``, or None if it may.

    https:// only, unless ``[files] allow_http_uris``; a host that is, or resolves to, any
    loopback, private, link-local or metadata address is refused unless ``[files]
    allow_private_uris`` (every address of the name counts: one private among public ones is
    enough to refuse). Raises ``OSError`` when the host does not resolve: the caller decides
    (submit lets it pass, since the worker checks again; the worker waits and tries again).
    """
    parts = urlsplit(uri)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "must be an https:// URL"
    if parts.scheme == "http" and not config.allow_http_uris:
        return "must be an https:// URL (plain http:// needs [files] allow_http_uris = true)"
    if config.allow_private_uris:
        return None
    for address in resolve_host(parts.hostname):
        kind = address_kind(address)
        if kind is not None:
            shown = parts.hostname if parts.hostname == str(address) else f"{parts.hostname} ({address})"
            return (f"{shown} is a {kind} address; such hosts need [files] "
                    "allow_private_uris = true")
    return None


def resolve_host(host: str) -> list[IPAddress]:
    """The addresses a URL's host names: itself if it is a literal, else what DNS answers."""
    try:
        return [parse(host)]
    except ValueError:
        pass
    answers = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return [parse(str(sockaddr[0])) for *_, sockaddr in answers]
