"""The sandbox plays each open reading of the real APIs (shared/apis/open-readings.md), switched
through POST /_sandbox/config, and loses replies of requests it processed."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from sandbox.testing import SandboxControl
from tests.integration.sandbox.util import assets_url, credentials, image_bytes, jar_bytes, media_upload, sha256

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


def test_sizeless_multipart_stores_the_bytes_and_answers_no_size(sandbox: SandboxControl) -> None:
    sandbox.configure(media_upload="multipart-sizeless")
    creds = credentials(sandbox)
    uploaded = media_upload(creds, DATA)
    assert uploaded.status_code == 201 and "size" not in uploaded.json()["data"]
    assert metadata(creds, uploaded.json()["data"]["id"]).json()["data"]["size"] == len(DATA)
    assert sandbox.file_bytes(sha256(DATA)) == DATA
    assert binary_upload(creds, DATA).status_code == 404


def test_without_read_back_an_upload_token_cannot_read_its_file(sandbox: SandboxControl) -> None:
    sandbox.configure(media_upload="binary", media_read_back=False)
    creds = credentials(sandbox)
    media_id = binary_upload(creds, DATA).json()["data"]["id"]
    refused = metadata(creds, media_id)
    assert refused.status_code == 403 and "read" in refused.json()["error"]["title"]


def test_a_lenient_link_takes_any_size_and_the_record_shows_what_was_stored(sandbox: SandboxControl) -> None:
    sandbox.configure(media_upload="binary", attachment_media_id=False)
    creds = credentials(sandbox)
    empty = media_upload(creds, DATA).json()["data"]  # POST /file under binary: an empty file
    assert link(sandbox, empty["id"], len(DATA)).status_code == 400
    sandbox.configure(link_checks_size=False)
    linked = link(sandbox, empty["id"], len(DATA))
    assert linked.status_code == 201 and linked.json()[0]["filesize"] == "0 B"


def test_artifacts_take_one_form_and_the_other_is_a_415_that_stores_nothing(sandbox: SandboxControl) -> None:
    url, jar = f"{sandbox.url}/rest/2/assets/artifact", jar_bytes()

    def raw(content_type: str = "application/binary") -> requests.Response:
        return requests.post(url, params={"file": "app.jar"}, data=jar, headers={"Content-Type": content_type},
                             auth=sandbox.basic, timeout=10)

    def multipart() -> requests.Response:
        return requests.post(url, files={"file": ("app.jar", jar)}, auth=sandbox.basic, timeout=10)

    assert raw().status_code == 415
    assert multipart().status_code == 200
    sandbox.configure(artifact_form="raw")
    refused = multipart()
    assert refused.status_code == 415 and "application/binary" in refused.json()["errors"][0]["message"]
    assert raw("text/plain").status_code == 415
    stored = raw()
    assert stored.status_code == 200 and stored.json()["fileInfo"] == {"logicalFileName": "app.jar", "size": len(jar)}
    assert len(sandbox.assets()) == 2


def test_images_take_the_v2_keys_raw_and_multipart_is_a_415(sandbox: SandboxControl) -> None:
    url, png = f"{sandbox.url}/rest/2/assets/image", image_bytes()
    for content_type in ("image/png", "application/binary"):
        answer = requests.post(f"{url}/screenshot-thumbnail", params={"file": "s.png"}, data=png,
                               headers={"Content-Type": content_type}, auth=sandbox.basic, timeout=10)
        assert answer.status_code == 200, answer.text
    icon = requests.post(f"{url}/icon", params={"file": "i.png"}, data=png, headers={"Content-Type": "image/png"},
                         auth=sandbox.basic, timeout=10)
    assert icon.status_code == 400  # a v3 example, not a v2 key
    enveloped = requests.post(f"{url}/logo", files={"file": ("l.png", png, "image/png")}, auth=sandbox.basic,
                              timeout=10)
    assert enveloped.status_code == 415
    assert len(sandbox.assets()) == 2


def test_awork_429_behind_kong_says_retry_after_and_message(sandbox: SandboxControl) -> None:
    users = sandbox.seed()["awork"]["users"]
    url = f"{sandbox.url}/api/v1/files/images/users/{users}"
    sandbox.add_fault(path="/files/images/", status=429, times=1, retry_after=3)
    own = requests.get(url, headers={"Authorization": f"Bearer {sandbox.bearer}"}, timeout=10)
    assert own.status_code == 429 and "Retry-After" not in own.headers and own.json()["code"]
    sandbox.configure(awork_429="kong")
    sandbox.add_fault(path="/files/images/", status=429, times=1, retry_after=3)
    kong = requests.get(url, headers={"Authorization": f"Bearer {sandbox.bearer}"}, timeout=10)
    assert kong.status_code == 429 and kong.headers["Retry-After"] == "3"
    assert kong.json() == {"message": "API rate limit exceeded"}


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
    for key, value in (("artifact_form", "json"), ("awork_429", "nginx"), ("media_read_back", "no")):
        with pytest.raises(requests.HTTPError):
            sandbox.configure(**{key: value})
    readings = requests.get(f"{sandbox.url}/_sandbox/", timeout=10).json()["open_readings"]
    assert {"media_upload", "attachment_media_id", "link_answer_body", "project_owner_keys", "media_read_back",
            "link_checks_size", "artifact_form", "marketplace_image_types", "awork_429"} <= set(readings)
