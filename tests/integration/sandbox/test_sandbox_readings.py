"""The sandbox plays each open reading of the real APIs (shared/apis/open-readings.md), switched
through POST /_sandbox/config, and loses replies of requests it processed."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from sandbox.testing import SandboxControl
from tests.integration.sandbox.util import assets_url, credentials, media_upload, sha256

DATA = b"line of text\n" * 300


def media_headers(creds: dict[str, Any], content_type: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {creds['mediaJwtToken']}", "X-Client-Id": creds["clientId"]}
    return {**headers, "Content-Type": content_type} if content_type else headers


def binary_upload(creds: dict[str, Any], data: bytes, name: str = "a.txt") -> requests.Response:
    return requests.post(f"{creds['mediaBaseUrl']}/file/binary", params={"name": name}, data=data,
                         headers=media_headers(creds, "text/plain"), timeout=10)


def metadata(creds: dict[str, Any], media_id: str) -> requests.Response:
    return requests.get(f"{creds['mediaBaseUrl']}/file/{media_id}", headers=media_headers(creds), timeout=10)


def link(sb: SandboxControl, media_id: str, size: int) -> requests.Response:
    body = {"attachments": [{"contentType": "text/plain", "filename": "a.txt", "mediaId": media_id,
                             "size": size, "comment": "c"}]}
    return requests.post(assets_url(sb, f"attachments/object/{sb.seed()['object_id']}"), json=body,
                         auth=sb.basic, timeout=10)


def test_multipart_reading_stores_the_part_and_binary_route_is_gone(sandbox: SandboxControl) -> None:
    creds = credentials(sandbox)
    uploaded = media_upload(creds, DATA)
    assert uploaded.status_code == 201 and uploaded.json()["data"]["size"] == len(DATA)
    assert metadata(creds, uploaded.json()["data"]["id"]).json()["data"]["size"] == len(DATA)
    assert binary_upload(creds, DATA).status_code == 404


def test_binary_reading_multipart_creates_an_empty_file_and_raw_bytes_land(sandbox: SandboxControl) -> None:
    sandbox.configure(media_upload="binary")
    creds = credentials(sandbox)
    empty = media_upload(creds, DATA)
    assert empty.status_code == 201
    assert set(empty.json()["data"]) == {"id", "createdAt"}  # no size to notice the loss by
    assert metadata(creds, empty.json()["data"]["id"]).json()["data"]["size"] == 0
    raw = binary_upload(creds, DATA)
    assert raw.status_code == 201 and raw.json()["data"]["size"] == len(DATA)
    assert sandbox.file_bytes(sha256(DATA)) == DATA
    enveloped = requests.post(f"{creds['mediaBaseUrl']}/file/binary", params={"name": "a.txt"},
                              files={"file": ("a.txt", DATA)}, headers=media_headers(creds), timeout=10)
    assert enveloped.status_code == 400  # multipart sent to the raw route: refused, not stored


def test_file_metadata_needs_the_credentials_of_the_files_object(sandbox: SandboxControl) -> None:
    creds = credentials(sandbox)
    media_id = media_upload(creds, DATA).json()["data"]["id"]
    assert metadata(creds, "no-such-id").status_code == 404
    assert requests.get(f"{creds['mediaBaseUrl']}/file/{media_id}", timeout=10).status_code == 401


def test_attachment_records_without_media_id_have_the_data_center_shape(sandbox: SandboxControl) -> None:
    sandbox.configure(attachment_media_id=False)
    creds = credentials(sandbox)
    media = media_upload(creds, DATA).json()["data"]
    linked = link(sandbox, media["id"], len(DATA))
    assert linked.status_code == 201
    listed = requests.get(assets_url(sandbox, f"attachments/object/{sandbox.seed()['object_id']}"),
                          auth=sandbox.basic, timeout=10).json()
    for record in (linked.json()[0], listed[0]):
        assert set(record) == {"id", "author", "mimeType", "filename", "filesize", "created", "comment",
                               "commentOutput", "url"}
        assert record["filesize"] == "3.8 kB"


def test_link_may_answer_an_empty_body(sandbox: SandboxControl) -> None:
    sandbox.configure(link_answer_body=False)
    media = media_upload(credentials(sandbox), DATA).json()["data"]
    linked = link(sandbox, media["id"], len(DATA))
    assert linked.status_code == 201 and linked.content == b""
    assert len(sandbox.attachments()) == 1


def test_project_owners_by_key_can_be_refused_while_the_project_resolves(sandbox: SandboxControl) -> None:
    seed = sandbox.seed()
    owner = f"{sandbox.url}/rest/api/3/universal_avatar/type/project/owner"
    assert requests.get(f"{owner}/{seed['project_key']}", auth=sandbox.basic, timeout=10).status_code == 200
    sandbox.configure(project_owner_keys=False)
    assert requests.get(f"{owner}/{seed['project_key']}", auth=sandbox.basic, timeout=10).status_code == 404
    assert requests.get(f"{owner}/{seed['project_id']}", auth=sandbox.basic, timeout=10).status_code == 200
    project = requests.get(f"{sandbox.url}/rest/api/3/project/{seed['project_key']}", auth=sandbox.basic,
                           timeout=10).json()
    assert (project["id"], project["key"]) == (seed["project_id"], seed["project_key"])


@pytest.mark.parametrize("rule", [{"status": 502}, {"cut": True}], ids=["502", "cut"])
def test_lost_reply_processes_the_request_then_loses_the_answer(sandbox: SandboxControl,
                                                                rule: dict[str, Any]) -> None:
    seed = sandbox.seed()
    sandbox.add_fault(path="/object/create$", lost_reply=True, times=1, **rule)
    body = {"objectTypeId": seed["object_type_id"], "attributes": []}
    try:
        answer = requests.post(assets_url(sandbox, "object/create"), json=body, auth=sandbox.basic, timeout=10)
        assert answer.status_code == 502
    except requests.ConnectionError:
        assert rule.get("cut")
    assert len(sandbox.objects()) == 2  # the seeded one and the one whose answer was lost
    verdict = sandbox.requests(path_contains="/object/create")[-1]["verdict"]
    assert "processed (HTTP 201)" in verdict


def test_readings_refuse_unknown_values(sandbox: SandboxControl) -> None:
    with pytest.raises(requests.HTTPError):
        sandbox.configure(media_upload="chunked")
    with pytest.raises(requests.HTTPError):
        sandbox.configure(attachment_media_id="no")
    readings = requests.get(f"{sandbox.url}/_sandbox/", timeout=10).json()["open_readings"]
    assert {"media_upload", "attachment_media_id", "link_answer_body", "project_owner_keys"} <= set(readings)
