"""Assets gateway: workspace discovery, avatar upload, objects, attachments (3-step flow)."""

from __future__ import annotations

import uuid

import requests

from sandbox.testing import SandboxControl
from tests.integration.sandbox.util import (
    XSRF,
    assets_url,
    credentials,
    image_bytes,
    media_upload,
    sha256,
    upload_assets_avatar,
)


def test_workspace_discovery(sandbox: SandboxControl) -> None:
    url = f"{sandbox.url}/rest/servicedeskapi/assets/workspace"
    body = requests.get(url, auth=sandbox.basic, timeout=5).json()
    assert body["values"] == [{"workspaceId": sandbox.seed()["workspace_id"]}]
    assert body["isLastPage"] is True
    denied = requests.get(url, auth=(sandbox.email, "wrong"), timeout=5)
    assert denied.status_code == 401
    assert "errorMessages" in denied.json()


def test_avatar_upload_returns_new_server_uuid_and_real_previews(sandbox: SandboxControl) -> None:
    client_uuid = str(uuid.uuid4())
    response = upload_assets_avatar(sandbox, client_uuid)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["avatarUUID"] != client_uuid
    assert body["workspaceId"] == sandbox.seed()["workspace_id"]
    for n in (16, 48, 72, 144, 288):
        assert body[f"url{n}"].endswith(f"/v1/avatar/{body['avatarUUID']}/preview_{n}.png")
    preview = requests.get(body["url48"], auth=sandbox.basic, timeout=5)
    assert preview.status_code == 200
    assert preview.headers["content-type"] == "image/png"
    assert preview.content.startswith(b"\x89PNG")
    stored = [u for u in sandbox.uploads() if u["route"] == "avatar/upload"]
    assert stored[0]["sha256"] == sha256(image_bytes())
    assert sandbox.file_bytes(stored[0]["sha256"]) == image_bytes()


def test_avatar_upload_without_xsrf_header_is_refused(sandbox: SandboxControl) -> None:
    seed = sandbox.seed()
    for headers in ({}, {"X-Atlassian-Token": "nocheck"}):
        response = requests.post(
            assets_url(sandbox, "avatar/upload"),
            auth=sandbox.basic,
            headers=headers,
            files={
                "rlabs-insight-object-avatar": ("a.png", image_bytes(), "image/png"),
                "avatarUUID": (None, str(uuid.uuid4())),
                "objectTypeId": (None, seed["object_type_id"]),
            },
            timeout=5,
        )
        assert response.status_code == 403
        assert response.text == "XSRF check failed"


def test_avatar_upload_with_wrong_field_name_is_refused(sandbox: SandboxControl) -> None:
    seed = sandbox.seed()
    response = requests.post(
        assets_url(sandbox, "avatar/upload"),
        auth=sandbox.basic,
        headers=XSRF,
        files={
            "file": ("a.png", image_bytes(), "image/png"),
            "avatarUUID": (None, str(uuid.uuid4())),
            "objectTypeId": (None, seed["object_type_id"]),
        },
        timeout=5,
    )
    assert response.status_code == 400
    message = response.json()["errorMessages"][0]
    assert "rlabs-insight-object-avatar" in message and "file" in message


def test_hand_set_multipart_content_type_without_boundary_is_refused(
    sandbox: SandboxControl,
) -> None:
    response = requests.post(
        assets_url(sandbox, "avatar/upload"),
        auth=sandbox.basic,
        headers={**XSRF, "Content-Type": "multipart/form-data"},
        data=b"--x\r\n",
        timeout=5,
    )
    assert response.status_code == 400
    assert "boundary" in response.json()["errorMessages"][0]


