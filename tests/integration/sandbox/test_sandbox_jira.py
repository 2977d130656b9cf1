"""Jira platform avatars: list, load (raw body), set current, view, delete."""

from __future__ import annotations

import io
from typing import Any

import pytest
import requests
from PIL import Image

from sandbox.testing import SandboxControl
from tests.integration.sandbox.util import XSRF, image_bytes

API = "/rest/api/3"


def load(
    sb: SandboxControl,
    data: bytes,
    ctype: str = "image/png",
    avatar_type: str = "project",
    owner: str | None = None,
    headers: dict[str, str] | None = None,
    **params: Any,
) -> requests.Response:
    owner = owner or sb.seed()[f"{avatar_type}_id"]
    params.setdefault("size", 0)
    return requests.post(
        f"{sb.url}{API}/universal_avatar/type/{avatar_type}/owner/{owner}",
        params=params,
        data=data,
        headers={**XSRF, "Content-Type": ctype} if headers is None else headers,
        auth=sb.basic,
        timeout=10,
    )


def pixels(content: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(content)) as img:
        return img.size


def test_system_and_owner_lists(sandbox: SandboxControl) -> None:
    system = requests.get(f"{sandbox.url}{API}/avatar/priority/system", timeout=5).json()
    assert system["system"] and all(a["isSystemAvatar"] for a in system["system"])
    seed = sandbox.seed()
    owner = requests.get(
        f"{sandbox.url}{API}/universal_avatar/type/project/owner/{seed['project_id']}",
        auth=sandbox.basic,
        timeout=5,
    ).json()
    assert owner["custom"] == [] and any(a["isSelected"] for a in owner["system"])
    assert requests.get(f"{sandbox.url}{API}/avatar/nope/system", timeout=5).status_code == 404


@pytest.mark.parametrize("avatar_type", ["project", "issuetype", "priority"])
def test_load_avatar_for_each_type(sandbox: SandboxControl, avatar_type: str) -> None:
    response = load(sandbox, image_bytes((80, 60)), avatar_type=avatar_type, x=10, y=5, size=50)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["isSystemAvatar"] is False and body["isDeletable"] is True
    assert set(body["urls"]) == {"16x16", "24x24", "32x32", "48x48"}


def test_load_accepts_project_key_and_jpeg(sandbox: SandboxControl) -> None:
    response = load(sandbox, image_bytes(fmt="JPEG"), "image/jpeg", owner="FERRY")
    assert response.status_code == 201, response.text


def test_content_type_not_matching_the_image_is_refused(sandbox: SandboxControl) -> None:
    response = load(sandbox, image_bytes(fmt="JPEG"), "image/png")
    assert response.status_code == 400
    assert "does not match" in response.json()["errorMessages"][0]
    octet = load(sandbox, image_bytes(), "application/octet-stream")
    assert octet.status_code == 400


def test_multipart_instead_of_raw_body_is_refused(sandbox: SandboxControl) -> None:
    seed = sandbox.seed()
    response = requests.post(
        f"{sandbox.url}{API}/universal_avatar/type/project/owner/{seed['project_id']}",
        params={"size": 0},
        files={"file": ("a.png", image_bytes(), "image/png")},
        headers=XSRF,
        auth=sandbox.basic,
        timeout=5,
    )
    assert response.status_code == 400


def test_crop_outside_the_image_is_refused(sandbox: SandboxControl) -> None:
    response = load(sandbox, image_bytes((64, 48)), x=20, y=0, size=48)
    assert response.status_code == 400
    assert "beyond the edge" in response.json()["errorMessages"][0]


def test_missing_size_xsrf_type_and_entity(sandbox: SandboxControl) -> None:
    seed = sandbox.seed()
    url = f"{sandbox.url}{API}/universal_avatar/type/project/owner/{seed['project_id']}"
    no_size = requests.post(
        url,
        data=image_bytes(),
        headers={**XSRF, "Content-Type": "image/png"},
        auth=sandbox.basic,
        timeout=5,
    )
    assert no_size.status_code == 400 and "size" in no_size.json()["errors"]
    no_xsrf = load(sandbox, image_bytes(), headers={"Content-Type": "image/png"})
    assert no_xsrf.status_code == 403 and no_xsrf.text == "XSRF check failed"
    assert load(sandbox, image_bytes(), avatar_type="user", owner="x").status_code == 404
    assert load(sandbox, image_bytes(), owner="NOPE").status_code == 404
    unauth = requests.post(url, params={"size": 0}, data=image_bytes(), timeout=5)
    assert unauth.status_code == 401
    temp = requests.post(f"{sandbox.url}{API}/project/FERRY/avatar/temporary", auth=sandbox.basic, timeout=5)
    assert temp.status_code == 405


