"""Unit tests for the sandbox's building blocks (no server)."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sandbox import auth
from sandbox.blobs import BadMultipart, TooLarge, multipart_boundary, receive_multipart, receive_raw
from sandbox.errors import error_body, service_of
from sandbox.faults import TokenBuckets, iso_minute, matches, new_rule, rate_limit_headers
from sandbox.images import sniff
from sandbox.state import Config

SECRET = b"k" * 32


def test_jwt_round_trip_and_expiry() -> None:
    now = int(time.time())
    token = auth.mint_jwt(SECRET, {"iss": "client", "nbf": now, "exp": now + 60})
    assert auth.verify_jwt(SECRET, token)["iss"] == "client"
    with pytest.raises(auth.JwtError, match="expired"):
        auth.verify_jwt(SECRET, token, now=now + 61)
    with pytest.raises(auth.JwtError, match="not valid yet"):
        auth.verify_jwt(SECRET, token, now=now - 10)
    with pytest.raises(auth.JwtError, match="signature"):
        auth.verify_jwt(b"other" * 8, token)
    header, payload, _ = token.split(".")
    assert auth.peek_claims(token) == {"iss": "client", "nbf": now, "exp": now + 60}
    assert header and payload


def test_basic_parsing_and_labels() -> None:
    assert auth.parse_basic("Basic " + "YTpiOmM=") == ("a", "b:c")  # a:b:c
    assert auth.parse_basic("Basic !!!") is None
    config = Config()
    assert auth.credential_label({"authorization": f"Bearer {config.bearer}"}, config) == "awork-bearer"
    label = auth.credential_label({"authorization": "Bearer secret-value"}, config)
    assert label is not None and "secret" not in label


def test_token_bucket() -> None:
    buckets = TokenBuckets(2)
    assert buckets.take("a") == 0 and buckets.take("a") == 0
    assert buckets.take("a") >= 1
    assert buckets.take("b") == 0


def test_rate_limit_header_shapes() -> None:
    config = Config()
    jira = rate_limit_headers("jira", 5, 10, config)
    assert jira["Retry-After"] == "5" and jira["RateLimit-Reason"] == "jira-burst-based"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\dZ$", jira["X-RateLimit-Reset"])
    assert rate_limit_headers("assets", None, 10, config) == {}
    awork = rate_limit_headers("awork", 3, 10, config)
    assert "Retry-After" not in awork and awork["RateLimit-Reset"] == "3"
    assert iso_minute(0) == "1970-01-01T00:00Z"


def test_fault_rules() -> None:
    rule = new_rule({"path": "/media", "status": 429, "times": 1, "method": "post"})
    assert matches(rule, "POST", ("/media/file",))
    assert not matches(rule, "GET", ("/media/file",))
    rule.hits = 1
    assert not matches(rule, "POST", ("/media/file",))
    with pytest.raises(ValueError):
        new_rule({"path": "x"})
    with pytest.raises(ValueError):
        new_rule({"status": 500})


def test_sniff_and_services() -> None:
    assert sniff(b"\x89PNG\r\n\x1a\n....") == "image/png"
    assert sniff(b"\xff\xd8\xff\xe0") == "image/jpeg"
    assert sniff(b"GIF89a") == "image/gif"
    assert sniff(b"PK\x03\x04") is None
    assert service_of("/jsm/assets/workspace/x") == "assets"
    assert service_of("/api/v1/files/images/users/1") == "awork"
    assert error_body("awork", 401, "nope")["code"] == "workspaceid-missing"
    assert error_body("jira", 400, "bad", "size") == {
        "errorMessages": [],
        "errors": {"size": "bad"},
    }


async def _chunks(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _multipart(boundary: str, parts: list[tuple[str, str | None, bytes]]) -> bytes:
    out = b""
    for name, filename, value in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + value + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def test_receive_multipart_streams_files_to_disk(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 100
    body = _multipart("xyz", [("avatarUUID", None, b"abc"), ("file", "a.bin", payload)])
    form = asyncio.run(receive_multipart(_chunks(body), b"xyz", tmp_path, None))
    assert form.fields == {"avatarUUID": "abc"} and form.part_names == ["avatarUUID", "file"]
    blob = form.files["file"]
    assert blob.sha256 == hashlib.sha256(payload).hexdigest()
    assert blob.path.read_bytes() == payload and blob.filename == "a.bin"


def test_receive_multipart_limits_and_errors(tmp_path: Path) -> None:
    body = _multipart("b", [("file", "a.bin", b"x" * 100)])
    with pytest.raises(TooLarge):
        asyncio.run(receive_multipart(_chunks(body), b"b", tmp_path, 50))
    with pytest.raises(BadMultipart):
        asyncio.run(receive_multipart(_chunks(body[:-20]), b"b", tmp_path, None))
    assert not list((tmp_path / ".tmp").iterdir())  # aborted temp files are removed
    assert multipart_boundary("multipart/form-data") is None
    assert multipart_boundary("multipart/form-data; boundary=abc") == b"abc"


def test_receive_raw(tmp_path: Path) -> None:
    blob = asyncio.run(receive_raw(_chunks(b"hello world"), tmp_path, None))
    assert blob.size == 11 and (tmp_path / blob.sha256).read_bytes() == b"hello world"
    with pytest.raises(TooLarge):
        asyncio.run(receive_raw(_chunks(b"hello world"), tmp_path, 5))


def test_a_lost_reply_rule_answers_502_unless_told_or_cut() -> None:
    assert new_rule({"path": "/x", "lost_reply": True}).status == 502
    assert new_rule({"path": "/x", "lost_reply": True, "status": 504}).status == 504
    cut = new_rule({"path": "/x", "lost_reply": True, "cut": True})
    assert cut.cut and cut.status is None


def test_readings_are_checked_before_they_are_set() -> None:
    config = Config()
    assert config.check("media_upload", "binary") is None
    assert "media_upload must be one of" in str(config.check("media_upload", "chunked"))
    assert "true or false" in str(config.check("link_answer_body", "no"))
    assert "unknown config key" in str(config.check("nope", 1))
