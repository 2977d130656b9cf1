"""Image helpers (Pillow): sniff the real type, read dimensions, render renditions.

Sniffing uses magic bytes, not the client's Content-Type, because the whole point is to catch
clients whose declared type does not match the bytes they send.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image

MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)
PIL_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/bmp": "BMP"}


def sniff(head: bytes) -> str | None:
    """MIME type from the first bytes, or None if it is not an image we know."""
    for magic, mime in MAGIC:
        if head.startswith(magic):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def sniff_file(path: Path) -> str | None:
    with open(path, "rb") as fh:
        return sniff(fh.read(16))


def dimensions(path: Path) -> tuple[int, int] | None:
    """(width, height) without decoding pixels (Pillow reads the header lazily)."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _encode(img: Image.Image, mime: str = "image/png") -> bytes:
    out = io.BytesIO()
    fmt = PIL_FORMATS.get(mime, "PNG")
    if fmt == "JPEG" and img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    img.save(out, format=fmt)
    return out.getvalue()


def solid_png(size: int, seed: int) -> bytes:
    """A deterministic one-colour PNG (system avatars, default icons)."""
    color = ((seed * 53) % 256, (seed * 97) % 256, (seed * 193) % 256)
    return _encode(Image.new("RGB", (size, size), color))


def rendition(path: Path, box: tuple[int, int, int, int] | None, size: int, mime: str = "image/png") -> bytes:
    """Crop `box` (left, top, right, bottom) out of the stored image and scale to size x size."""
    with Image.open(path) as img:
        img.seek(0)
        frame = img.convert("RGBA") if mime == "image/png" else img.convert("RGB")
        if box is not None:
            frame = frame.crop(box)
        frame = frame.resize((size, size))
        return _encode(frame, mime)


def svg_wrapping(png: bytes, size: int) -> bytes:
    """An SVG document embedding a PNG rendition (what `format=svg` returns here)."""
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
        f'viewBox="0 0 {size} {size}"><image width="{size}" height="{size}" '
        f'href="data:image/png;base64,{data}"/></svg>'
    ).encode()