def test_set_current_avatars(sandbox: SandboxControl) -> None:
    seed = sandbox.seed()
    project_avatar = load(sandbox, image_bytes()).json()["id"]
    put = requests.put(
        f"{sandbox.url}{API}/project/{seed['project_id']}/avatar",
        json={"id": project_avatar},
        auth=sandbox.basic,
        timeout=5,
    )
    assert put.status_code == 204
    owner = requests.get(
        f"{sandbox.url}{API}/universal_avatar/type/project/owner/{seed['project_id']}",
        auth=sandbox.basic,
        timeout=5,
    ).json()
    assert owner["custom"][0]["isSelected"] is True
    it_avatar = load(sandbox, image_bytes(), avatar_type="issuetype").json()["id"]
    it_url = f"{sandbox.url}{API}/issuetype/{seed['issuetype_id']}"
    refused = requests.put(it_url, json={"avatarId": int(project_avatar)}, auth=sandbox.basic)
    assert refused.status_code == 400
    updated = requests.put(it_url, json={"avatarId": int(it_avatar)}, auth=sandbox.basic)
    assert updated.status_code == 200 and updated.json()["avatarId"] == int(it_avatar)
    unknown = requests.put(it_url, json={"avatar": 1}, auth=sandbox.basic)
    assert unknown.status_code == 400
    pr_avatar = load(sandbox, image_bytes(), avatar_type="priority").json()["id"]
    pr_url = f"{sandbox.url}{API}/priority/{seed['priority_id']}"
    assert requests.put(pr_url, json={"avatarId": int(pr_avatar)}, auth=sandbox.basic).status_code == 204
    assert requests.get(pr_url, auth=sandbox.basic).json()["avatarId"] == int(pr_avatar)


def test_view_images_by_type_id_and_owner(sandbox: SandboxControl) -> None:
    seed = sandbox.seed()
    avatar_id = load(sandbox, image_bytes((100, 100), colour="red")).json()["id"]
    requests.put(
        f"{sandbox.url}{API}/project/{seed['project_id']}/avatar",
        json={"id": avatar_id},
        auth=sandbox.basic,
        timeout=5,
    )
    view = f"{sandbox.url}{API}/universal_avatar/view/type/project"
    for size, px in (("xsmall", 16), ("small", 24), ("medium", 32), ("large", 48), ("xlarge", 64)):
        for url in (view, f"{view}/avatar/{avatar_id}", f"{view}/owner/{seed['project_id']}"):
            response = requests.get(url, params={"size": size, "format": "png"}, timeout=5)
            assert response.status_code == 200
            assert response.headers["content-type"] == "image/png"
            assert pixels(response.content) == (px, px)
    owner_png = requests.get(f"{view}/owner/FERRY", params={"size": "xsmall"}, timeout=5)
    with Image.open(io.BytesIO(owner_png.content)) as img:
        assert img.convert("RGB").getpixel((8, 8)) == (255, 0, 0)
    svg = requests.get(f"{view}/avatar/{avatar_id}", params={"format": "svg"}, timeout=5)
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.content.startswith(b"<svg")
    assert requests.get(view, params={"size": "huge"}, timeout=5).status_code == 400
    assert requests.get(f"{view}/avatar/99999", timeout=5).status_code == 404
    listed = load(sandbox, image_bytes()).json()
    assert requests.get(listed["urls"]["48x48"], timeout=5).content.startswith(b"\x89PNG")


def test_delete_custom_and_system_avatars(sandbox: SandboxControl) -> None:
    seed = sandbox.seed()
    avatar_id = load(sandbox, image_bytes()).json()["id"]
    base = f"{sandbox.url}{API}/universal_avatar/type/project/owner/{seed['project_id']}/avatar"
    assert requests.delete(f"{base}/{avatar_id}", auth=sandbox.basic).status_code == 204
    assert requests.delete(f"{base}/{avatar_id}", auth=sandbox.basic).status_code == 404
    system = requests.get(f"{sandbox.url}{API}/avatar/project/system").json()["system"][0]["id"]
    assert requests.delete(f"{base}/{system}", auth=sandbox.basic).status_code == 403
