"""Bad input gets a clear error listing every problem, and nothing is enqueued."""

from __future__ import annotations

from pathlib import Path

import fakeredis
import pytest

from producers.client import Ferry
from producers.config import parse_config
from producers.errors import SubmitError
from producers.files import image_size, sniff_mime

PNG_1x1 = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d4944415478da63f8cfc0f01f0005000201e0a8a5a30000000049454e44ae426082")


@pytest.fixture
def ferry(tmp_path: Path) -> Ferry:
    config = parse_config({"connections": {"acme": {
        "service": "atlassian", "site_url": "https://acme.example", "api_url": "https://api.example",
        "email": "a@b.c", "token_env": "X"}}, "files": {"roots": [str(tmp_path)]}})
    return Ferry(config=config, redis_client=fakeredis.FakeRedis(decode_responses=True))


def problems(exc: pytest.ExceptionInfo[SubmitError]) -> dict[str, str]:
    return {p.field: p.message for p in exc.value.problems}


def test_every_problem_is_listed_at_once(ferry, tmp_path):
    with pytest.raises(SubmitError) as exc:
        ferry.validate("assets-avatar", connection="nope", file=str(tmp_path / "missing.png"),
                       params={"object_type": "x"})
    found = problems(exc)
    assert "unknown connection 'nope'" in found["connection"]
    assert "no such file" in found["file"]
    assert "object_type" in found


def test_object_and_attributes_are_exclusive(ferry, tmp_path):
    (tmp_path / "a.png").write_bytes(PNG_1x1)
    with pytest.raises(SubmitError) as exc:
        ferry.validate("assets-avatar", connection="acme", file=str(tmp_path / "a.png"),
                       params={"object_type": 2, "object": "1", "attributes": "{}"})
    assert "exactly one of object" in str(exc.value)


def test_avatar_must_be_an_image_by_content_not_by_name(ferry, tmp_path):
    fake = tmp_path / "logo.png"
    fake.write_bytes(b"%PDF-1.4 not an image")
    with pytest.raises(SubmitError) as exc:
        ferry.validate("assets-avatar", connection="acme", file=str(fake), params={"object_type": 2, "object": "1"})
    assert "application/pdf" in problems(exc)["file"]


def test_files_outside_the_roots_are_refused(ferry, tmp_path):
    with pytest.raises(SubmitError) as exc:
        ferry.validate("assets-attachment", connection="acme", file="/etc/hostname", params={"object": "1"})
    assert "outside the allowed roots" in problems(exc)["file"]


def test_nothing_is_stored_when_validation_fails(ferry, tmp_path):
    with pytest.raises(SubmitError):
        ferry.submit("assets-attachment", connection="acme", file=str(tmp_path / "nope"), params={"object": "1"})
    assert ferry.store.list().jobs == []


def test_shorthand_attributes_become_assets_attribute_list(ferry, tmp_path):
    (tmp_path / "a.png").write_bytes(PNG_1x1)
    _, params, info = ferry.validate("assets-avatar", connection="acme", file=str(tmp_path / "a.png"),
                                     params={"object_type": "2", "attributes": '{"11": "Laptop"}'})
    assert params.model_dump()["attributes"] == [
        {"objectTypeAttributeId": "11", "objectAttributeValues": [{"value": "Laptop"}]}]
    assert (info.mime_type, info.width, info.height) == ("image/png", 1, 1)


def test_mime_is_sniffed_and_text_needs_to_look_like_text():
    assert sniff_mime(PNG_1x1, "x.txt") == "image/png"
    assert sniff_mime(b"hello\n", "notes.txt") == "text/plain"
    assert sniff_mime(b"\x00\x01\x02binary", "notes.txt") == "application/octet-stream"
    assert image_size(PNG_1x1) == (1, 1)
