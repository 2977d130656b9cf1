"""Submit-time validation of the Jira avatar, Marketplace and awork kinds (no network, no Redis:
``Ferry.validate`` only reads the config and the file's head)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from producers.client import Ferry
from producers.config import parse_config
from producers.errors import SubmitError
from producers.files import image_size
from producers.kinds import KINDS, all_step_names
from producers.params import JiraAvatarParams

CONFIG = {
    "connections": {
        "acme": {"service": "atlassian", "site_url": "https://acme.example", "api_url": "https://api.example",
                 "email": "a@example.com", "token_env": "X"},
        "marketplace": {"service": "marketplace", "base_url": "https://mp.example",
                        "email": "a@example.com", "token_env": "X"},
        "awork": {"service": "awork", "base_url": "https://aw.example", "token_env": "X"},
    }
}


@pytest.fixture
def ferry() -> Ferry:
    # redis is never contacted by validate(); the URL only has to parse.
    return Ferry("redis://127.0.0.1:1/0", config=parse_config(CONFIG))


def png(path: Path, size: tuple[int, int]) -> Path:
    buf = io.BytesIO()
    Image.new("RGB", size, "teal").save(buf, "PNG")
    path.write_bytes(buf.getvalue())
    return path


def problems(ferry: Ferry, kind: str, connection: str, params: dict[str, Any], file: str | None = None,
             uri: str | None = None) -> str:
    with pytest.raises(SubmitError) as caught:
        ferry.validate(kind, connection=connection, file=file, uri=uri, params=params)
    return str(caught.value)


def test_every_new_kind_is_declared_with_implemented_steps() -> None:
    from worker.steps import STEPS

    for name in ("jira-avatar", "jira-avatar-delete", "marketplace-artifact", "marketplace-image",
                 "marketplace-asset-delete", "awork-image", "awork-image-delete"):
        assert name in KINDS
    assert all_step_names() <= set(STEPS)


# ---- jira-avatar -------------------------------------------------------------------------------
def test_default_crop_is_the_largest_centred_square() -> None:
    params = JiraAvatarParams(type="project", owner="1")
    assert params.crop(64, 48) == (8, 0, 48)
    assert params.crop(30, 50) == (0, 10, 30)
    assert JiraAvatarParams(type="project", owner="1", size=10).crop(64, 48) == (27, 19, 10)
    assert JiraAvatarParams(type="project", owner="1", x=60).crop(64, 48) == (60, 22, 4)


def test_crop_inside_the_image_is_accepted(ferry: Ferry, tmp_path: Path) -> None:
    image = png(tmp_path / "a.png", (64, 48))
    _, _, info = ferry.validate("jira-avatar", connection="acme", file=str(image),
                                params={"type": "project", "owner": "10000", "x": "16", "y": "0",
                                        "size": "48"})
    assert info is not None and (info.width, info.height) == (64, 48)


@pytest.mark.parametrize("crop", [{"x": "20", "y": "0", "size": "48"}, {"size": "49"},
                                  {"x": "64"}, {"y": "0", "x": "0", "size": "100"}])
def test_crop_outside_the_image_is_refused(ferry: Ferry, tmp_path: Path, crop: dict[str, str]) -> None:
    image = png(tmp_path / "a.png", (64, 48))
    text = problems(ferry, "jira-avatar", "acme", {"type": "project", "owner": "1", **crop}, str(image))
    assert "outside the 64x48 image" in text


def phone_jpeg(path: Path, size: tuple[int, int], exif_bytes: int = 20_000) -> Path:
    """A JPEG as phones write them: a large EXIF block (APP1) before the frame header."""
    exif = Image.Exif()
    exif[0x010E] = "x" * exif_bytes  # ImageDescription
    buf = io.BytesIO()
    Image.new("RGB", size, "teal").save(buf, "JPEG", exif=exif)
    path.write_bytes(buf.getvalue())
    return path


def test_a_jpeg_whose_exif_fills_the_first_8_kb_still_has_its_crop_checked(
        ferry: Ferry, tmp_path: Path) -> None:
    image = phone_jpeg(tmp_path / "phone.jpg", (64, 48))
    assert image.read_bytes().index(b"\xff\xc0") > 8192  # the frame header lies past 8 KB
    text = problems(ferry, "jira-avatar", "acme", {"type": "project", "owner": "1", "size": "49"},
                    str(image))
    assert "outside the 64x48 image" in text
    _, _, info = ferry.validate("jira-avatar", connection="acme", file=str(image),
                                params={"type": "project", "owner": "1"})
    assert info is not None and (info.mime_type, info.width, info.height) == ("image/jpeg", 64, 48)


@pytest.mark.parametrize("image_format", ["GIF", "BMP", "WEBP", "TIFF"])
def test_dimensions_are_read_for_every_image_kind(tmp_path: Path, image_format: str) -> None:
    path = tmp_path / f"a.{image_format.lower()}"
    Image.new("RGB", (33, 21), "teal").save(path, image_format)
    assert image_size(path) == (33, 21)


def test_jira_avatar_refuses_unknown_type_and_non_images(ferry: Ferry, tmp_path: Path) -> None:
    doc = tmp_path / "a.txt"
    doc.write_text("hello")
    text = problems(ferry, "jira-avatar", "acme", {"type": "user", "owner": "1"}, str(doc))
    assert "type" in text and "text/plain" in text


def test_jira_avatar_needs_an_atlassian_connection(ferry: Ferry, tmp_path: Path) -> None:
    image = png(tmp_path / "a.png", (8, 8))
    assert "needs atlassian" in problems(ferry, "jira-avatar", "awork", {"type": "project", "owner": "1"},
                                         str(image))


def test_jira_avatar_delete_takes_no_file(ferry: Ferry, tmp_path: Path) -> None:
    image = png(tmp_path / "a.png", (8, 8))
    text = problems(ferry, "jira-avatar-delete", "acme",
                    {"type": "project", "owner": "1", "avatar": "10500"}, str(image))
    assert "takes no file" in text


# ---- marketplace -------------------------------------------------------------------------------
def test_artifact_must_be_jar_or_obr(ferry: Ferry, tmp_path: Path) -> None:
    zip_file = tmp_path / "app.zip"
    zip_file.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    assert ".jar or .obr" in problems(ferry, "marketplace-artifact", "marketplace", {}, str(zip_file))
    assert ".jar or .obr" in problems(ferry, "marketplace-artifact", "marketplace", {},
                                      uri="https://example.com/app.zip")
    jar = tmp_path / "app.jar"
    jar.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    ferry.validate("marketplace-artifact", connection="marketplace", file=str(jar), params={})
    ferry.validate("marketplace-artifact", connection="marketplace", uri="https://example.com/a.obr",
                   params={})


def test_artifact_needs_a_file_or_uri(ferry: Ferry) -> None:
    assert "required" in problems(ferry, "marketplace-artifact", "marketplace", {})


def test_image_type_must_be_a_declared_one(ferry: Ferry, tmp_path: Path) -> None:
    image = png(tmp_path / "a.png", (8, 8))
    text = problems(ferry, "marketplace-image", "marketplace", {"image_type": "wallpaper"}, str(image))
    assert "image_type" in text and "logo" in text
    ferry.validate("marketplace-image", connection="marketplace", file=str(image),
                   params={"image_type": "logo"})


def test_icon_is_not_a_v2_image_key_and_the_refusal_lists_the_keys(ferry: Ferry, tmp_path: Path) -> None:
    image = png(tmp_path / "a.png", (8, 8))
    text = problems(ferry, "marketplace-image", "marketplace", {"image_type": "icon"}, str(image))
    for key in ("logo", "banner", "screenshot", "screenshot-thumbnail", "hero", "title-logo"):
        assert f"'{key}'" in text
    assert text.startswith("image_type:") and "'icon'" not in text


def test_asset_delete_needs_the_asset_name(ferry: Ferry) -> None:
    assert "asset" in problems(ferry, "marketplace-asset-delete", "marketplace", {})


# ---- awork -------------------------------------------------------------------------------------
def test_awork_refuses_files_over_100_mb(ferry: Ferry, tmp_path: Path) -> None:
    big = png(tmp_path / "big.png", (8, 8))
    with big.open("r+b") as fh:  # sparse: a PNG head, then 101 MiB of holes (sniffing reads the head)
        fh.truncate(101 * 1024 * 1024)
    text = problems(ferry, "awork-image", "awork", {"entity": "users", "id": "u1"}, str(big))
    assert "the limit is 100000000 bytes" in text


def test_awork_entity_must_be_one_of_six(ferry: Ferry, tmp_path: Path) -> None:
    image = png(tmp_path / "a.png", (8, 8))
    text = problems(ferry, "awork-image", "awork", {"entity": "tasks", "id": "x"}, str(image))
    assert "entity" in text and "workspaces" in text
    ferry.validate("awork-image", connection="awork", file=str(image),
                   params={"entity": "workspaces", "id": "x"})
    ferry.validate("awork-image-delete", connection="awork", params={"entity": "users", "id": "x"})
