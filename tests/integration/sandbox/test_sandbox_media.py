"""Media service: Bearer JWT + X-Client-Id, expiry, field names."""

from __future__ import annotations

import time

import requests

from sandbox.testing import SandboxControl
from tests.integration.sandbox.util import credentials, media_upload


def test_basic_auth_instead_of_bearer_is_refused(sandbox: SandboxControl) -> None:
    creds = credentials(sandbox)
    response = requests.post(
        f"{creds['mediaBaseUrl']}/file",
        params={"name": "a.txt"},
        auth=sandbox.basic,
        headers={"X-Client-Id": creds["clientId"]},
        files={"file": ("a.txt", b"abc")},
        timeout=5,
    )
    assert response.status_code == 401
    assert "Bearer" in response.json()["error"]["title"]


def test_missing_client_id_is_refused(sandbox: SandboxControl) -> None:
    creds = credentials(sandbox)
    response = requests.post(
        f"{creds['mediaBaseUrl']}/file",
        params={"name": "a.txt"},
        headers={"Authorization": f"Bearer {creds['mediaJwtToken']}"},
        files={"file": ("a.txt", b"abc")},
        timeout=5,
    )
    assert response.status_code == 401
    assert "X-Client-Id" in response.json()["error"]["title"]


def test_wrong_client_id_is_forbidden(sandbox: SandboxControl) -> None:
    creds = credentials(sandbox)
    response = media_upload(creds, b"abc", headers={"X-Client-Id": "someone-else"})
    assert response.status_code == 403


def test_expired_jwt_is_refused(sandbox: SandboxControl) -> None:
    sandbox.configure(jwt_ttl_seconds=1)
    creds = credentials(sandbox)
    time.sleep(2.1)
    response = media_upload(creds, b"abc")
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["title"].lower()


def test_wrong_field_name_and_missing_name_are_refused(sandbox: SandboxControl) -> None:
    creds = credentials(sandbox)
    wrong_field = media_upload(creds, b"abc", field="upload")
    assert wrong_field.status_code == 400
    assert "'file'" in wrong_field.json()["error"]["title"]
    no_name = requests.post(
        f"{creds['mediaBaseUrl']}/file",
        headers={
            "Authorization": f"Bearer {creds['mediaJwtToken']}",
            "X-Client-Id": creds["clientId"],
        },
        files={"file": ("a.txt", b"abc")},
        timeout=5,
    )
    assert no_name.status_code == 400


def test_upload_answers_media_file(sandbox: SandboxControl) -> None:
    response = media_upload(credentials(sandbox), b"0123456789", "report.pdf")
    assert response.status_code == 201
    data = response.json()["data"]
    assert {"id", "mediaType", "mimeType", "name", "processingStatus", "size", "createdAt"} <= set(data)
    assert data["name"] == "report.pdf" and data["size"] == 10
    assert sandbox.media()[0]["id"] == data["id"]