def test_object_create_and_update_need_the_server_uuid(sandbox: SandboxControl) -> None:
    seed = sandbox.seed()
    client_uuid = str(uuid.uuid4())
    server_uuid = upload_assets_avatar(sandbox, client_uuid).json()["avatarUUID"]
    attrs = [{"objectTypeAttributeId": "1", "objectAttributeValues": [{"value": "Box"}]}]
    create = {"objectTypeId": seed["object_type_id"], "attributes": attrs, "hasAvatar": True}
    bad = requests.post(
        assets_url(sandbox, "object/create"),
        auth=sandbox.basic,
        json={**create, "avatarUUID": client_uuid},
        timeout=5,
    )
    assert bad.status_code == 400
    assert "avatarUUID" in bad.json()["errors"]
    good = requests.post(
        assets_url(sandbox, "object/create"),
        auth=sandbox.basic,
        json={**create, "avatarUUID": server_uuid},
        timeout=5,
    )
    assert good.status_code == 201, good.text
    obj = good.json()
    assert obj["hasAvatar"] is True and obj["label"] == "Box"
    assert server_uuid in obj["avatar"]["url48"]
    # Edit the seeded object: the same rule applies on PUT.
    put_url = assets_url(sandbox, f"object/{seed['object_id']}")
    body = {"objectTypeId": seed["object_type_id"], "attributes": [], "hasAvatar": True}
    refused = requests.put(put_url, auth=sandbox.basic, json={**body, "avatarUUID": client_uuid}, timeout=5)
    assert refused.status_code == 400
    missing_flag = requests.put(
        put_url,
        auth=sandbox.basic,
        json={"objectTypeId": seed["object_type_id"], "avatarUUID": server_uuid},
        timeout=5,
    )
    assert missing_flag.status_code == 400
    assert "hasAvatar" in missing_flag.json()["errors"]
    accepted = requests.put(put_url, auth=sandbox.basic, json={**body, "avatarUUID": server_uuid}, timeout=5)
    assert accepted.status_code == 200, accepted.text
    fetched = requests.get(put_url, auth=sandbox.basic, timeout=5).json()
    assert fetched["hasAvatar"] is True
    assert sandbox.object(seed["object_id"])["avatarUUID"] == server_uuid
    missing = requests.get(assets_url(sandbox, "object/999999"), auth=sandbox.basic, timeout=5)
    assert missing.status_code == 404


def test_attachment_three_step_flow(sandbox: SandboxControl) -> None:
    seed = sandbox.seed()
    creds = credentials(sandbox)
    assert set(creds) == {"clientId", "mediaBaseUrl", "mediaJwtToken"}
    assert creds["mediaBaseUrl"] == f"{sandbox.url}/media"
    data = b"hello attachment\n" * 100
    uploaded = media_upload(creds, data, "notes.txt")
    assert uploaded.status_code == 201, uploaded.text
    media = uploaded.json()["data"]
    assert media["size"] == len(data) and media["processingStatus"] == "succeeded"
    link_url = assets_url(sandbox, f"attachments/object/{seed['object_id']}")
    item = {
        "contentType": "text/plain",
        "filename": "notes.txt",
        "mediaId": media["id"],
        "size": media["size"],
        "comment": "",
    }
    wrong_size = requests.post(link_url, auth=sandbox.basic, json={"attachments": [{**item, "size": 1}]}, timeout=5)
    assert wrong_size.status_code == 400
    linked = requests.post(link_url, auth=sandbox.basic, json={"attachments": [item]}, timeout=5)
    assert linked.status_code == 201, linked.text
    beans = linked.json()
    assert isinstance(beans, list) and beans[0]["filename"] == "notes.txt"
    listed = requests.get(link_url, auth=sandbox.basic, timeout=5).json()
    assert [a["mediaId"] for a in listed] == [media["id"]]
    assert sandbox.attachments()[0]["sha256"] == sha256(data)
    deleted = requests.delete(assets_url(sandbox, f"attachments/{beans[0]['id']}"), auth=sandbox.basic, timeout=5)
    assert deleted.status_code == 204
    assert requests.get(link_url, auth=sandbox.basic, timeout=5).json() == []


def test_media_id_is_only_valid_for_its_object(sandbox: SandboxControl) -> None:
    seed = sandbox.seed()
    other = requests.post(
        assets_url(sandbox, "object/create"),
        auth=sandbox.basic,
        json={"objectTypeId": seed["object_type_id"], "attributes": []},
        timeout=5,
    ).json()
    media = media_upload(credentials(sandbox, other["id"]), b"x" * 10).json()["data"]
    item = {"contentType": "text/plain", "filename": "a.txt", "mediaId": media["id"], "size": 10}
    response = requests.post(
        assets_url(sandbox, f"attachments/object/{seed['object_id']}"),
        auth=sandbox.basic,
        json={"attachments": [item]},
        timeout=5,
    )
    assert response.status_code == 400
    assert "mediaId" in response.json()["errors"]


def test_credentials_for_unknown_object_is_tcs_404(sandbox: SandboxControl) -> None:
    url = assets_url(sandbox, "attachments/object/424242/credentials")
    response = requests.get(url, auth=sandbox.basic, timeout=5)
    assert response.status_code == 404
    assert response.json() == {"errorMessage": "TCS 404"}
