"""awork profile images: upload/get/delete per entity kind, auth, field name, 100 MB cap."""

from __future__ import annotations

import pytest
import requests

from sandbox.testing import SandboxControl
from tests.integration.sandbox.util import StreamedMultipart, image_bytes

KINDS = ["companies", "contactpersons", "projects", "projecttemplates", "users", "workspaces"]


def url(sb: SandboxControl, kind: str, entity_id: str | None = None) -> str:
    return f"{sb.url}/api/v1/files/images/{kind}/{entity_id or sb.seed()['awork'][kind]}"


def bearer(sb: SandboxControl) -> dict[str, str]:
    return {"Authorization": f"Bearer {sb.bearer}"}


@pytest.mark.parametrize("kind", KINDS)
def test_upload_get_delete(sandbox: SandboxControl, kind: str) -> None:
    png = image_bytes(colour="navy")
    target = url(sandbox, kind)
    posted = requests.post(target, files={"File": ("me.png", png, "image/png")}, headers=bearer(sandbox), timeout=5)
    assert posted.status_code == 200, posted.text
    info = posted.json()
    assert info["fileName"] == "me.png" and info["mimeType"] == "image/png"
    assert info["fileVersions"][0]["size"] == len(png)
    got = requests.get(target, headers=bearer(sandbox), timeout=5)
    assert got.status_code == 200 and got.content == png
    assert requests.delete(target, headers=bearer(sandbox), timeout=5).status_code == 204
    gone = requests.get(target, headers=bearer(sandbox), timeout=5)
    assert gone.status_code == 404 and gone.json()["code"] == "not-found"


def test_bad_token_is_workspaceid_missing(sandbox: SandboxControl) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}):
        response = requests.get(url(sandbox, "users"), headers=headers, timeout=5)
        assert response.status_code == 401
        body = response.json()
        assert body["code"] == "workspaceid-missing"
        assert {"description", "link", "details", "validationErrors"} <= set(body)


def test_unknown_kind_and_entity_are_not_found(sandbox: SandboxControl) -> None:
    tasks = requests.post(
        url(sandbox, "tasks", "00000000-0000-0000-0000-000000000000"),
        files={"File": ("a.png", image_bytes())},
        headers=bearer(sandbox),
    )
    assert tasks.status_code == 404 and tasks.json()["code"] == "not-found"
    nobody = requests.get(url(sandbox, "users", "00000000-0000-0000-0000-000000000000"), headers=bearer(sandbox))
    assert nobody.status_code == 404 and nobody.json()["code"] == "not-found"


def test_wrong_field_name_is_refused(sandbox: SandboxControl) -> None:
    response = requests.post(url(sandbox, "users"), files={"file": ("a.png", image_bytes())}, headers=bearer(sandbox))
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "validation-failed"
    assert body["validationErrors"][0]["property"] == "File"


def test_file_over_100_mb_is_refused(sandbox: SandboxControl) -> None:
    body = StreamedMultipart("File", "huge.png", 101 * 1024 * 1024)
    response = requests.post(
        url(sandbox, "users"),
        data=iter(body),
        headers={**bearer(sandbox), "Content-Type": body.content_type},
        timeout=60,
    )
    assert response.status_code == 413
    assert response.json()["code"] == "request-too-large"
    assert sandbox.images() == {}
